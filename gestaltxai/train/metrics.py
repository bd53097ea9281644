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
  """A confusion matrix figure: counts in the cells, rows normalised for the colour."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  confusion = np.asarray(confusion)
  shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  side = max(4.0, 0.45 * len(classes) + 2.5)
  fig, ax = plt.subplots(figsize=(side, side * 0.9))
  ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  ticks = np.arange(len(classes))
  ax.set_xticks(ticks, classes, rotation=45, ha='right')
  ax.set_yticks(ticks, classes)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  for (i, j), count in np.ndenumerate(confusion):
    ax.text(j, i, str(count), ha='center', va='center',
            color='white' if shares[i, j] > 0.5 else 'black', fontsize=8)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)

