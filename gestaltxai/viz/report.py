"""The self-contained HTML report: data, training, RQ1, RQ2, per-method figures, cost, provenance.

One file, every figure embedded as a base64 PNG, no script and nothing
fetched from the network: it opens from disk anywhere. Sections are built
here as plain data (headings, text, tables, figures) and laid out by one
Jinja template (``templates/report.html``, autoescaped). An optional input
that cannot be read becomes a note in its section and a warning, so the rest
of the report is still written.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import io
import json
import pathlib
from typing import Callable, Optional, Sequence

import jinja2
import numpy as np

from gestaltxai import __version__
from gestaltxai.stats import hpo as hpo_lib
from gestaltxai.stats import results as results_lib
from gestaltxai.stats.records import Skipped
from gestaltxai.stats.rq1 import Rq1Config, Rq1Test
from gestaltxai.stats.rq2 import Rq2Correlation
from gestaltxai.stats.table import CoefficientTable, read_table
from gestaltxai.viz import inputs, maps, plots

FIGURE_DPI = 100
#: Methods per overlay grid (columns) and per face grid (rows), so panels stay legible.
METHODS_PER_FIGURE = 7
_TEMPLATE = pathlib.Path(__file__).parent / 'templates' / 'report.html'
_MAPS_SUFFIX, _PROVENANCE_SUFFIX = '.maps.npz', '.json'


@dataclasses.dataclass(frozen=True)
class ReportInputs:
  """What the report reads; only ``table`` is required.

  ``maps`` and ``provenance`` default to ``TABLE.maps.npz`` and ``TABLE.json``
  beside the table; ``stats`` (a ``gestaltxai stats`` folder) is read when
  given, else RQ1 (and RQ2, with ``hpo``) are computed with ``rq1``.
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
  ground_truth: Optional[pathlib.Path] = None  # the demo's summary.json
  evaluation: Optional[pathlib.Path] = None  # an evaluate-methods table (summary beside it)


# Blocks: plain dicts the template lays out by their 'kind'.


def _text(text: str) -> dict:
  return {'kind': 'text', 'text': text}


def _note(text: str) -> dict:
  return {'kind': 'note', 'text': text}


def _heading(text: str, anchor: str) -> dict:
  return {'kind': 'heading', 'text': text, 'id': anchor}


def _cell(text, cls: str = '', title: str = '') -> dict:
  return {'text': text, 'cls': cls, 'title': title}


def _table(header: Sequence[str], rows: Sequence[Sequence], caption: str = '',
           groups: Sequence[tuple[str, int]] = ()) -> dict:
  """A table; cells are :func:`_cell` dicts or values (text left-aligned in the first column)."""
  def as_cell(value, first):
    if isinstance(value, dict):
      return value
    return _cell(_format(value), 'text' if first or isinstance(value, str) else '')
  return {'kind': 'table', 'header': list(header), 'caption': caption, 'groups': list(groups),
          'rows': [[as_cell(v, i == 0) for i, v in enumerate(row)] for row in rows]}


def _details(summary: str, blocks: list[dict]) -> dict:
  return {'kind': 'details', 'summary': summary, 'blocks': blocks}


def _figure(fig, anchor: str, caption: str) -> dict:
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=FIGURE_DPI)
  return {'kind': 'figure', 'id': anchor, 'caption': caption,
          'png': base64.b64encode(buffer.getvalue()).decode('ascii')}


def _mean_std(mean: float, std: float) -> str:
  """'0.512 ± 0.031'; the mean alone where one fold gives no standard deviation."""
  return f'{mean:.3f}' if np.isnan(std) else f'{mean:.3f} ± {std:.3f}'


def _format(value) -> str:
  """Numbers for tables: 4 significant digits, p values in scientific notation when small."""
  if isinstance(value, (bool, np.bool_)):
    return 'yes' if value else 'no'
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    if not np.isfinite(value):
      return '–'
    return f'{value:.3e}' if value != 0 and abs(value) < 1e-3 else f'{value:.4g}'
  return str(value)


