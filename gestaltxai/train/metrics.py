"""Classification metrics of a fold, their summary over folds, and confusion figures.

F1 follows scikit-learn's ``f1_score`` (what the reference's test.py calls):
averages run over the classes that occur among the labels or the
predictions; a class predicted but never true has F1 0 and, in the weighted
mean, weight 0.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

#: Per-fold numbers that the summary averages.
SCORES = ('accuracy', 'macro_f1', 'weighted_f1')


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts: row = true class, column = predicted class."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (np.asarray(labels), np.asarray(predicted)), 1)
  return counts


def scores(confusion: np.ndarray) -> dict[str, float]:
  """Accuracy, macro F1 and weighted F1 of a confusion matrix (rows true)."""
  confusion = np.asarray(confusion, np.float64)
  true_positive = np.diag(confusion)
  support = confusion.sum(1)
  predicted = confusion.sum(0)
  present = (support + predicted) > 0
  f1 = 2 * true_positive[present] / (support + predicted)[present]
  total = confusion.sum()
  return {'accuracy': float(true_positive.sum() / total),
          'macro_f1': float(f1.mean()),
          'weighted_f1': float((f1 * support[present]).sum() / support.sum())}


def summarize(folds: dict[str, dict]) -> dict:
  """{'folds': {name: scores}, 'mean': ..., 'std': ...} over folds (std with ddof 1)."""
  table = {name: {s: result[s] for s in SCORES} for name, result in folds.items()}
  values = {s: np.array([row[s] for row in table.values()]) for s in SCORES}
  std = {s: float(v.std(ddof=1)) if len(v) > 1 else None for s, v in values.items()}
  return {'folds': table, 'mean': {s: float(v.mean()) for s, v in values.items()}, 'std': std}


def format_table(summary: dict) -> str:
  """The reference test.py's table: one row per fold, then mean and std."""
  header = f'{"":10s}' + ''.join(f'{s:>14s}' for s in SCORES)
  rows = [f'{name:10s}' + ''.join(f'{row[s]:14.3f}' for s in SCORES)
          for name, row in summary['folds'].items()]
  for stat in ('mean', 'std'):
    cells = ''.join(f'{"-":>14s}' if summary[stat][s] is None else f'{summary[stat][s]:14.3f}'
                    for s in SCORES)
    rows.append(f'{stat:10s}' + cells)
  return '\n'.join([header, *rows])


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: pathlib.Path,
                   title: str) -> None:
  """Writes the confusion matrix figure (:func:`gestaltxai.viz.plots.confusion_figure`, the
  report's too) to ``path``."""
  from gestaltxai.viz.plots import confusion_figure  # pylint: disable=import-outside-toplevel
  confusion_figure(confusion, classes, title=title).savefig(path, dpi=120)

