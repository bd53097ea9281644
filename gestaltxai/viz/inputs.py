"""What the report reads besides the table, through the modules that own those files:
training runs (:mod:`gestaltxai.artifacts.run_folder`), the maps file and the table's
provenance (:mod:`gestaltxai.artifacts.coefficient_table`), benchmark records
(:mod:`gestaltxai.artifacts.benchmark_records`)."""

from __future__ import annotations

import os
from typing import Optional

from gestaltxai.artifacts import run_folder
from gestaltxai.artifacts.benchmark_records import read_records
from gestaltxai.artifacts.coefficient_table import (Maps, find_maps, find_provenance, read_maps,
                                                    read_provenance)
from gestaltxai.artifacts.run_folder import FoldMetrics

__all__ = ['FoldMetrics', 'Maps', 'find_maps', 'find_provenance', 'read_maps',
           'read_provenance', 'read_records', 'read_runs', 'run_classes']


def read_runs(runs: str | os.PathLike) -> tuple[list[FoldMetrics], Optional[dict]]:
  """(each fold's metrics, in fold order; the folds' summary or None).

  Raises:
    FileNotFoundError: no fold-K/metrics.json under ``runs``.
    ValueError: a metrics file that is not JSON (naming it).
  """
  return list(run_folder.read_runs(runs).values()), run_folder.read_summary(runs)


def run_classes(runs: list[FoldMetrics], summary: Optional[dict],
                fallback: list[str]) -> list[str]:
  """Class names of the confusion matrices: the runs' or the summary's, else ``fallback``.

  ``fallback`` (the table's class order) is used only if its length matches
  the matrices; otherwise the classes are their indices.
  """
  for classes in [run.classes for run in runs] + [(summary or {}).get('classes')]:
    if classes:
      return [str(c) for c in classes]
  sizes = {len(run.test['confusion']) for run in runs if run.test.get('confusion')}
  if sizes == {len(fallback)}:
    return list(fallback)
  return [str(i) for i in range(max(sizes, default=0))]
