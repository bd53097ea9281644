"""Per-method summaries of an evaluate-methods table, with confidence intervals.

For each (method, metric): the mean over the scored images with a 95%
percentile bootstrap interval over images (:data:`RESAMPLES` resamples, a
fixed seed: the same table gives the same summary; bounded scores such as
the pointing game's 0/1 keep their range, where a t interval would not),
and the mean of the folds' means with a 95% t interval over folds (two
folds or more: the spread between trained models, which the images'
interval leaves out).
Methods are ranked per metric by their mean in the metric's direction (1 is
best), and a method is ``tied_best`` when its images' interval overlaps the
best method's.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Mapping

import numpy as np
from scipy import stats

from gestaltxai.artifacts.coefficient_table import OK
from gestaltxai.files import atomic_write

CONFIDENCE = 0.95
#: Bootstrap resamples of the images' interval, and their seed.
RESAMPLES, SEED = 2000, 0
FIELDS = ('method', 'metric', 'direction', 'n_images', 'mean', 'ci_low', 'ci_high', 'n_folds',
          'fold_mean', 'fold_ci_low', 'fold_ci_high', 'rank', 'tied_best')


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
  """(mean, low, high): the t interval of the mean (NaN bounds for fewer than two values or
  no spread)."""
  values = np.asarray(values, np.float64)
  if not len(values):
    return float('nan'), float('nan'), float('nan')
  mean = float(values.mean())
  if len(values) < 2:
    return mean, float('nan'), float('nan')
  half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * stats.sem(values)
  return mean, float(mean - half), float(mean + half)


def bootstrap_interval(values: np.ndarray, confidence: float = CONFIDENCE
                       ) -> tuple[float, float, float]:
  """(mean, low, high): the percentile bootstrap interval of the mean (NaN bounds for fewer
  than two values)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return (float(values.mean()) if len(values) else float('nan')), float('nan'), float('nan')
  rng = np.random.default_rng(SEED)
  means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
  tail = (1 - confidence) / 2 * 100
  low, high = np.percentile(means, [tail, 100 - tail])
  return float(values.mean()), float(low), float(high)


def summarize(table: Mapping[str, np.ndarray]) -> list[dict]:
  """One dict per (method, metric) of ``FIELDS`` from the table's ok rows."""
  ok = table['status'] == OK
  out = []
  for metric in dict.fromkeys(table['metric']):
    rows_of_metric = []
    for method in dict.fromkeys(table['method']):
      chosen = ok & (table['metric'] == metric) & (table['method'] == method)
      values, folds = table['value'][chosen].astype(float), table['fold'][chosen]
      mean, low, high = bootstrap_interval(values)
      fold_means = [values[folds == f].mean() for f in np.unique(folds)]
      fold_mean, fold_low, fold_high = mean_interval(np.array(fold_means))
      direction = table['direction'][table['metric'] == metric][0]
      rows_of_metric.append({'method': method, 'metric': metric, 'direction': direction,
                             'n_images': int(chosen.sum()), 'mean': mean, 'ci_low': low,
                             'ci_high': high, 'n_folds': len(fold_means),
                             'fold_mean': fold_mean, 'fold_ci_low': fold_low,
                             'fold_ci_high': fold_high})
    _rank(rows_of_metric)
    out.extend(rows_of_metric)
  return out


def _rank(rows: list[dict]) -> None:
  """Adds rank (1 best, by mean in the metric's direction) and tied_best (interval overlap)."""
  scored = [r for r in rows if np.isfinite(r['mean'])]
  sign = 1 if (scored and scored[0]['direction'] == 'lower') else -1
  scored.sort(key=lambda r: sign * r['mean'])
  for rank, row in enumerate(scored, 1):
    row['rank'] = rank
  best = scored[0] if scored else None
  for row in rows:
    row.setdefault('rank', None)
    row['tied_best'] = bool(best is not None and row in scored and (
        row is best or _overlap(row, best)))


def _overlap(a: dict, b: dict) -> bool:
  bounds = [a['ci_low'], a['ci_high'], b['ci_low'], b['ci_high']]
  if not np.all(np.isfinite(bounds)):
    return a['mean'] == b['mean']
  return a['ci_low'] <= b['ci_high'] and b['ci_low'] <= a['ci_high']


def write_summary(summary: list[dict], path: pathlib.Path) -> None:
  def write(p):
    with open(p, 'w', newline='') as f:
      writer = csv.DictWriter(f, FIELDS)
      writer.writeheader()
      writer.writerows(summary)
  atomic_write(pathlib.Path(path), write)


def read_summary(path: pathlib.Path) -> list[dict]:
  """The rows of ``TABLE.summary.csv``, numbers as floats (NaN for empty)."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  numeric = set(FIELDS) - {'method', 'metric', 'direction', 'tied_best'}
  for row in rows:
    for field in numeric:
      row[field] = float(row[field]) if row[field] not in ('', 'None', 'nan') else float('nan')
    row['tied_best'] = row['tied_best'] == 'True'
  return rows
