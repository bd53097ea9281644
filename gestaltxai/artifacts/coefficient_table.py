"""The coefficient table and the files beside it, written and read here: the table's columns
and formats, ``TABLE.json`` (its provenance) and ``TABLE.maps.npz`` (its maps).

Columns written by extraction (:func:`columns`): ``image_name, fold, split,
role, method, <region>_xai..., <region>_xai_norm..., label, predicted,
p_<class>..., status``. ``status`` is 'ok' or the reason an image has no
coefficients (NaN then); rows that are not 'ok' take part in no test. ``role``
says what a row is for (:mod:`gestaltxai.roles`): RQ1 reads the held-out rows,
RQ2 the annotated ones; a table without the column (older, or made elsewhere)
is read as every row playing every role. A table is checked as data when read:
one row per (image, fold, method), an image held out in one fold only.

``TABLE.maps.npz`` (:class:`Maps`): ``classes`` (K,), ``mean_image`` (K, H, W,
3) uint8 RGB, ``class_mean/<method>`` (K, H, W) float32, ``examples/names``
(E,), ``examples/images`` (E, H, W, 3) uint8 RGB, ``examples/<method>`` (E, H,
W) float32, and ``provenance`` (JSON text).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
from pyarrow import csv as arrow_csv
from pyarrow import parquet as arrow_parquet

from gestaltxai.errors import ParameterError
from gestaltxai.files import atomic_write, read_json, save_npz, write_json
from gestaltxai.roles import has_role

#: Suffix of the raw region coefficients (RQ1) and of the min-max normalised ones (RQ2).
RAW_SUFFIX = '_xai'
NORMALIZED_SUFFIX = '_xai_norm'
PROBABILITY_PREFIX = 'p_'
REQUIRED_COLUMNS = ('image_name', 'method', 'label')
#: Columns read as text even when their values look like numbers (a class named '1').
TEXT_COLUMNS = ('image_name', 'method', 'label', 'predicted', 'status', 'split', 'role')
OK = 'ok'
#: The fold of every row when one model explains every image (``extract --weights``): no
#: fold holds such an image out, so any fold may hold it.
NO_FOLD = 0
#: Table formats and the suffixes of each.
SUFFIXES = {'parquet': ('.parquet', '.pq'), 'csv': ('.csv',)}
FORMATS = tuple(SUFFIXES)
PROVENANCE_SUFFIX = '.json'
MAPS_SUFFIX = '.maps.npz'
#: Keys of the maps file.
CLASSES_KEY, MEAN_IMAGE_KEY, PROVENANCE_KEY = 'classes', 'mean_image', 'provenance'
CLASS_MEAN_PREFIX, EXAMPLES_PREFIX = 'class_mean/', 'examples/'
EXAMPLE_NAMES_KEY, EXAMPLE_IMAGES_KEY = f'{EXAMPLES_PREFIX}names', f'{EXAMPLES_PREFIX}images'
#: Rows named in a message.
SHOWN_ROWS = 3
_PARQUET_MAGIC = b'PAR1'


def columns(regions: Sequence[str], normalized_regions: Sequence[str],
            classes: Sequence[str]) -> list[str]:
  """The table's columns, in order: ``regions`` get raw coefficients, ``normalized_regions``
  the RQ2 ones."""
  return ['image_name', 'fold', 'split', 'role', 'method',
          *(f'{r}{RAW_SUFFIX}' for r in regions),
          *(f'{r}{NORMALIZED_SUFFIX}' for r in normalized_regions),
          'label', 'predicted', *(f'{PROBABILITY_PREFIX}{c}' for c in classes), 'status']


def table_format(table: pathlib.Path, out_format: Optional[str] = None) -> str:
  """The format of the table at ``out`` from ``out_format`` or its suffix; a suffix of the
  other format, or of none, is refused."""
  table = pathlib.Path(table)
  by_suffix = next((f for f, suffixes in SUFFIXES.items()
                    if table.suffix.lower() in suffixes), None)
  if out_format is not None and out_format not in FORMATS:
    raise ParameterError('{out_format} must be one of {formats}, got {given!r}',
                         formats=FORMATS, given=out_format)
  if by_suffix is None:
    raise ParameterError('{out} {table}: a table is TABLE.parquet or TABLE.csv; other suffixes '
                         'are not read back as tables', table=table)
  if out_format is not None and out_format != by_suffix:
    raise ParameterError('{out_format} {given} does not match {out} {table} ({by_suffix} by its '
                         'suffix): give {out} TABLE{suffix}', given=out_format, table=table,
                         by_suffix=by_suffix, suffix=SUFFIXES[out_format][0])
  return by_suffix


def provenance_path(table: pathlib.Path) -> pathlib.Path:
  """``TABLE.json`` beside ``TABLE.parquet`` (or ``.csv``): any table's provenance."""
  return pathlib.Path(table).with_suffix(PROVENANCE_SUFFIX)


