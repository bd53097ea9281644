"""RQ1 and RQ2 together: compute from a table, write to and read from a folder of CSVs."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
from typing import Optional, Sequence

import numpy as np

from gestaltxai.stats import rq1 as rq1_lib
from gestaltxai.stats import rq2 as rq2_lib
from gestaltxai.stats.hpo import HpoAnnotations
from gestaltxai.stats.records import Skipped, read_rows, write_rows, write_table
from gestaltxai.artifacts.coefficient_table import CoefficientTable

RQ1_FILE, RQ1_SUMMARY_FILE = 'rq1.csv', 'rq1_summary.csv'
RQ2_FILE, RQ2_SUMMARY_FILE = 'rq2.csv', 'rq2_summary.csv'
SKIPPED_FILE, SETTINGS_FILE = 'skipped.csv', 'stats.json'


@dataclasses.dataclass(frozen=True)
class Results:
  """Both analyses; ``rq2`` is None when no HPO annotations were given."""
  rq1: list[rq1_lib.Rq1Test]
  rq2: Optional[list[rq2_lib.Rq2Correlation]]
  skipped: list[Skipped]
  rq1_config: rq1_lib.Rq1Config = rq1_lib.Rq1Config()
  rq2_config: rq2_lib.Rq2Config = rq2_lib.Rq2Config()

  @property
  def rq1_summary(self) -> rq1_lib.Rq1Summary:
    return rq1_lib.summarize(self.rq1)

  @property
  def rq2_summary(self) -> Optional[list[rq2_lib.Rq2Summary]]:
    return None if self.rq2 is None else rq2_lib.summarize(self.rq2)


def compute(table: CoefficientTable, hpo: Optional[HpoAnnotations] = None,
            rq1_config: rq1_lib.Rq1Config = rq1_lib.Rq1Config(),
            rq2_config: rq2_lib.Rq2Config = rq2_lib.Rq2Config()) -> Results:
  tests, skipped = rq1_lib.rq1(table, rq1_config)
  correlations = None
  if hpo is not None:
    correlations, skipped_rq2 = rq2_lib.rq2(table, hpo, rq2_config)
    skipped = skipped + skipped_rq2
  return Results(tests, correlations, skipped, rq1_config, rq2_config)


class NothingComputed(ValueError):
  """RQ1 or RQ2 was asked for and computed nothing: the message says which rows it had."""


def role_census(table: CoefficientTable, role: str, shown: Sequence[str] = ()) -> str:
  """'held_out rows (split val; fold 1: Angelman 3, KS 3, Unaffected 0)': the table's usable
  rows in ``role``, images counted once per fold and class; classes in ``shown`` appear
  even when absent."""
  rows = table.ok & table.in_role(role)
  if not rows.any():
    roles = sorted(set(table['role'].tolist())) if 'role' in table else []
    return (f'the table has no usable {role} rows' + (f' (its roles: {", ".join(roles)}; '
            f'explain them with `gestaltxai extract --roles {role}`)' if roles else ''))
  folds = table['fold'][rows] if 'fold' in table else np.zeros(rows.sum(), np.int64)
  images = set(zip(folds.tolist(), table['image_name'][rows].tolist(),
                   table['label'][rows].tolist()))
  classes = table.classes + [c for c in shown if c not in table.classes]
  parts = []
  for fold in sorted({f for f, _, _ in images}):
    counts = collections.Counter(label for f, _, label in images if f == fold)
    parts.append(f'fold {fold:g}: ' + ', '.join(
        f'{c} {counts.get(c, 0)}' for c in classes if c in counts or c in shown))
  splits = sorted(set(table['split'][rows].tolist()) - {''}) if 'split' in table else []
  where = f'split {"/".join(splits)}; ' if splits else ''
  return f'{role} rows ({where}' + '; '.join(parts) + ')'


def check_computed(results: Results, table: CoefficientTable) -> None:
  """Raises :class:`NothingComputed` when RQ1 computed no test, or RQ2 (asked for with HPO
  annotations) no correlation; the message names the rows' split, fold and class counts."""
  problems = []
  if not results.rq1:
    control = results.rq1_config.control
    problems.append(f'RQ1 computed no test against the control {control!r}: '
                    + role_census(table, results.rq1_config.role, shown=(control,)))
  if results.rq2 is not None and not results.rq2:
    problems.append('RQ2 computed no correlation: ' + role_census(table, results.rq2_config.role))
  if problems:
    raise NothingComputed(f'{table.path}: ' + '. '.join(problems)
                          + f'. Every test left out is listed with its reason in {SKIPPED_FILE}')


def write_results(results: Results, directory: str | os.PathLike) -> list[pathlib.Path]:
  """Writes the CSVs (and the settings as JSON) into ``directory``; returns the paths."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  written = [directory / RQ1_FILE, directory / RQ1_SUMMARY_FILE]
  write_rows(written[0], results.rq1, rq1_lib.Rq1Test)
  summary = results.rq1_summary
  write_table(written[1], summary.header(), summary.rows())
  if results.rq2 is not None:
    written += [directory / RQ2_FILE, directory / RQ2_SUMMARY_FILE]
    write_rows(written[-2], results.rq2, rq2_lib.Rq2Correlation)
    write_rows(written[-1], results.rq2_summary, rq2_lib.Rq2Summary)
  written += [directory / SKIPPED_FILE, directory / SETTINGS_FILE]
  write_rows(written[-2], results.skipped, Skipped)
  settings = {'rq1': dataclasses.asdict(results.rq1_config),
              'rq2': dataclasses.asdict(results.rq2_config)}
  written[-1].write_text(json.dumps(settings, indent=2) + '\n', encoding='utf-8')
  return written


def read_results(directory: str | os.PathLike) -> Results:
  """Reads what :func:`write_results` wrote (``rq2`` None without ``rq2.csv``)."""
  directory = pathlib.Path(directory)
  if not (directory / RQ1_FILE).is_file():
    raise FileNotFoundError(f'no {RQ1_FILE} in {directory} (run gestaltxai stats first)')
  optional = {name: directory / name for name in (RQ2_FILE, SKIPPED_FILE, SETTINGS_FILE)}
  settings = (json.loads(optional[SETTINGS_FILE].read_text(encoding='utf-8'))
              if optional[SETTINGS_FILE].is_file() else {})
  rq1_settings, rq2_settings = ({k: tuple(v) if isinstance(v, list) else v
                                 for k, v in settings.get(rq, {}).items()}
                                for rq in ('rq1', 'rq2'))
  return Results(
      read_rows(directory / RQ1_FILE, rq1_lib.Rq1Test),
      read_rows(optional[RQ2_FILE], rq2_lib.Rq2Correlation)
      if optional[RQ2_FILE].is_file() else None,
      read_rows(optional[SKIPPED_FILE], Skipped) if optional[SKIPPED_FILE].is_file() else [],
      rq1_lib.Rq1Config(**rq1_settings), rq2_lib.Rq2Config(**rq2_settings))