def _slug(text: str) -> str:
  return ''.join(c if c.isalnum() else '-' for c in text.lower()).strip('-')


@dataclasses.dataclass
class _Section:
  id: str
  title: str
  blocks: list = dataclasses.field(default_factory=list)


def _chunks(items: Sequence, size: int) -> list[list]:
  return [list(items[i:i + size]) for i in range(0, len(items), size)] or [[]]


# Sections.


def _data_section(table: CoefficientTable, data_dir, warnings) -> _Section:
  section = _Section('data', 'Data')
  names, labels = table['image_name'], table['label']
  folds = table['fold'] if 'fold' in table else np.zeros(len(table))
  first = {}
  for i, name in enumerate(names.tolist()):
    first.setdefault(name, i)
  unique = np.array(sorted(first.values()), np.int64)
  not_ok = ~table.ok
  cards = [(len(unique), 'images'), (len(table.methods), 'methods'),
           (len(set(labels.tolist())), 'classes'), (int(not_ok.sum()), 'rows without coefficients')]
  if 'predicted' in table:
    correct = labels[unique] == table['predicted'][unique]
    cards.append((f'{correct.mean():.3f}', 'accuracy of the explained predictions'))
  section.blocks.append({'kind': 'cards', 'entries': cards})
  section.blocks.append(_text(f'Table {table.path}: {len(table)} rows. Methods: '
                              f'{", ".join(table.methods)}.'))
  fold_values = sorted({int(f) for f in folds[unique] if np.isfinite(f)})
  rows = []
  for name in table.classes:
    in_class = unique[labels[unique] == name]
    rows.append([name, *(int((folds[in_class] == f).sum()) for f in fold_values), len(in_class)])
  rows.append(['all', *(int((folds[unique] == f).sum()) for f in fold_values), len(unique)])
  section.blocks.append(_table(['class', *(f'fold {f}' for f in fold_values), 'total'], rows,
                               'Test images per class and fold'))
  if not_ok.any():
    reasons = collections.Counter(table['status'][not_ok].tolist())
    section.blocks.append(_table(['status', 'rows'], reasons.most_common(),
                                 'Rows without coefficients, by reason'))
  if data_dir is not None:
    section.blocks += _dataset_blocks(data_dir, warnings)
  return section


def _dataset_blocks(data_dir, warnings) -> list[dict]:
  try:
    from gestaltxai.data.pipeline import FaceDataset  # pylint: disable=import-outside-toplevel
    from gestaltxai.data.schema import MetadataKey  # pylint: disable=import-outside-toplevel
    dataset = FaceDataset.open(data_dir)
    metadata = dataset.metadata
    counts = np.bincount(dataset.labels, minlength=len(dataset.classes))
  except (FileNotFoundError, ValueError, KeyError, OSError) as err:
    warnings.append(f'--data-dir {data_dir}: {err}')
    return [_note(f'The dataset at {data_dir} could not be read: {err}')]
  blocks = [_heading('Dataset', 'dataset'),
            _text(f'{dataset.directory}: {len(dataset)} aligned faces in {len(dataset.classes)} '
                  f'classes, {metadata.get(MetadataKey.NUM_FOLDS, "?")} folds.'),
            _table(['class', 'images'], zip(dataset.classes, counts.tolist()),
                   'Images per class (all splits)')]
  means = metadata.get(MetadataKey.FOLD_MEAN_BGR) or {}
  if means:
    blocks.append(_table(['fold', 'B', 'G', 'R'], [[k, *v] for k, v in means.items()],
                         'Per-fold BGR channel mean over the training images'))
  skipped = metadata.get(MetadataKey.SKIPPED) or []
  if skipped:
    blocks.append(_details(f'{len(skipped)} photos could not be used',
                           [_table(list(skipped[0]), [list(s.values()) for s in skipped])]))
  return blocks


