"""What the report reads and how: its inputs (:class:`ReportInputs`), read into a
:class:`Study` through the modules that own those files -- the table, its maps and provenance
(:mod:`gestaltxai.artifacts.coefficient_table`), training runs
(:mod:`gestaltxai.artifacts.run_folder`), benchmark records
(:mod:`gestaltxai.artifacts.benchmark_records`), the statistics (:mod:`gestaltxai.stats.results`),
an evaluation's summary (:mod:`gestaltxai.metrics.summary`), the dataset (:mod:`gestaltxai.data`)
and the demo's summary.

The table (and the statistics) must be readable; the other inputs are optional and are read
by the section that shows them, so one that cannot be read becomes a note there and a
warning, and the rest of the report is still written.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Optional, Sequence

from gestaltxai.artifacts import run_folder
from gestaltxai.artifacts.benchmark_records import read_records
from gestaltxai.artifacts.coefficient_table import (CoefficientTable, Maps, find_maps,
                                                    find_provenance, read_maps, read_provenance,
                                                    read_table)
from gestaltxai.artifacts.run_folder import FoldMetrics
from gestaltxai.files import read_json
from gestaltxai.stats import hpo as hpo_lib
from gestaltxai.stats import results as results_lib
from gestaltxai.stats.rq1 import Rq1Config

__all__ = ['FoldMetrics', 'Maps', 'ReportInputs', 'Study', 'evaluation_summary_path', 'find_maps',
           'find_provenance', 'open_dataset', 'read_evaluation_summary', 'read_ground_truth',
           'read_maps', 'read_provenance', 'read_records', 'read_runs', 'read_study',
           'run_classes']


@dataclasses.dataclass(frozen=True)
class ReportInputs:
  """What the report reads; only ``table`` is required.

  ``maps`` and ``provenance`` default to the maps file and the provenance beside the table
  (:func:`find_maps`, :func:`find_provenance`); ``stats`` (a ``gestaltxai stats`` folder) is
  read when given, else RQ1 (and RQ2, with ``hpo``) are computed with ``rq1``.
  """
  table: pathlib.Path
  runs: Optional[pathlib.Path] = None
  stats: Optional[pathlib.Path] = None
  hpo: Optional[pathlib.Path] = None
  data_dir: Optional[pathlib.Path] = None
  bench: Optional[pathlib.Path] = None
  maps: Optional[pathlib.Path] = None
  provenance: Optional[pathlib.Path] = None
  chain: Sequence[str] = ()  # what the inputs were made from (gestaltxai.provenance)
  rq1: Rq1Config = Rq1Config()
  ground_truth: Optional[pathlib.Path] = None  # the demo's summary (gestaltxai.demo)
  evaluation: Optional[pathlib.Path] = None  # an evaluate-methods table (summary beside it)


@dataclasses.dataclass
class Study:
  """The report's inputs as read: what every section may use."""
  inputs: ReportInputs
  table: CoefficientTable
  results: results_lib.Results
  #: The maps file used (given or found beside the table), or None.
  maps_path: Optional[pathlib.Path]
  #: Its contents; None when there is none or it could not be read (then a warning says so).
  maps: Optional[Maps]
  #: The table's provenance file (given or found beside the table), or None.
  provenance: Optional[pathlib.Path]
  #: Optional inputs that could not be used; sections append to it.
  warnings: list[str] = dataclasses.field(default_factory=list)

  @property
  def config(self) -> Rq1Config:
    """RQ1's settings: the stats folder's, or ``inputs.rq1`` when computed here."""
    return self.results.rq1_config


def read_study(report_inputs: ReportInputs) -> Study:
  """Reads the table, the statistics and the maps.

  Raises:
    FileNotFoundError, ValueError: the table (or the stats folder or HPO
      files) cannot be read.
  """
  table = read_table(report_inputs.table)
  if report_inputs.stats is not None:
    results = results_lib.read_results(report_inputs.stats)
  else:
    hpo = hpo_lib.read_hpo(report_inputs.hpo) if report_inputs.hpo is not None else None
    results = results_lib.compute(table, hpo, report_inputs.rq1)
  warnings = []
  if report_inputs.stats is not None and report_inputs.hpo is not None:
    warnings.append(f'--hpo {report_inputs.hpo} is not used: RQ2 comes from --stats '
                    f'{report_inputs.stats}')
  maps_path = report_inputs.maps or find_maps(report_inputs.table)
  map_set = None
  if maps_path is not None:
    try:
      map_set = read_maps(maps_path)
    except (OSError, ValueError) as err:
      warnings.append(f'maps {maps_path}: {err}')
  provenance = report_inputs.provenance or find_provenance(report_inputs.table)
  return Study(report_inputs, table, results, maps_path, map_set, provenance, warnings)


def read_runs(runs: str | os.PathLike) -> tuple[list[FoldMetrics], Optional[dict]]:
  """(each fold's metrics, in fold order; the folds' summary or None).

  Raises:
    FileNotFoundError: no fold has its metrics under ``runs``.
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


def read_ground_truth(path: str | os.PathLike) -> dict[str, Any]:
  """The demo's summary (:func:`gestaltxai.demo.run_demo` writes it).

  Raises:
    OSError, ValueError: it cannot be read.
  """
  return read_json(pathlib.Path(path), 'demo summary')


def open_dataset(data_dir: str | os.PathLike):
  """The prepared dataset at ``data_dir`` (:class:`gestaltxai.data.pipeline.FaceDataset`).

  Raises:
    FileNotFoundError, ValueError, KeyError, OSError: it cannot be opened.
  """
  from gestaltxai.data.pipeline import FaceDataset  # pylint: disable=import-outside-toplevel
  return FaceDataset.open(data_dir)


def evaluation_summary_path(evaluation: str | os.PathLike) -> pathlib.Path:
  """Where ``gestaltxai evaluate-methods`` writes the summary of the table ``evaluation``."""
  from gestaltxai.metrics.evaluation import summary_path  # pylint: disable=import-outside-toplevel
  return summary_path(pathlib.Path(evaluation))


def read_evaluation_summary(path: str | os.PathLike) -> list[dict]:
  """The rows (one per method and metric) of an evaluation summary.

  Raises:
    OSError, ValueError, KeyError: it cannot be read.
  """
  from gestaltxai.metrics.summary import read_summary  # pylint: disable=import-outside-toplevel
  return read_summary(path)
