"""The layout of a ``gestaltxai train`` output and the keys of its files, written and read here.

``RUNS/`` after training and ``gestaltxai evaluate``:

* ``fold-K/checkpoints/<epoch>/``: orbax checkpoints (:mod:`gestaltxai.train.checkpoints`);
* ``fold-K/metrics.json``: :class:`FoldMetrics` (``{"config", "fold", "classes",
  "roles", "epochs": [{epoch, train_loss, train_accuracy, val_loss, val_accuracy,
  learning_rate, seconds}], "best_epoch", "test": {accuracy, macro_f1,
  weighted_f1, confusion, split, images, selection}, "provenance"}``),
  rewritten after every epoch, ``test`` once the run ends;
* ``fold-K/confusion.png``: the held-out confusion matrix of the chosen epoch;
* ``summary.json`` and ``confusion.png``: the folds together
  (:func:`gestaltxai.train.evaluate_runs`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Optional

from gestaltxai.files import read_json, write_json

METRICS_FILE = 'metrics.json'
SUMMARY_FILE = 'summary.json'
CONFUSION_FIGURE = 'confusion.png'
#: What ``gestaltxai evaluate`` writes into RUNS from the folds: stale once a fold is retrained.
SUMMARIES = (SUMMARY_FILE, CONFUSION_FIGURE)
_FOLD_NAME = re.compile(r'fold-(\d+)$')
#: The key of a file's provenance record (:data:`gestaltxai.provenance.KEY`).
_PROVENANCE = 'provenance'


def fold_name(fold: int) -> str:
  """'fold-K': a fold's folder name, also its name in summaries and provenance."""
  return f'fold-{fold}'


def fold_dir(runs: pathlib.Path, fold: int) -> pathlib.Path:
  return pathlib.Path(runs) / fold_name(fold)


def fold_number(name: str) -> Optional[int]:
  """K of a 'fold-K' folder name, or None for any other name."""
  match = _FOLD_NAME.match(name)
  return int(match.group(1)) if match else None


def metrics_paths(runs: pathlib.Path) -> dict[str, pathlib.Path]:
  """{'fold-K': its ``metrics.json``} of every fold under ``runs`` that has one, by K."""
  found = {path.parent.name: path for path in pathlib.Path(runs).glob(f'fold-*/{METRICS_FILE}')
           if fold_number(path.parent.name) is not None}
  return dict(sorted(found.items(), key=lambda item: fold_number(item[0])))


@dataclasses.dataclass(frozen=True)
class FoldMetrics:
  """A fold's ``metrics.json``: its training history and, once finished, its held-out scores."""

  fold: int
  config: dict
  classes: list[str]
  epochs: list[dict]
  best_epoch: Optional[int]
  #: Held-out scores (:func:`gestaltxai.train.metrics.scores` and ``confusion``, ``split``,
  #: ``images``, ``selection``); empty until the run ends.
  test: dict = dataclasses.field(default_factory=dict)
  #: The split roles (:meth:`gestaltxai.roles.SplitRoles.to_dict`); empty until the run ends.
  roles: dict = dataclasses.field(default_factory=dict)
  #: What the run was made from (:func:`gestaltxai.provenance.run_record`); empty for runs
  #: of an earlier gestaltxai.
  provenance: dict = dataclasses.field(default_factory=dict)

  @property
  def finished(self) -> bool:
    return bool(self.test)

  def to_json(self, with_provenance: bool = True) -> dict[str, Any]:
    content = {'config': self.config, 'fold': self.fold, 'classes': list(self.classes),
               'epochs': self.epochs, 'best_epoch': self.best_epoch}
    if self.finished:
      content.update(roles=self.roles, test=self.test)
    if with_provenance:
      content[_PROVENANCE] = self.provenance
    return content

  @classmethod
  def from_json(cls, content: dict, fold: int) -> 'FoldMetrics':
    return cls(int(content.get('fold', fold)), dict(content.get('config') or {}),
               [str(c) for c in content.get('classes') or []], list(content.get('epochs') or []),
               content.get('best_epoch'), dict(content.get('test') or {}),
               dict(content.get('roles') or {}), dict(content.get(_PROVENANCE) or {}))


def write_metrics(runs: pathlib.Path, metrics: FoldMetrics) -> pathlib.Path:
  path = fold_dir(runs, metrics.fold) / METRICS_FILE
  write_json(path, metrics.to_json())
  return path


def read_metrics(path: pathlib.Path) -> FoldMetrics:
  """A fold's ``metrics.json`` (its fold from the folder name when the file lacks it)."""
  path = pathlib.Path(path)
  return FoldMetrics.from_json(read_json(path, 'fold metrics'),
                               fold_number(path.parent.name) or 0)


def read_runs(runs: pathlib.Path) -> dict[str, FoldMetrics]:
  """{'fold-K': its metrics} of every fold under ``runs``, by K.

  Raises:
    FileNotFoundError: no fold has a ``metrics.json``.
  """
  found = {name: read_metrics(path) for name, path in metrics_paths(runs).items()}
  if not found:
    raise FileNotFoundError(f'no fold-K/{METRICS_FILE} under {runs} (written by '
                            '`gestaltxai train`)')
  return found


def summary_path(runs: pathlib.Path) -> pathlib.Path:
  return pathlib.Path(runs) / SUMMARY_FILE


def write_summary(runs: pathlib.Path, summary: dict) -> None:
  write_json(summary_path(runs), summary)


def read_summary(runs: pathlib.Path) -> Optional[dict]:
  """``summary.json`` of ``gestaltxai evaluate``, or None when it was not run."""
  path = summary_path(runs)
  return read_json(path, 'folds\' summary') if path.is_file() else None