def _training_section(runs_dir, classes, warnings) -> _Section:
  section = _Section('training', 'Training')
  if runs_dir is None:
    section.blocks.append(_note('No training runs given (--runs RUNS).'))
    return section
  try:
    runs, summary = inputs.read_runs(runs_dir)
  except (FileNotFoundError, ValueError) as err:
    warnings.append(f'--runs: {err}')
    section.blocks.append(_note(f'Training runs could not be read: {err}'))
    return section
  keys = ('accuracy', 'macro_f1', 'weighted_f1')
  rows = [[f'fold {run.fold}', len(run.epochs), run.best_epoch,
           *(run.test.get(k, np.nan) for k in keys)] for run in runs]
  values = np.array([[run.test.get(k, np.nan) for k in keys] for run in runs], np.float64)
  if len(runs) > 1:
    mean, std = np.nanmean(values, 0), np.nanstd(values, 0, ddof=1)
    rows.append(['mean ± std', '', '', *(_format(m) + ' ± ' + _format(s)
                                        for m, s in zip(mean, std))])
  # The held-out split is the dataset's (val on NIH-Faces, as the reference; test on ours).
  splits = '/'.join(sorted({str(run.test['split']) for run in runs if 'split' in run.test}))
  held_out = f'held-out ({splits}) accuracy' if splits else 'held-out accuracy'
  section.blocks.append(_table(['fold', 'epochs', 'chosen epoch', held_out, 'macro F1',
                                'weighted F1'], rows, f'Runs in {runs_dir}'))
  curves = {f'fold {run.fold}': run.epochs for run in runs if run.epochs}
  if curves:
    best = {f'fold {run.fold}': run.best_epoch for run in runs if run.best_epoch is not None}
    section.blocks.append(_figure(plots.training_curves(curves, best_epochs=best),
                                  'fig-training-curves',
                                  'Training curves: loss and accuracy per epoch for each fold, '
                                  'training solid and the epoch-selection split dashed; dots '
                                  'mark the chosen epoch (the checkpoint that was scored).'))
  confusions = [np.asarray(run.test['confusion']) for run in runs if run.test.get('confusion')]
  if confusions and len({c.shape for c in confusions}) == 1:
    names = inputs.run_classes(runs, summary, classes)
    section.blocks.append(_figure(
        plots.confusion_matrix(sum(confusions), names), 'fig-confusion',
        f'Test confusion matrix summed over {len(confusions)} fold(s); colour is the share of '
        'each true class, numbers are images.'))
  if summary is not None:
    section.blocks.append(_details('summary.json', [{'kind': 'pre',
                                                     'text': json.dumps(summary, indent=2)}]))
  return section


def _significance_label(config: Rq1Config) -> str:
  return f'Bonferroni-corrected p < {config.alpha:g}'


