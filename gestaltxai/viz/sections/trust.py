"""The report's "Which method to trust" section, from an evaluate-methods table.

It reads the table's summary (written beside it by ``gestaltxai evaluate-methods``) and
shows, per metric, each method's mean
with its 95% interval over images, the best method and those whose interval
overlaps the best's (shaded), and a ranking of the methods by how many
metrics they lead or tie. Any study that ran evaluate-methods gets it; the
demo's comes through the same path.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from gestaltxai.viz import blocks, inputs
from gestaltxai.viz.blocks import Section

#: Sanity metrics whose mean at or above :data:`gestaltxai.metrics.SIMILARITY_LIMIT` fails a
#: method.
SANITY_METRICS = ('model_randomization', 'independent_randomization')


def section(study: inputs.Study) -> Optional[Section]:
  """None unless the report was given an evaluation table."""
  path = study.inputs.evaluation
  if path is None:
    return None
  # gestaltxai.metrics imports JAX: only when there is an evaluation to show.
  # pylint: disable-next=import-outside-toplevel
  from gestaltxai.metrics import METRICS, SIMILARITY_LIMIT
  result = Section('trust', 'Which method to trust')
  summary_file = inputs.evaluation_summary_path(path)
  try:
    rows = inputs.read_evaluation_summary(summary_file)
  except (OSError, ValueError, KeyError) as err:
    study.warnings.append(f'evaluation {path}: {err}')
    result.blocks.append(blocks.note(f'{summary_file} could not be read: {err}'))
    return result
  methods = list(dict.fromkeys(r['method'] for r in rows))
  metrics = list(dict.fromkeys(r['metric'] for r in rows))
  by_key = {(r['method'], r['metric']): r for r in rows}
  result.blocks.append(blocks.text(_introduction(metrics, rows, METRICS)))
  header = ['method', *(f'{m} ({"↑" if _direction(m, rows) == "higher" else "↓"})'
                        for m in metrics)]
  table_rows = [[method, *(_score_cell(by_key.get((method, metric)))
                           for metric in metrics)] for method in methods]
  result.blocks.append(blocks.table(
      header, table_rows, f'mean [95% interval over images]; shaded: the best method and '
      f'those whose interval overlaps it; from {summary_file}'))
  result.blocks.append(blocks.table(['method', 'metrics led or tied', 'mean rank', 'sanity'],
                                    _ranking(methods, metrics, by_key, SIMILARITY_LIMIT),
                                    'methods ordered by the metrics they lead or tie'))
  folds = {int(r['n_folds']) for r in rows if math.isfinite(r['n_folds'])}
  if folds and max(folds) > 1:
    fold_rows = [[method, *(_fold_text(by_key.get((method, metric))) for metric in metrics)]
                 for method in methods]
    result.blocks.append(blocks.details('Means over folds (95% t interval over the folds)',
                                        [blocks.table(['method', *metrics], fold_rows)]))
  return result


def _direction(metric: str, rows: Sequence[dict]) -> str:
  return next(r['direction'] for r in rows if r['metric'] == metric)


def _introduction(metrics: Sequence[str], rows: Sequence[dict], described_metrics) -> str:
  described = '; '.join(
      f'{m}: {described_metrics[m].summary.rstrip(".")} ({_direction(m, rows)} is better)'
      for m in metrics if m in described_metrics)
  images = max(int(r['n_images']) for r in rows) if rows else 0
  return (f'Each method explained the held-out images (up to {images} per method and metric) '
          f'and each explanation was scored: {described}. Localisation needs a ground truth '
          f'(planted regions) and is left out without one; faithfulness asks whether the '
          f'model\'s output follows the map; sanity asks whether the map depends on the model '
          f'and on the class. No single metric settles which method to trust: prefer methods '
          f'that lead or tie on most metrics and pass the sanity checks.')


def _score_cell(row):
  if row is None or not math.isfinite(row['mean']):
    return blocks.cell('–', 'na')
  interval = ('' if not math.isfinite(row['ci_low'])
              else f' [{row["ci_low"]:.3f}, {row["ci_high"]:.3f}]')
  return blocks.cell(f'{row["mean"]:.3f}{interval}', 'yes' if row['tied_best'] else '',
                      f'{int(row["n_images"])} images, rank {row["rank"]:.0f}')


def _fold_text(row) -> str:
  if row is None or not math.isfinite(row['fold_mean']):
    return '–'
  if not math.isfinite(row['fold_ci_low']):
    return f'{row["fold_mean"]:.3f}'
  return f'{row["fold_mean"]:.3f} [{row["fold_ci_low"]:.3f}, {row["fold_ci_high"]:.3f}]'


def _ranking(methods, metrics, by_key, limit: float) -> list[list]:
  entries = []
  for method in methods:
    scored = [by_key[(method, m)] for m in metrics if (method, m) in by_key
              and math.isfinite(by_key[(method, m)]['rank'])]
    led = sum(r['tied_best'] for r in scored)
    mean_rank = sum(r['rank'] for r in scored) / len(scored) if scored else float('nan')
    failed = [r['metric'] for r in scored
              if r['metric'] in SANITY_METRICS and r['mean'] >= limit]
    sanity = (f'fails {", ".join(failed)} (r ≥ {limit})' if failed else
              'passes' if any(r['metric'] in SANITY_METRICS for r in scored) else 'not run')
    entries.append((-led, mean_rank, method, sanity, led))
  entries.sort(key=lambda e: (bool(e[3].startswith('fails')), e[0], e[1]))
  return [[method, f'{led} of {len(metrics)}', mean_rank, sanity]
          for _, mean_rank, method, sanity, led in entries]
