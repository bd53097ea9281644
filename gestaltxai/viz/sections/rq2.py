"""The report's "RQ2" section: how each method's region coefficients correlate with the
clinicians' HPO annotations, per fold and over folds."""

from __future__ import annotations

from gestaltxai.stats.records import Skipped
from gestaltxai.stats.results import RQ2_FILE
from gestaltxai.stats.rq2 import Rq2Correlation
from gestaltxai.viz import blocks, inputs, plots
from gestaltxai.viz.blocks import Section


def section(study: inputs.Study) -> Section:
  results = study.results
  result = Section('rq2', 'RQ2: agreement with clinicians')
  if results.rq2 is None:
    result.blocks.append(blocks.note('No HPO annotations given (--hpo DIR), or the stats folder '
                                     f'has no {RQ2_FILE}.'))
    return result
  result.blocks.append(blocks.text(
      'Per method, fold and region: Spearman correlation between an annotated image\'s HPO score '
      'for the region (sum over its terms of the share of the three clinicians who annotated '
      'it) and its coefficient of min-max normalised relevance, over the annotated test '
      'images of the fold; 95% interval by Fisher\'s z. The table gives the mean ± standard '
      'deviation of r over folds (the paper\'s RQ2 table).'))
  correlations = results.rq2
  skipped = [s for s in results.skipped if s.analysis == 'rq2']
  if correlations:
    summary = results.rq2_summary
    methods = list(dict.fromkeys(s.method for s in summary))
    regions = list(dict.fromkeys(s.region for s in summary))
    by_key = {(s.method, s.region): s for s in summary}
    rows = [[m, *(blocks.cell(blocks.mean_std(by_key[m, r].r_mean, by_key[m, r].r_std))
                  if (m, r) in by_key else blocks.cell('–', 'na') for r in regions)]
            for m in methods]
    result.blocks.append(blocks.table(['method', *regions], rows, 'Spearman r over folds'))
    result.blocks.append(blocks.figure(
        plots.correlations(correlations, regions=regions, methods=methods), 'fig-rq2',
        'Spearman r per fold (dots, with 95% intervals) and its mean over folds (grey bars).'))
    result.blocks.append(blocks.details(f'All {len(correlations)} correlations',
                                        [blocks.rows_table(correlations, Rq2Correlation)]))
  else:
    result.blocks.append(blocks.note('No RQ2 correlation could be computed; the reasons are '
                                     'listed below.'))
  if skipped:
    result.blocks.append(blocks.details(f'{len(skipped)} skipped',
                                        [blocks.rows_table(skipped, Skipped)]))
  return result