def _rq1_section(table: CoefficientTable, results, config: Rq1Config) -> _Section:
  section = _Section('rq1', 'RQ1: syndrome vs control')
  section.blocks.append(_text(
      f'For each method, syndrome and region, the coefficients of the syndrome\'s images are '
      f'compared with those of the control class ({config.control}): Levene (median centre) '
      f'and Shapiro-Wilk at {config.alpha_assumptions:g} choose a two-sided t-test (Welch\'s '
      'when the group sizes differ) for normal groups of equal variance, else a two-sided '
      'Mann-Whitney U; Bonferroni over each method\'s tests, significant when the corrected p '
      f'< {config.alpha:g}. Cohen\'s d is control minus syndrome over the pooled standard '
      'deviation.'))
  tests = results.rq1
  rq1_skipped = [s for s in results.skipped if s.analysis == 'rq1']
  section.blocks.append({'kind': 'cards', 'entries': [
      (len(tests), 'tests'), (sum(t.significant for t in tests), 'significant'),
      (len(rq1_skipped), 'skipped')]})
  if not tests:
    section.blocks.append(_note('No RQ1 test could be computed; the reasons are listed below.'))
  else:
    summary = results.rq1_summary
    lookup = {(t.method, t.syndrome, t.region): t for t in tests}
    d = np.array([[getattr(lookup.get((m, s, r)), 'cohen_d', np.nan) for s, r in summary.cells]
                  for m in summary.methods])
    label = _significance_label(config)
    section.blocks.append(_figure(
        plots.effect_sizes(d, summary.counts > 0, methods=summary.methods, cells=summary.cells,
                           mark_label=label), 'fig-rq1-effects',
        f"Cohen's d of every test, drawn as syndrome minus control (red: the syndrome's "
        f"coefficients are higher than the control's, blue: lower; rq1.csv keeps the "
        f"reference's control minus syndrome); * marks a significant test ({label})."))
    section.blocks.append(_rq1_summary_table(summary))
    regions, syndromes, grid = summary.by_region()
    section.blocks.append(_table(['region', *syndromes],
                                 [[r, *row] for r, row in zip(regions, grid.tolist())],
                                 'Significant tests over all methods (the paper\'s layout). The '
                                 'reference notebook added Angelman\'s count into the KS column; '
                                 'KS here is KS\'s own.'))
    section.blocks += _region_face_blocks(table, summary.methods, config)
    section.blocks.append(_details(f'All {len(tests)} tests', [_rows_table(tests, Rq1Test)]))
  if rq1_skipped:
    section.blocks.append(_details(f'{len(rq1_skipped)} tests skipped',
                                   [_rows_table(rq1_skipped, Skipped)]))
  return section


def _rq1_summary_table(summary) -> dict:
  syndromes = list(dict.fromkeys(s for s, _ in summary.cells))
  groups = [('', 1)] + [(s, sum(1 for c in summary.cells if c[0] == s)) for s in syndromes] + [
      ('', 2)]
  rows = []
  for method, counts in zip(summary.methods, summary.counts.tolist()):
    cells = [_cell('✓', 'yes') if c > 0 else _cell('·', 'no') if c == 0 else _cell('–', 'na')
             for c in counts]
    rows.append([method, *cells, sum(c > 0 for c in counts), sum(c >= 0 for c in counts)])
  return _table(['method', *(r for _, r in summary.cells), 'significant', 'tests'], rows,
                'Significant tests per method (✓ significant, · not, – not computed)', groups)


def _region_face_blocks(table: CoefficientTable, methods, config: Rq1Config) -> list[dict]:
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
  blocks = []
  for n, chunk in enumerate(_chunks(range(len(methods)), METHODS_PER_FIGURE), 1):
    names = [methods[i] for i in chunk]
    blocks.append(_figure(
        maps.region_faces(values[chunk], methods=names, classes=classes, regions=regions),
        f'fig-region-faces-{n}',
        f'Mean region coefficient ({", ".join(regions)}) of each class painted on a template '
        'face; one colour scale per method (row).'))
  return blocks


def _rows_table(rows, row_type) -> dict:
  names = [f.name for f in dataclasses.fields(row_type)]
  return _table(names, [[getattr(row, n) for n in names] for row in rows])


