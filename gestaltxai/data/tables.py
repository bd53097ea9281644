"""Label tables (CSV): read and checked before any photo is opened.

Every error names the file, and the line and value where there is one.
Spreadsheet habits are handled: a UTF-8 byte-order mark (Excel's "CSV
UTF-8"), ``;`` or tab separators, stray spaces around names and values.
Text in another encoding is reported, not guessed.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import os
import pathlib
import re
from typing import Iterable, Sequence

#: Separators a header may use; the one that splits it into the most columns wins.
DELIMITERS = (',', ';', '\t')


@dataclasses.dataclass(frozen=True)
class Row:
  line: int                # 1-based line of the file where the row starts
  values: dict[str, str]   # column -> value, stripped; '' when the cell is empty or missing


def read_csv(path: str | os.PathLike, required: Sequence[str]) -> list[Row]:
  """The rows of a CSV file with a header that holds ``required``.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: not UTF-8 text, no header, a required column missing or a
      column named twice; the message names the file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no table at {path}')
  raw = path.read_bytes()
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError as err:
    line = raw[:err.start].count(b'\n') + 1
    raise ValueError(f'{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}); '
                     'save it as UTF-8 ("CSV UTF-8" in Excel)') from None
  lines = text.splitlines()
  first = next((line for line in lines if line.strip()), None)
  if first is None:
    raise ValueError(f'{path}: empty, expected a header with columns {list(required)}')
  delimiter = max(DELIMITERS, key=lambda d: len(next(csv.reader([first], delimiter=d))))
  reader = csv.reader(io.StringIO(text, newline=''), delimiter=delimiter)
  header = [name.strip() for name in next(reader)]
  while not any(header):
    header = [name.strip() for name in next(reader)]
  repeated = [name for name, n in collections.Counter(header).items() if n > 1 and name]
  if repeated:
    raise ValueError(f'{path}: column {repeated[0]!r} appears twice in the header')
  missing = [name for name in required if name not in header]
  if missing:
    raise ValueError(f'{path}: needs columns {list(required)}, missing {missing}; '
                     f'the header has {header}')
  rows, start = [], reader.line_num + 1
  for cells in reader:
    if any(cell.strip() for cell in cells):
      padded = cells + [''] * (len(header) - len(cells))
      rows.append(Row(start, {name: value.strip() for name, value in zip(header, padded)
                              if name}))
    start = reader.line_num + 1
  if not rows:
    raise ValueError(f'{path}: a header but no rows')
  return rows


def require_values(rows: Iterable[Row], columns: Sequence[str], path: str | os.PathLike,
                   key: str) -> None:
  """Every row has a value in each of ``columns`` (``key`` names the row in messages)."""
  for row in rows:
    for column in columns:
      if not row.values.get(column):
        who = f' for {row.values[key]!r}' if column != key and row.values.get(key) else ''
        raise ValueError(f'{path} line {row.line}: no {column} value{who}')


def require_unique(rows: Sequence[Row], column: str, path: str | os.PathLike) -> None:
  """No value of ``column`` is listed twice; the message names both lines."""
  first: dict[str, int] = {}
  repeats = []
  for row in rows:
    value = row.values[column]
    if value in first:
      repeats.append((row.line, value, first[value]))
    else:
      first[value] = row.line
  if repeats:
    line, value, before = repeats[0]
    more = f' ({len(repeats) - 1} more repeated rows)' if len(repeats) > 1 else ''
    raise ValueError(f'{path} line {line}: {column} {value!r} is listed again (first on line '
                     f'{before}){more}; each photo may appear once')


def _spelling(label: str) -> str:
  return re.sub(r'\s+', '', label).casefold()


def similar_labels(labels: Iterable[str]) -> list[tuple[str, ...]]:
  """Groups of distinct labels that differ only by case or spaces ('Male', 'male')."""
  groups = collections.defaultdict(set)
  for label in labels:
    groups[_spelling(label)].add(label)
  return [tuple(sorted(group)) for group in groups.values() if len(group) > 1]
