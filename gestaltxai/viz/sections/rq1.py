"""The report's "RQ1" section: which regions' coefficients differ between each syndrome and the
control, per method (effect sizes, counts of significant tests, class means on a face)."""

from __future__ import annotations

import numpy as np

from gestaltxai.stats.records import Skipped
from gestaltxai.stats.results import RQ1_FILE
from gestaltxai.stats.rq1 import Rq1Config, Rq1Test
from gestaltxai.viz import blocks, inputs, maps, plots
from gestaltxai.viz.blocks import Section


def significance_label(config: Rq1Config) -> str:
  """How a significant test is marked in the figures' legends."""
  return f'Bonferroni-corrected p < {config.alpha:g}'


def section(study: inputs.Study) -> Section:
  config, results = study.config, study.results
  result = Section('rq1', 'RQ1: syndrome vs control')
  result.blocks.append(blocks.text(
      f'For each method, syndrome and region, the coefficients of the syndrome\'s images are '
      f'compared with those of the control class ({config.control}): Levene (median centre) '
      f'and Shapiro-Wilk at {config.alpha_assumptions:g} choose a two-sided t-test (Welch\'s '
      'when the group sizes differ) for normal groups of equal variance, else a two-sided '
      'Mann-Whitney U; Bonferroni over each method\'s tests, significant when the corrected p '
      f'< {config.alpha:g}. Cohen\'s d is control minus syndrome over the pooled standard '
      'deviation.'))
  tests = results.rq1
  rq1_skipped = [s for s in results.skipped if s.analysis == 'rq1']
  result.blocks.append(blocks.cards([
      (len(tests), 'tests'), (sum(t.significant for t in tests), 'significant'),
      (len(rq1_skipped), 'skipped')]))
  if not tests:
    result.blocks.append(blocks.note('No RQ1 test could be computed; the reasons are listed '
                                     'below.'))
  else:
    summary = results.rq1_summary
    lookup = {(t.method, t.syndrome, t.region): t for t in tests}
    d = np.array([[getattr(lookup.get((m, s, r)), 'cohen_d', np.nan) for s, r in summary.cells]
                  for m in summary.methods])
    label = significance_label(config)
    result.blocks.append(blocks.figure(
        plots.effect_sizes(d, summary.counts > 0, methods=summary.methods, cells=summary.cells,
                           mark_label=label), 'fig-rq1-effects',
        f"Cohen's d of every test, drawn as syndrome minus control (red: the syndrome's "
        f"coefficients are higher than the control's, blue: lower; {RQ1_FILE} keeps the "
        f"reference's control minus syndrome); * marks a significant test ({label})."))
    result.blocks.append(_summary_table(summary))
    regions, syndromes, grid = summary.by_region()
    result.blocks.append(blocks.table(
        ['region', *syndromes], [[r, *row] for r, row in zip(regions, grid.tolist())],
        'Significant tests over all methods (the paper\'s layout). The reference notebook '
        'added Angelman\'s count into the KS column; KS here is KS\'s own.'))
    result.blocks += _region_face_blocks(study.table, summary.methods, config)
    result.blocks.append(blocks.details(f'All {len(tests)} tests',
                                        [blocks.rows_table(tests, Rq1Test)]))
  if rq1_skipped:
    result.blocks.append(blocks.details(f'{len(rq1_skipped)} tests skipped',
                                        [blocks.rows_table(rq1_skipped, Skipped)]))
  return result


def _summary_table(summary) -> dict:
  syndromes = list(dict.fromkeys(s for s, _ in summary.cells))
  groups = [('', 1)] + [(s, sum(1 for c in summary.cells if c[0] == s)) for s in syndromes] + [
      ('', 2)]
  rows = []
  for method, counts in zip(summary.methods, summary.counts.tolist()):
    cells = [blocks.cell('✓', 'yes') if c > 0 else blocks.cell('·', 'no') if c == 0
             else blocks.cell('–', 'na') for c in counts]
    rows.append([method, *cells, sum(c > 0 for c in counts), sum(c >= 0 for c in counts)])
  return blocks.table(['method', *(r for _, r in summary.cells), 'significant', 'tests'], rows,
                      'Significant tests per method (✓ significant, · not, – not computed)',
                      groups)


def _region_face_blocks(table, methods, config: Rq1Config) -> list[dict]:
  regions = table.regions(config.suffix)
  classes = table.classes
  values = np.full((len(methods), len(classes), len(regions)), np.nan)
  for i, method in enumerate(methods):
    for k, name in enumerate(classes):
      rows = table.select(method=method, label=name)
      for r, region in enumerate(regions):
        column = table[f'{region}{config.suffix}'][rows]
        if np.isfinite(column).any():
          values[i, k, r] = np.nanmean(column)
  found = []
  for n, chunk in enumerate(blocks.chunks(range(len(methods))), 1):
    names = [methods[i] for i in chunk]
    found.append(blocks.figure(
        maps.region_faces(values[chunk], methods=names, classes=classes, regions=regions),
        f'fig-region-faces-{n}',
        f'Mean region coefficient ({", ".join(regions)}) of each class painted on a template '
        'face; one colour scale per method (row).'))
  return found