def _rq2_section(results) -> _Section:
  section = _Section('rq2', 'RQ2: agreement with clinicians')
  if results.rq2 is None:
    section.blocks.append(_note('No HPO annotations given (--hpo DIR), or the stats folder has '
                                'no rq2.csv.'))
    return section
  section.blocks.append(_text(
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
    rows = [[m, *(_cell(_mean_std(by_key[m, r].r_mean, by_key[m, r].r_std))
                  if (m, r) in by_key else _cell('–', 'na') for r in regions)] for m in methods]
    section.blocks.append(_table(['method', *regions], rows, 'Spearman r over folds'))
    section.blocks.append(_figure(
        plots.correlations(correlations, regions=regions, methods=methods), 'fig-rq2',
        'Spearman r per fold (dots, with 95% intervals) and its mean over folds (grey bars).'))
    section.blocks.append(_details(f'All {len(correlations)} correlations',
                                   [_rows_table(correlations, Rq2Correlation)]))
  else:
    section.blocks.append(_note('No RQ2 correlation could be computed; the reasons are listed '
                                'below.'))
  if skipped:
    section.blocks.append(_details(f'{len(skipped)} skipped', [_rows_table(skipped, Skipped)]))
  return section


def _method_section(table: CoefficientTable, results, config: Rq1Config,
                    map_set: Optional[inputs.Maps]) -> _Section:
  section = _Section('methods', 'Per-method figures')
  if map_set is None:
    section.blocks.append(_note('No TABLE.maps.npz beside the table: class-mean maps need the '
                                'maps file that gestaltxai extract writes.'))
  significant = {(t.method, t.syndrome, t.region): t.significant for t in results.rq1}
  regions = table.regions(config.suffix)
  classes = [c for c in table.classes if c != config.control]
  for method in table.methods:
    anchor = f'method-{_slug(method)}'
    section.blocks.append(_heading(method, anchor))
    if map_set is not None and method in map_set.class_mean and map_set.mean_image is not None:
      section.blocks.append(_figure(
          maps.class_mean_maps(map_set.mean_image, {method: map_set.class_mean[method]},
                               map_set.classes), f'fig-{anchor}-class-mean',
          f'{method}: mean relevance over each class\'s test images, over the class\'s mean '
          'aligned face (one colour scale for the row).'))
    if regions:
      coefficients = {
          region: {name: table[f'{region}{config.suffix}'][table.select(method=method,
                                                                        label=name)]
                   for name in table.classes} for region in regions}
      marks = {(s, r): significant.get((method, s, r), False) for s in classes for r in regions}
      section.blocks.append(_figure(
          plots.region_distributions(coefficients, control=config.control, classes=classes,
                                     significant=marks,
                                     mark_label=_significance_label(config)),
          f'fig-{anchor}-distributions',
          f'{method}: region coefficients per class, {config.control} first (grey); red boxes '
          'and * mark the classes that differ from the control in RQ1.'))
  return section


def _examples_section(map_set: Optional[inputs.Maps]) -> _Section:
  section = _Section('examples', 'Examples')
  if map_set is None or map_set.example_images is None or not map_set.examples:
    section.blocks.append(_note('No example maps (examples/... in TABLE.maps.npz).'))
    return section
  methods = list(map_set.examples)
  for n, chunk in enumerate(_chunks(methods, METHODS_PER_FIGURE), 1):
    section.blocks.append(_figure(
        maps.overlay_grid(map_set.example_images, {m: map_set.examples[m] for m in chunk},
                          names=map_set.example_names, scale='method'),
        f'fig-examples-{n}',
        'Relevance of the predicted class over each example face; one colour range per '
        'method across the examples, so maps of one method compare across images.'))
  return section


_COST_COLUMNS = ('benchmark', 'name', 'device', 'dtype', 'batch_size', 'images_per_s',
                 'ms_per_image', 'passes', 'ratio', 'date')


def _cost_section(bench, warnings) -> _Section:
  section = _Section('cost', 'Method cost')
  if bench is None:
    section.blocks.append(_note('No benchmark records given (--bench FILE, JSON lines from '
                                'benchmarks/).'))
    return section
  try:
    records = inputs.read_records(bench)
  except (OSError, ValueError) as err:
    warnings.append(f'--bench: {err}')
    section.blocks.append(_note(f'Benchmark records could not be read: {err}'))
    return section
  rows = [[str(r.get(c, '')) if isinstance(r.get(c), (dict, list)) else r.get(c, '')
           for c in _COST_COLUMNS] for r in records]
  section.blocks.append(_table(_COST_COLUMNS, rows, f'{len(records)} records from {bench}'))
  try:
    section.blocks.append(_figure(plots.method_cost(records), 'fig-method-cost',
                                  'Images per second of each method (latest record per method, '
                                  'device, dtype and batch size).'))
  except ValueError as err:
    section.blocks.append(_note(str(err)))
  return section


_GROUND_TRUTH_COLUMNS = (
    ('recovery_classes', 'recovery: classes'), ('recovery_images', 'recovery: images'),
    ('deletion_auc', 'deletion'), ('insertion_auc', 'insertion'),
    ('randomisation_similarity', 'randomisation r'), ('images_per_s', 'images/s'))


def _planted_strip_blocks(data_dir, warnings) -> list[dict]:
  """The planted strip of a dataset of traits planted on photos (none for other datasets)."""
  from gestaltxai.data.pipeline import FaceDataset  # pylint: disable=import-outside-toplevel
  from gestaltxai.data.schema import MetadataKey  # pylint: disable=import-outside-toplevel
  from gestaltxai.viz.planted import identity_records, planted_strip  # pylint: disable=import-outside-toplevel
  try:
    dataset = FaceDataset.open(data_dir)
    if MetadataKey.PLANTED_CHECKS not in dataset.metadata:
      return []
    figure = planted_strip(identity_records(dataset))
  except (OSError, ValueError, KeyError) as err:
    warnings.append(f'planted strip from {data_dir}: {err}')
    return []
  return [_figure(figure, 'fig-planted-strip',
                  'What was planted: one person unaffected and with each trait; arrows show '
                  'how the warp moved the landmarks (drawn 3x), with the strength and the '
                  'change dlib measured on the warped face (over the face width).')]


def _ground_truth_section(path, warnings, data_dir=None) -> _Section:
  """The demo's verdicts: which methods find the planted regions and pass the sanity check."""
  section = _Section('ground-truth', 'Ground truth: the planted regions')
  try:
    summary = json.loads(pathlib.Path(path).read_text(encoding='utf-8'))
    scores = summary['methods']
    limit = summary['randomisation_limit']
  except (OSError, ValueError, KeyError) as err:
    warnings.append(f'ground truth {path}: {err}')
    section.blocks.append(_note(f'{path} could not be read: {err}'))
    return section
  first = next(iter(scores.values()))
  planted = ', '.join(f'{c}: {r}' for c, r in summary['planted_regions'].items() if r)
  faces = ('Real photos (FairFace) with a trait planted per class by a landmark warp'
           if summary.get('faces') == 'real' else 'Synthetic faces plant one trait per class')
  section.blocks.append(_text(
      f'{faces} in a known region ({planted}); the '
      f'{summary.get("size", "")} model reached {summary["test_accuracy"]:.2f} test '
      f'accuracy. Recovery: the share of trait classes whose largest RQ1 effect (|Cohen\'s d| '
      f'against {summary["control"]}) lies in the planted region, and of correctly classified '
      f'trait-class images whose planted region has the highest coefficient z-scored against '
      f'{summary["control"]} (chance {first["chance_classes"]:.2f} and '
      f'{first["chance_images"]:.2f}). Deletion and insertion: areas under the target '
      f'probability as the most relevant pixels are removed (lower is better) or restored '
      f'(higher is better). A method fails the model-randomisation check when its maps keep a '
      f'Spearman correlation r of {limit} or more with every layer re-initialised.'))
  rows = [[name, *(m.get(key) for key, _ in _GROUND_TRUTH_COLUMNS)] for name, m in scores.items()]
  section.blocks.append(_table(['method', *(label for _, label in _GROUND_TRUTH_COLUMNS)], rows,
                               f'from {path}'))
  section.blocks.append(_figure(plots.ground_truth(summary), 'fig-ground-truth',
                                'Recovery of the planted regions beside chance, and the '
                                'model-randomisation check.'))
  if data_dir is not None:
    section.blocks += _planted_strip_blocks(data_dir, warnings)
  return section


def _provenance_section(path, chain: Sequence[str] = ()) -> _Section:
  section = _Section('provenance', 'Provenance')
  if chain:
    section.blocks += [_text('Made from (content fingerprints, checked when the report was '
                             'written):'), {'kind': 'pre', 'text': '\n'.join(chain)}]
  if path is None:
    section.blocks.append(_note('No TABLE.json beside the table.'))
    return section
  try:
    text = json.dumps(inputs.read_provenance(path), indent=2, sort_keys=False)
  except (OSError, ValueError) as err:
    section.blocks.append(_note(f'{path} could not be read: {err}'))
    return section
  section.blocks += [_text(f'{path}, as written by extraction:'), {'kind': 'pre', 'text': text}]
  return section


def _stats_results(inputs_: ReportInputs, table: CoefficientTable):
  if inputs_.stats is not None:
    return results_lib.read_results(inputs_.stats)
  hpo = hpo_lib.read_hpo(inputs_.hpo) if inputs_.hpo is not None else None
  return results_lib.compute(table, hpo, inputs_.rq1)


def build_report(report_inputs: ReportInputs) -> tuple[str, list[str]]:
  """(the HTML page, warnings about optional inputs that could not be used).

  Raises:
    FileNotFoundError, ValueError: the table (or the stats folder or HPO
      files) cannot be read.
  """
  table = read_table(report_inputs.table)
  results = _stats_results(report_inputs, table)
  config = results.rq1_config  # the stats folder's, or report_inputs.rq1 when computed here
  warnings = []
  if report_inputs.stats is not None and report_inputs.hpo is not None:
    warnings.append(f'--hpo {report_inputs.hpo} is not used: RQ2 comes from --stats '
                    f'{report_inputs.stats}')
  maps_path = report_inputs.maps or inputs.sidecar(report_inputs.table, _MAPS_SUFFIX)
  map_set = None
  if maps_path is not None:
    try:
      map_set = inputs.read_maps(maps_path)
    except (OSError, ValueError) as err:
      warnings.append(f'maps {maps_path}: {err}')
  provenance = report_inputs.provenance or inputs.sidecar(report_inputs.table,
                                                         _PROVENANCE_SUFFIX)
  builders: list[Callable[[], _Section]] = [
      lambda: _data_section(table, report_inputs.data_dir, warnings),
      lambda: _training_section(report_inputs.runs, table.classes, warnings),
      lambda: _rq1_section(table, results, config),
      lambda: _rq2_section(results),
      lambda: _method_section(table, results, config, map_set),
      lambda: _examples_section(map_set),
      lambda: _cost_section(report_inputs.bench, warnings),
      lambda: _provenance_section(provenance, report_inputs.chain),
  ]
  if report_inputs.ground_truth is not None:
    builders.insert(1, lambda: _ground_truth_section(report_inputs.ground_truth, warnings,
                                                     report_inputs.data_dir))
  if report_inputs.evaluation is not None:
    from gestaltxai.viz.trust import trust_section  # pylint: disable=import-outside-toplevel
    builders.insert(-2, lambda: trust_section(report_inputs.evaluation, warnings))
  sections = [build() for build in builders]
  if map_set is None and maps_path is not None:
    method_section = next(s for s in sections if s.id == 'methods')
    method_section.blocks.insert(0, _note(f'{maps_path} could not be read; see the warnings.'))
  environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
  template = environment.from_string(_TEMPLATE.read_text(encoding='utf-8'))
  now = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
  html = template.render(
      title='gestaltxai report', version=__version__, generated=now, sections=sections,
      subtitle=f'{pathlib.Path(report_inputs.table).name}: {len(table.methods)} methods, '
               f'{len(table.classes)} classes · control {config.control}')
  return html, warnings


def write_report(report_inputs: ReportInputs, out: str | pathlib.Path) -> tuple[pathlib.Path,
                                                                             list[str]]:
  """Builds the report and writes it to ``out``; returns (path, warnings)."""
  html, warnings = build_report(report_inputs)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  from gestaltxai.files import atomic_write  # pylint: disable=import-outside-toplevel
  atomic_write(out, lambda path: path.write_text(html, encoding='utf-8'))  # whole or absent
  return out, warnings