def maps_path(table: pathlib.Path) -> pathlib.Path:
  return pathlib.Path(table).with_suffix(MAPS_SUFFIX)


def finished_files(table: pathlib.Path) -> list[pathlib.Path]:
  """The files of a finished extraction: the table, its provenance and its maps."""
  return [pathlib.Path(table), provenance_path(table), maps_path(table)]


def _beside(table: pathlib.Path, suffix: str) -> Optional[pathlib.Path]:
  """The file beside ``table`` named TABLE<suffix>, with or without the table's extension."""
  table = pathlib.Path(table)
  for candidate in (table.with_suffix(suffix), table.parent / (table.name + suffix)):
    if candidate.is_file():
      return candidate
  return None


def find_maps(table: pathlib.Path) -> Optional[pathlib.Path]:
  return _beside(table, MAPS_SUFFIX)


def find_provenance(table: pathlib.Path) -> Optional[pathlib.Path]:
  return _beside(table, PROVENANCE_SUFFIX)


def write_provenance(table: pathlib.Path, record: Mapping[str, Any]) -> None:
  write_json(provenance_path(table), record)


def read_provenance(path: pathlib.Path) -> Any:
  """A table's provenance file as written."""
  return read_json(path, 'table provenance')


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
  if path.suffix.lower() in SUFFIXES['parquet']:
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
  text_columns = {name: pa.string() for name in TEXT_COLUMNS}
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


def _rows(indices) -> str:
  shown = ', '.join(str(int(i) + 1) for i in indices[:SHOWN_ROWS])
  more = len(indices) - SHOWN_ROWS
  return f'rows {shown}' + (f' and {more} more' if more > 0 else '')


def check_rows(table: CoefficientTable) -> None:
  """Raises ValueError naming the rows (1-based data rows) of a repeated (image, fold, method)
  and the folds of an image held out in more than one."""
  names, methods = table['image_name'], table['method']
  folds = table['fold'] if 'fold' in table else np.zeros(len(names), np.int64)
  seen: dict[tuple, list[int]] = collections.defaultdict(list)
  for row, key in enumerate(zip(names.tolist(), folds.tolist(), methods.tolist())):
    seen[key].append(row)
  repeated = [(key, rows) for key, rows in seen.items() if len(rows) > 1]
  if repeated:
    (name, fold, method), rows = repeated[0]
    raise ValueError(f'{table.path}: {name} of fold {fold:g} and method {method} appears in '
                     f'{_rows(rows)} ({len(repeated)} repeated keys in all); a table has one row '
                     'per image, fold and method (concatenated tables? extract once per --out)')
  held_out = (folds != NO_FOLD) & table.in_role('held_out')
  image_folds: dict[str, dict[float, int]] = collections.defaultdict(dict)
  for row in np.flatnonzero(held_out):
    image_folds[names[row]].setdefault(folds[row], row)
  for name, by_fold in image_folds.items():
    if len(by_fold) > 1:
      shown = ', '.join(f'{f:g}' for f in sorted(by_fold))
      raise ValueError(f'{table.path}: {name} is held out in folds {shown} '
                       f'({_rows(sorted(by_fold.values()))}); an image is held out in one fold '
                       'only (tables of two splits mixed?)')


