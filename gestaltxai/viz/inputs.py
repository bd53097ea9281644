"""What the report reads besides the table: training runs, maps, provenance, benchmark records.

File layouts (written by ``gestaltxai train``, ``gestaltxai extract`` and
``benchmarks/``):

- ``RUNS/fold-K/metrics.json``: ``{"config", "epochs": [{"epoch", "train_loss",
  "train_accuracy", "val_loss", "val_accuracy"}], "best_epoch", "test":
  {"accuracy", "macro_f1", "weighted_f1", "confusion"}}``; ``RUNS/summary.json``.
- ``TABLE.maps.npz`` beside the table: ``classes`` (K,), ``mean_image`` (K, H, W,
  3) uint8 RGB, ``class_mean/<method>`` (K, H, W) float32, ``examples/names``
  (E,), ``examples/images`` (E, H, W, 3) uint8 RGB, ``examples/<method>`` (E,
  H, W) float32.
- ``TABLE.json``: provenance, shown as given.
- benchmark records: JSON lines (``benchmarks/records.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Any, Optional

import numpy as np

_FOLD_DIR = re.compile(r'fold-(\d+)$')
CLASS_MEAN_PREFIX, EXAMPLES_PREFIX = 'class_mean/', 'examples/'
_EXAMPLE_FIELDS = ('names', 'images')


def sidecar(table: str | os.PathLike, suffix: str) -> Optional[pathlib.Path]:
  """The file beside ``table`` named TABLE<suffix>, with or without the table's extension."""
  table = pathlib.Path(table)
  for candidate in (table.with_suffix(suffix), table.parent / (table.name + suffix)):
    if candidate.is_file():
      return candidate
  return None


@dataclasses.dataclass(frozen=True)
class FoldRun:
  fold: int
  epochs: list[dict]
  best_epoch: Optional[int]
  test: dict
  config: dict


def read_runs(runs: str | os.PathLike) -> tuple[list[FoldRun], Optional[dict]]:
  """(each ``fold-K/metrics.json``, in fold order; ``summary.json`` or None).

  Raises:
    FileNotFoundError: no fold-K/metrics.json under ``runs``.
    ValueError: a metrics file that is not JSON (naming it).
  """
  runs = pathlib.Path(runs)
  folds = []
  for path in sorted(runs.glob('fold-*/metrics.json')):
    match = _FOLD_DIR.match(path.parent.name)
    if not match:
      continue
    metrics = _read_json(path)
    folds.append(FoldRun(int(match.group(1)), list(metrics.get('epochs', [])),
                         metrics.get('best_epoch'), dict(metrics.get('test') or {}),
                         dict(metrics.get('config') or {})))
  if not folds:
    raise FileNotFoundError(f'no fold-K/metrics.json under {runs}')
  summary_path = runs / 'summary.json'
  summary = _read_json(summary_path) if summary_path.is_file() else None
  return sorted(folds, key=lambda run: run.fold), summary


def run_classes(runs: list[FoldRun], summary: Optional[dict],
                fallback: list[str]) -> list[str]:
  """Class names of the confusion matrices: from the runs' config or summary, else ``fallback``.

  ``fallback`` (the table's class order) is used only if its length matches
  the matrices; otherwise the classes are their indices.
  """
  for source in [run.config for run in runs] + [summary or {}]:
    for key in ('classes', 'class_names'):
      if isinstance(source.get(key), list):
        return [str(c) for c in source[key]]
  sizes = {len(run.test['confusion']) for run in runs if run.test.get('confusion')}
  if sizes == {len(fallback)}:
    return list(fallback)
  return [str(i) for i in range(max(sizes, default=0))]


@dataclasses.dataclass(frozen=True)
class Maps:
  """The contents of ``TABLE.maps.npz`` (absent parts are None or empty)."""
  classes: list[str]
  mean_image: Optional[np.ndarray]
  class_mean: dict[str, np.ndarray]
  example_names: list[str]
  example_images: Optional[np.ndarray]
  examples: dict[str, np.ndarray]


def read_maps(path: str | os.PathLike) -> Maps:
  """Reads ``TABLE.maps.npz``; shapes that do not agree are a ValueError naming the key."""
  with np.load(path, allow_pickle=False) as npz:
    arrays = {key: npz[key] for key in npz.files}
  classes = [str(c) for c in arrays.get('classes', [])]
  class_mean = {key[len(CLASS_MEAN_PREFIX):]: value for key, value in arrays.items()
                if key.startswith(CLASS_MEAN_PREFIX)}
  examples = {key[len(EXAMPLES_PREFIX):]: value for key, value in arrays.items()
              if key.startswith(EXAMPLES_PREFIX)
              and key[len(EXAMPLES_PREFIX):] not in _EXAMPLE_FIELDS}
  names = [str(n) for n in arrays.get(f'{EXAMPLES_PREFIX}names', [])]
  for prefix, maps, count in ((CLASS_MEAN_PREFIX, class_mean, len(classes)),
                              (EXAMPLES_PREFIX, examples, len(names))):
    for method, value in maps.items():
      if value.ndim != 3 or value.shape[0] != count:
        raise ValueError(f'{path}: {prefix}{method} has shape {value.shape}; expected '
                         f'({count}, H, W)')
  return Maps(classes, arrays.get('mean_image'), class_mean, names,
              arrays.get(f'{EXAMPLES_PREFIX}images'), examples)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Benchmark records, one JSON object per line; a malformed line names its number."""
  records = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError as err:
          raise ValueError(f'{path}:{number}: not a JSON record ({err})') from err
  return records


def _read_json(path: pathlib.Path) -> Any:
  try:
    return json.loads(path.read_text(encoding='utf-8'))
  except json.JSONDecodeError as err:
    raise ValueError(f'{path}: not JSON ({err})') from err


def read_provenance(path: str | os.PathLike) -> Any:
  """``TABLE.json`` as given."""
  return _read_json(pathlib.Path(path))
