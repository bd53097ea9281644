"""The report's section "Which method to trust", from an evaluate-methods table.

It reads the table's summary (``TABLE.summary.csv``, written beside it by
``gestaltxai evaluate-methods``) and shows, per metric, each method's mean
with its 95% interval over images, the best method and those whose interval
overlaps the best's (shaded), and a ranking of the methods by how many
metrics they lead or tie. Any study that ran evaluate-methods gets it; the
demo's comes through the same path.
"""

from __future__ import annotations

import math
import pathlib
from typing import Sequence

from gestaltxai.metrics import METRICS, SIMILARITY_LIMIT
from gestaltxai.metrics.evaluation import summary_path
from gestaltxai.metrics.summary import read_summary

#: Sanity metrics whose mean at or above :data:`SIMILARITY_LIMIT` fails a method.
SANITY_METRICS = ('model_randomization', 'independent_randomization')


def trust_section(path: pathlib.Path, warnings: list[str]):
  """The section (a report ``_Section``) from the evaluation table at ``path``."""
  from gestaltxai.viz import report  # pylint: disable=import-outside-toplevel
  section = report._Section('trust', 'Which method to trust')  # pylint: disable=protected-access
  summary_file = summary_path(pathlib.Path(path))
  try:
    rows = read_summary(summary_file)
  except (OSError, ValueError, KeyError) as err:
    warnings.append(f'evaluation {path}: {err}')
    section.blocks.append(report._note(f'{summary_file} could not be read: {err}'))
    return section
  methods = list(dict.fromkeys(r['method'] for r in rows))
  metrics = list(dict.fromkeys(r['metric'] for r in rows))
  by_key = {(r['method'], r['metric']): r for r in rows}
  section.blocks.append(report._text(_introduction(metrics, rows)))
  header = ['method', *(f'{m} ({"↑" if _direction(m, rows) == "higher" else "↓"})'
                        for m in metrics)]
  table_rows = [[method, *(_score_cell(by_key.get((method, metric)), report)
                           for metric in metrics)] for method in methods]
  section.blocks.append(report._table(
      header, table_rows, f'mean [95% interval over images]; shaded: the best method and '
      f'those whose interval overlaps it; from {summary_file}'))
  section.blocks.append(report._table(['method', 'metrics led or tied', 'mean rank', 'sanity'],
                                      _ranking(methods, metrics, by_key),
                                      'methods ordered by the metrics they lead or tie'))
  folds = {int(r['n_folds']) for r in rows if math.isfinite(r['n_folds'])}
  if folds and max(folds) > 1:
    fold_rows = [[method, *(_fold_text(by_key.get((method, metric))) for metric in metrics)]
                 for method in methods]
    section.blocks.append(report._details('Means over folds (95% t interval over the folds)',
                                          [report._table(['method', *metrics], fold_rows)]))
  return section


def _direction(metric: str, rows: Sequence[dict]) -> str:
  return next(r['direction'] for r in rows if r['metric'] == metric)


def _introduction(metrics: Sequence[str], rows: Sequence[dict]) -> str:
  described = '; '.join(
      f'{m}: {METRICS[m].summary.rstrip(".")} ({_direction(m, rows)} is better)'
      for m in metrics if m in METRICS)
  images = max(int(r['n_images']) for r in rows) if rows else 0
  return (f'Each method explained the held-out images (up to {images} per method and metric) '
          f'and each explanation was scored: {described}. Localisation needs a ground truth '
          f'(planted regions) and is left out without one; faithfulness asks whether the '
          f'model\'s output follows the map; sanity asks whether the map depends on the model '
          f'and on the class. No single metric settles which method to trust: prefer methods '
          f'that lead or tie on most metrics and pass the sanity checks.')


def _score_cell(row, report):
  if row is None or not math.isfinite(row['mean']):
    return report._cell('–', 'na')
  interval = ('' if not math.isfinite(row['ci_low'])
              else f' [{row["ci_low"]:.3f}, {row["ci_high"]:.3f}]')
  return report._cell(f'{row["mean"]:.3f}{interval}', 'yes' if row['tied_best'] else '',
                      f'{int(row["n_images"])} images, rank {row["rank"]:.0f}')


def _fold_text(row) -> str:
  if row is None or not math.isfinite(row['fold_mean']):
    return '–'
  if not math.isfinite(row['fold_ci_low']):
    return f'{row["fold_mean"]:.3f}'
  return f'{row["fold_mean"]:.3f} [{row["fold_ci_low"]:.3f}, {row["fold_ci_high"]:.3f}]'


def _ranking(methods, metrics, by_key) -> list[list]:
  entries = []
  for method in methods:
    scored = [by_key[(method, m)] for m in metrics if (method, m) in by_key
              and math.isfinite(by_key[(method, m)]['rank'])]
    led = sum(r['tied_best'] for r in scored)
    mean_rank = sum(r['rank'] for r in scored) / len(scored) if scored else float('nan')
    failed = [r['metric'] for r in scored
              if r['metric'] in SANITY_METRICS and r['mean'] >= SIMILARITY_LIMIT]
    sanity = (f'fails {", ".join(failed)} (r ≥ {SIMILARITY_LIMIT})' if failed else
              'passes' if any(r['metric'] in SANITY_METRICS for r in scored) else 'not run')
    entries.append((-led, mean_rank, method, sanity, led))
  entries.sort(key=lambda e: (bool(e[3].startswith('fails')), e[0], e[1]))
  return [[method, f'{led} of {len(metrics)}', mean_rank, sanity]
          for _, mean_rank, method, sanity, led in entries]