@dataclasses.dataclass(frozen=True)
class Examples:
  """A few images' relevance maps kept for the report: names (E,), faces (E, H, W, 3) uint8
  RGB, and per method (E, H, W) float32 maps."""

  names: Sequence[str]
  images: np.ndarray
  maps: Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Maps:
  """The contents of ``TABLE.maps.npz`` (absent parts are None or empty)."""
  classes: list[str]
  mean_image: Optional[np.ndarray]
  class_mean: dict[str, np.ndarray]
  example_names: list[str]
  example_images: Optional[np.ndarray]
  examples: dict[str, np.ndarray]
  #: What the maps were made from (:func:`gestaltxai.provenance.made_from_table`), or None.
  provenance: Optional[dict] = None


def example_arrays(examples: Examples) -> dict[str, np.ndarray]:
  """The maps file's arrays of ``examples`` (also how a shard keeps them until assembly)."""
  return {EXAMPLE_NAMES_KEY: np.array(list(examples.names)), EXAMPLE_IMAGES_KEY: examples.images,
          **{f'{EXAMPLES_PREFIX}{name}': value for name, value in examples.maps.items()}}


def is_example_key(key: str) -> bool:
  return key.startswith(EXAMPLES_PREFIX)


def write_maps(table: pathlib.Path, classes: Sequence[str], class_mean: Mapping[str, np.ndarray],
               mean_image: Optional[np.ndarray], examples: Mapping[str, np.ndarray],
               provenance: Mapping[str, Any]) -> None:
  """Writes ``TABLE.maps.npz`` atomically.

  Args:
    class_mean: {method: (K, H, W) float32}.
    mean_image: (K, H, W, 3) uint8 RGB, or None.
    examples: the arrays of :func:`example_arrays`.
    provenance: what the maps were made from.
  """
  out = {CLASSES_KEY: np.array(list(classes)),
         **{f'{CLASS_MEAN_PREFIX}{name}': value for name, value in class_mean.items()},
         **examples, PROVENANCE_KEY: np.array(json.dumps(provenance))}
  if mean_image is not None:
    out[MEAN_IMAGE_KEY] = mean_image
  atomic_write(maps_path(table), lambda p: save_npz(p, out))


def read_maps(path: str | os.PathLike) -> Maps:
  """Reads ``TABLE.maps.npz``; shapes that do not agree are a ValueError naming the key."""
  with np.load(path, allow_pickle=False) as npz:
    arrays = {key: npz[key] for key in npz.files}
  classes = [str(c) for c in arrays.get(CLASSES_KEY, [])]
  class_mean = {key[len(CLASS_MEAN_PREFIX):]: value for key, value in arrays.items()
                if key.startswith(CLASS_MEAN_PREFIX)}
  examples = {key[len(EXAMPLES_PREFIX):]: value for key, value in arrays.items()
              if is_example_key(key) and key not in (EXAMPLE_NAMES_KEY, EXAMPLE_IMAGES_KEY)}
  names = [str(n) for n in arrays.get(EXAMPLE_NAMES_KEY, [])]
  for prefix, maps, count in ((CLASS_MEAN_PREFIX, class_mean, len(classes)),
                              (EXAMPLES_PREFIX, examples, len(names))):
    for method, value in maps.items():
      if value.ndim != 3 or value.shape[0] != count:
        raise ValueError(f'{path}: {prefix}{method} has shape {value.shape}; expected '
                         f'({count}, H, W)')
  recorded = arrays.get(PROVENANCE_KEY)
  return Maps(classes, arrays.get(MEAN_IMAGE_KEY), class_mean, names,
              arrays.get(EXAMPLE_IMAGES_KEY), examples,
              json.loads(str(recorded)) if recorded is not None else None)


def read_maps_provenance(path: str | os.PathLike) -> Optional[dict]:
  """What a maps file records it was made from (None when it records nothing), reading no
  maps.

  Raises:
    ValueError: not a readable maps file (naming it).
  """
  try:
    with np.load(path, allow_pickle=False) as archive:
      text = str(archive[PROVENANCE_KEY]) if PROVENANCE_KEY in archive.files else None
  except (OSError, ValueError) as err:
    raise ValueError(f'{path}: not a readable maps file ({err})') from None
  return json.loads(text) if text else None
