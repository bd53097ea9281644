"""The report's "Training" section: each fold's held-out scores with their mean and spread over
folds (:func:`gestaltxai.train.metrics.summarize`), training curves and the confusion matrix."""

from __future__ import annotations

import json

import numpy as np

from gestaltxai.artifacts import run_folder
from gestaltxai.viz import blocks, inputs, plots
from gestaltxai.viz.blocks import Section


def section(study: inputs.Study) -> Section:
  # gestaltxai.train imports JAX: only when there are runs to show.
  from gestaltxai.train.metrics import SCORES, summarize  # pylint: disable=import-outside-toplevel
  result = Section('training', 'Training')
  runs_dir = study.inputs.runs
  if runs_dir is None:
    result.blocks.append(blocks.note('No training runs given (--runs RUNS).'))
    return result
  try:
    runs, summary = inputs.read_runs(runs_dir)
  except (FileNotFoundError, ValueError) as err:
    study.warnings.append(f'--runs: {err}')
    result.blocks.append(blocks.note(f'Training runs could not be read: {err}'))
    return result
  rows = [[f'fold {run.fold}', len(run.epochs), run.best_epoch,
           *(run.test.get(k, np.nan) for k in SCORES)] for run in runs]
  scored = {run_folder.fold_name(run.fold): run.test for run in runs
            if all(k in run.test for k in SCORES)}
  if len(runs) > 1 and scored:
    over_folds = summarize(scored)
    rows.append(['mean ± std', '', '', *(_spread(over_folds['mean'][k], over_folds['std'][k])
                                        for k in SCORES)])
  # The held-out split is the dataset's (val on NIH-Faces, as the reference; test on ours).
  splits = '/'.join(sorted({str(run.test['split']) for run in runs if 'split' in run.test}))
  held_out = f'held-out ({splits}) accuracy' if splits else 'held-out accuracy'
  result.blocks.append(blocks.table(['fold', 'epochs', 'chosen epoch', held_out, 'macro F1',
                                     'weighted F1'], rows, f'Runs in {runs_dir}'))
  curves = {f'fold {run.fold}': run.epochs for run in runs if run.epochs}
  if curves:
    best = {f'fold {run.fold}': run.best_epoch for run in runs if run.best_epoch is not None}
    result.blocks.append(blocks.figure(
        plots.training_curves(curves, best_epochs=best), 'fig-training-curves',
        'Training curves: loss and accuracy per epoch for each fold, training solid and the '
        'epoch-selection split dashed; dots mark the chosen epoch (the checkpoint that was '
        'scored).'))
  confusions = [np.asarray(run.test['confusion']) for run in runs if run.test.get('confusion')]
  if confusions and len({c.shape for c in confusions}) == 1:
    names = inputs.run_classes(runs, summary, study.table.classes)
    result.blocks.append(blocks.figure(
        plots.confusion_figure(sum(confusions), names), 'fig-confusion',
        f'Test confusion matrix summed over {len(confusions)} fold(s); colour is the share of '
        'each true class, numbers are images.'))
  if summary is not None:
    result.blocks.append(blocks.details(run_folder.SUMMARY_FILE,
                                        [blocks.pre(json.dumps(summary, indent=2))]))
  return result


def _spread(mean: float, std) -> str:
  """'mean ± std' over folds, 4 significant digits; the mean alone without a std (one fold)."""
  if std is None:
    return blocks.format_value(mean)
  return blocks.format_value(mean) + ' ± ' + blocks.format_value(std)
