"""Result rows as small frozen dataclasses, written to and read from CSV without pandas."""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Iterable, Sequence, TypeVar

Row = TypeVar('Row')


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A test that could not be computed, and why (``skipped.csv``)."""
  analysis: str   # 'rq1' or 'rq2'
  method: str     # '' when it concerns every method
  group: str      # RQ1: the syndrome; RQ2: the fold, or the HPO file
  region: str
  reason: str


def _parse_bool(text: str) -> bool:
  if text not in ('True', 'False'):
    raise ValueError(f'expected True or False, got {text!r}')
  return text == 'True'


# Field annotations are strings under ``from __future__ import annotations``, types otherwise.
_PARSERS = {'str': str, 'int': int, 'float': float, 'bool': _parse_bool,
            str: str, int: int, float: float, bool: _parse_bool}


def write_rows(path: str | os.PathLike, rows: Iterable[Row], row_type: type) -> None:
  """Writes dataclass rows as CSV with one column per field, in field order."""
  names = [field.name for field in dataclasses.fields(row_type)]
  write_table(path, names, ([getattr(row, name) for name in names] for row in rows))


def read_rows(path: str | os.PathLike, row_type: type) -> list:
  """Reads what :func:`write_rows` wrote; a bad cell names the file, line and column."""
  fields = dataclasses.fields(row_type)
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.DictReader(f)
    missing = [field.name for field in fields if field.name not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f'{path}: missing columns {missing}')
    rows = []
    for line, record in enumerate(reader, 2):
      values = {}
      for field in fields:
        try:
          values[field.name] = _PARSERS[field.type](record[field.name])
        except ValueError as err:
          raise ValueError(f'{path}:{line}: column {field.name}: {err}') from err
      rows.append(row_type(**values))
  return rows


def write_table(path: str | os.PathLike, header: Sequence[str],
                rows: Iterable[Sequence]) -> None:
  """Writes a plain CSV table (a header and rows)."""
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
