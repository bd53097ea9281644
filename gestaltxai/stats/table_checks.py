"""A coefficient table checked as data: one row per (image, fold, method), an image held
out in one fold only. Violations are errors naming the rows (1-based data rows)."""

from __future__ import annotations

import collections

import numpy as np

#: Rows of a fold that no fold split (one model explaining every image): any fold may hold
#: the image (``gestaltxai extract --weights``).
NO_FOLD = 0
#: A ``role`` cell joins an image's roles with this; rows that play the held-out role are
#: the ones a fold holds out. Tables without the column hold out every row.
ROLE_JOIN, HELD_OUT, EVERY_ROLE = '+', 'held_out', 'all'
#: Rows named in a message.
SHOWN = 3


def _rows(indices) -> str:
  shown = ', '.join(str(int(i) + 1) for i in indices[:SHOWN])
  return f'rows {shown}' + (f' and {len(indices) - SHOWN} more' if len(indices) > SHOWN else '')


def check_rows(table) -> None:
  """Raises ValueError naming the rows of a repeated (image, fold, method) and the folds of an
  image held out in more than one."""
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
  held_out = folds != NO_FOLD
  if 'role' in table:
    held_out &= np.array([cell == EVERY_ROLE or HELD_OUT in cell.split(ROLE_JOIN)
                          for cell in table['role'].tolist()], bool)
  image_folds: dict[str, dict[float, int]] = collections.defaultdict(dict)
  for row in np.flatnonzero(held_out):
    image_folds[names[row]].setdefault(folds[row], row)
  for name, by_fold in image_folds.items():
    if len(by_fold) > 1:
      raise ValueError(f'{table.path}: {name} is held out in folds '
                       f'{", ".join(f"{f:g}" for f in sorted(by_fold))} ({_rows(sorted(by_fold.values()))}); '
                       'an image is held out in one fold only (tables of two splits mixed?)')
