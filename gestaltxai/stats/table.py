"""The coefficient table (Parquet or CSV) as NumPy columns.

Columns written by extraction: ``image_name, fold, split, role, method,
<region>_xai..., <region>_xai_norm..., label, predicted, p_<class>...,
status``. ``status`` is 'ok' or the reason an image has no coefficients (NaN
then); rows that are not 'ok' take part in no test. ``role`` says what a row
is for (:mod:`gestaltxai.roles`): RQ1 reads the held-out rows, RQ2 the
annotated ones; a table without the column (older, or made elsewhere) is read
as every row playing every role.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Optional

import numpy as np
import pyarrow as pa
from pyarrow import csv as arrow_csv
from pyarrow import parquet as arrow_parquet

from gestaltxai.roles import has_role

#: Suffix of the raw region coefficients (RQ1) and of the min-max normalised ones (RQ2).
RAW_SUFFIX = '_xai'
NORMALIZED_SUFFIX = '_xai_norm'
PROBABILITY_PREFIX = 'p_'
REQUIRED_COLUMNS = ('image_name', 'method', 'label')
OK = 'ok'
_PARQUET_MAGIC = b'PAR1'


@dataclasses.dataclass(frozen=True)
class CoefficientTable:
  """Columns of the table by name: strings as str arrays, numbers as float64 or int64."""

  path: str
  columns: dict[str, np.ndarray]

  def __len__(self) -> int:
    return len(self.columns['image_name'])

  def __contains__(self, name: str) -> bool:
    return name in self.columns

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self.columns:
      raise ValueError(f'{self.path}: no column {name!r}')
    return self.columns[name]

  @functools.cached_property
  def ok(self) -> np.ndarray:
    """(N,) bool: rows whose status is 'ok' (every row when there is no status column)."""
    if 'status' not in self.columns:
      return np.ones(len(self), bool)
    return self.columns['status'] == OK

  @property
  def methods(self) -> list[str]:
    """Method names in order of first appearance."""
    return list(dict.fromkeys(self.columns['method'].tolist()))

  @property
  def classes(self) -> list[str]:
    """Class names: the model's order from the ``p_<class>`` columns, else sorted labels."""
    ordered = [name[len(PROBABILITY_PREFIX):] for name in self.columns
               if name.startswith(PROBABILITY_PREFIX)]
    labels = set(self.columns['label'].tolist())
    return ordered + sorted(labels - set(ordered)) if ordered else sorted(labels)

  def regions(self, suffix: str = RAW_SUFFIX) -> list[str]:
    """Region names with a ``<region><suffix>`` column, in column order."""
    return [name[:-len(suffix)] for name in self.columns if name.endswith(suffix)]

  def in_role(self, role: str) -> np.ndarray:
    """(N,) bool: rows playing ``role`` (every row when there is no role column)."""
    if 'role' not in self.columns:
      return np.ones(len(self), bool)
    cells, rows = np.unique(self.columns['role'], return_inverse=True)
    return np.array([has_role(str(c), role) for c in cells], bool)[rows.ravel()]

  def select(self, *, method: Optional[str] = None, label: Optional[str] = None,
             fold: Optional[int] = None, role: Optional[str] = None) -> np.ndarray:
    """(N,) bool: 'ok' rows of the given method, label, fold and role."""
    mask = self.ok if role is None else self.ok & self.in_role(role)
    for column, value in (('method', method), ('label', label), ('fold', fold)):
      if value is not None:
        mask = mask & (self[column] == value)
    return mask


def _column_to_numpy(column) -> np.ndarray:
  if pa.types.is_dictionary(column.type):
    column = column.cast(column.type.value_type)
  kind = column.type
  if pa.types.is_string(kind) or pa.types.is_large_string(kind):
    values = column.to_pylist()
    return np.array(['' if v is None else v for v in values], dtype=str)
  if pa.types.is_integer(kind) and column.null_count == 0:
    return column.to_numpy().astype(np.int64)
  if pa.types.is_boolean(kind) and column.null_count == 0:
    return column.to_numpy(zero_copy_only=False).astype(bool)
  return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _is_parquet(path: pathlib.Path) -> bool:
  if path.suffix.lower() in ('.parquet', '.pq'):
    return True
  with open(path, 'rb') as f:
    return f.read(len(_PARQUET_MAGIC)) == _PARQUET_MAGIC


def read_table(path: str | os.PathLike) -> CoefficientTable:
  """Reads a coefficient table from Parquet (by suffix or magic bytes) or CSV.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a required column is missing, or the file cannot be parsed
      (naming the file).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no coefficient table at {path}')
  # Identifiers stay text even when they look like numbers (a class named '1').
  text_columns = {name: pa.string() for name in ('image_name', 'method', 'label', 'predicted',
                                                 'status', 'split', 'role')}
  try:
    if _is_parquet(path):
      arrow = arrow_parquet.read_table(path)
    else:
      arrow = arrow_csv.read_csv(path, convert_options=arrow_csv.ConvertOptions(
          column_types=text_columns, strings_can_be_null=False))
  except (pa.ArrowInvalid, OSError) as err:
    raise ValueError(f'{path}: not a readable Parquet or CSV table ({err})') from err
  _check_numeric(arrow, path)
  columns = {}
  for name in arrow.column_names:
    column = arrow.column(name)
    if name in text_columns and not pa.types.is_string(column.type):
      column = column.cast(pa.string())
    columns[name] = _column_to_numpy(column)
  missing = [name for name in REQUIRED_COLUMNS if name not in columns]
  if missing:
    raise ValueError(f'{path}: missing columns {missing} (has {arrow.column_names})')
  if 'fold' in columns and columns['fold'].dtype.kind not in 'iuf':
    raise ValueError(f'{path}: the fold column must hold fold numbers, got '
                     f'{columns["fold"][:3].tolist()}...')
  table = CoefficientTable(str(path), columns)
  if not table.regions(RAW_SUFFIX) and not table.regions(NORMALIZED_SUFFIX):
    raise ValueError(f'{path}: no region coefficient columns (<region>{RAW_SUFFIX} or '
                     f'<region>{NORMALIZED_SUFFIX})')
  from gestaltxai.stats.table_checks import check_rows  # pylint: disable=import-outside-toplevel
  check_rows(table)
  return table


def _check_numeric(arrow: pa.Table, path: pathlib.Path) -> None:
  """Coefficient and probability columns must hold numbers: name the first rows that do not."""
  for name in arrow.column_names:
    numeric = (name.endswith(RAW_SUFFIX) or name.endswith(NORMALIZED_SUFFIX)
               or name.startswith(PROBABILITY_PREFIX) or name == 'fold')
    kind = arrow.column(name).type
    if numeric and not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                        or pa.types.is_null(kind)):
      values = arrow.column(name).to_pylist()
      bad = []
      for row, value in enumerate(values):
        try:
          float(value if value not in (None, '') else 'nan')
        except (TypeError, ValueError):
          bad.append(f'row {row + 1}: {value!r}')
      raise ValueError(f'{path}: column {name} must hold numbers; '
                       + ('; '.join(bad[:3]) if bad else f'it holds {kind}'))
