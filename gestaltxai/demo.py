"""The study end to end on faces where the right answer is known.

Synthetic faces (:mod:`gestaltxai.data.synthetic`) or real photos with a
trait warped in (:mod:`gestaltxai.data.planted`, ``faces='real'``) plant
one trait per class in a known region, so an explanation can be checked
against the truth rather than against another explanation. :func:`run_demo`:

1. builds the faces with their HPO-style annotations (``DIR/data``);
2. trains on fold 1 (``DIR/runs``): the ``tiny`` configuration from scratch
   on synthetic faces, dlib's pretrained face ResNet (``dlib``) on photos;
3. extracts region coefficients of fold 1's test images for
   :data:`DEMO_METHODS` (``DIR/coefficients.parquet``, its maps and
   provenance);
4. runs RQ1 against the unaffected faces and RQ2 against the annotations
   (``DIR/stats``);
5. scores each method: recovery of the planted regions, and through
   ``gestaltxai evaluate-methods``' path localisation against the planted
   regions, deletion, insertion and model randomisation
   (``DIR/evaluation.parquet`` and its summary);
6. writes ``DIR/summary.json`` and ``DIR/report.html``.

Every stage reuses what an earlier run left in ``DIR`` when it was made from
the same inputs (the dataset, a finished training run, finished extraction
shards, finished evaluation shards).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable

from gestaltxai import extract as extraction
from gestaltxai import metrics
from gestaltxai import provenance as chain_of
from gestaltxai.data.build import build
from gestaltxai.data.folds import DEFAULT_SEED
from gestaltxai.data.schema import MetadataKey, hpo_dir
from gestaltxai.data.sources import SyntheticFaces
from gestaltxai.data.pipeline import FaceDataset
from gestaltxai.files import write_json
from gestaltxai.metrics import evaluation
from gestaltxai.metrics import summary as summary_lib
from gestaltxai.stats import Rq1Config, compute, read_hpo, read_table, write_results
from gestaltxai.train import train_fold
from gestaltxai.viz.report import ReportInputs, write_report

#: The metrics the demo scores each method with (``gestaltxai metrics`` lists them all;
#: ROAD and the random-logit test are left to ``evaluate-methods``: on 2 CPU cores they
#: would double the demo's compile time).
DEMO_METRICS = ('relevance_mass_accuracy', 'relevance_rank_accuracy', 'pointing_game',
                'region_pointing_game', 'deletion', 'insertion', 'model_randomization')
#: Sanity checks, costly (a re-explanation per model stage): on the first sanity_images.
SANITY_METRICS = ('model_randomization',)
#: summary.json's keys of the metrics it keeps (its layout is the contract's).
SUMMARY_KEYS = {'deletion': 'deletion_auc', 'insertion': 'insertion_auc',
                'model_randomization': 'randomisation_similarity'}
#: A representative method of each family (LRP by one composite), and of the path methods
#: and CAMs those that fit the demo's time (``gestaltxai methods`` counts passes per image):
#: expected gradients at 5 passes and LayerCAM at 1. Guided and Blur IG (200 and 100),
#: XRAI (200), Score- and Ablation-CAM (a forward per channel) and LIME (1,001) would each
#: take longer than the other methods together.
DEMO_METHODS = ('gradient', 'integrated_gradients', 'expected_gradients', 'smoothgrad',
                'grad_cam', 'layer_cam', 'lrp_epsilon_plus_flat', 'occlusion', 'region_shapley')
#: Method options by ``faces=``. On photos, occlusion hides 30 px windows every 15 px (81
#: windows of dlib's 150 px chip): the default 15 px every 8 px makes 324 forwards an image
#: and took 350 s of the 470 s all nine methods took on 84 test images (2 CPU cores), and
#: as long again in the randomisation checks.
METHOD_OPTIONS = {'synthetic': {}, 'real': {'occlusion': {'window': 30, 'stride': 15}}}
CONTROL = 'unaffected'
FOLD = 1
#: What ``faces=`` picks: synthetic cartoons, or traits planted on the shipped photos.
FACES = ('synthetic', 'real')


@dataclasses.dataclass(frozen=True)
class DemoPaths:
  """Where each stage writes, under one folder."""

  root: pathlib.Path

  @property
  def data(self) -> pathlib.Path:
    return self.root / 'data'

  @property
  def runs(self) -> pathlib.Path:
    return self.root / 'runs'

  @property
  def table(self) -> pathlib.Path:
    return self.root / 'coefficients.parquet'

  @property
  def stats(self) -> pathlib.Path:
    return self.root / 'stats'

  @property
  def evaluation(self) -> pathlib.Path:
    return self.root / 'evaluation.parquet'

  @property
  def summary(self) -> pathlib.Path:
    return self.root / 'summary.json'

  @property
  def report(self) -> pathlib.Path:
    return self.root / 'report.html'


def explanation_metrics(paths: DemoPaths, directory, plan, seed: int = 0, method_options=None,
                        log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
  """Every method scored by :data:`DEMO_METRICS` through ``evaluate-methods``' path.

  Fold :data:`FOLD`'s first ``plan.metric_images`` test images are scored
  (the randomisation checks: the first ``plan.sanity_images``), resumable in
  ``DIR/evaluation.parquet``; its summary feeds ``summary.json`` and the
  report's "Which method to trust".

  Returns:
    {method: {'deletion_auc', 'insertion_auc', 'randomisation_similarity'}}:
    mean target-probability areas (lower deletion, higher insertion is
    better) and the mean Spearman correlation of the maps with every stage
    re-initialised (a method that passes the check has it low).
  """
  job = evaluation.evaluation(
      directory, paths.evaluation, runs=paths.runs, methods=DEMO_METHODS,
      method_options=method_options, metrics=DEMO_METRICS, folds=[FOLD],
      images_per_fold=plan.metric_images, batch_size=plan.metric_images,
      shard_size=plan.metric_images, seed=seed,
      metric_images={name: plan.sanity_images for name in SANITY_METRICS},
      log=log)
  job.run()
  job.assemble()
  means = {(row['method'], row['metric']): row['mean']
           for row in summary_lib.read_summary(evaluation.summary_path(paths.evaluation))}
  scores = {name: {key: float(means[name, metric]) for metric, key in SUMMARY_KEYS.items()}
            for name in DEMO_METHODS}
  for name, score in scores.items():
    log(f'  {name}: deletion {score["deletion_auc"]:.3f}, insertion '
        f'{score["insertion_auc"]:.3f}, randomisation {score["randomisation_similarity"]:.2f}')
  return scores


class _Stages:
  """Prints each stage's line and, when the next begins, how long the last one took."""

  def __init__(self, log: Callable[[str], None], total: int):
    self.log, self.total, self.number, self.started = log, total, 0, None

  def __call__(self, line: str) -> None:
    self.finish()
    self.number += 1
    self.started = time.perf_counter()
    self.log(f'{self.number}/{self.total} {line}')

  def finish(self) -> None:
    if self.started is not None:
      self.log(f'  ({time.perf_counter() - self.started:.0f} s)')
      self.started = None


def _faces_and_config(faces: str, size: str, seed: int, paths: 'DemoPaths', photos):
  """(the dataset builder, the training configuration, the size's plan, a line saying what)."""
  # pylint: disable=import-outside-toplevel
  from gestaltxai.train.configs import DEMO_SIZES, DLIB, PLANTED_DEMO_SIZES, TINY
  if faces not in FACES:
    raise ValueError(f'faces must be one of {FACES}, got {faces!r}')
  sizes = PLANTED_DEMO_SIZES if faces == 'real' else DEMO_SIZES
  if size not in sizes:
    raise ValueError(f'size must be one of {sorted(sizes)}, got {size!r}')
  plan = sizes[size]
  if faces == 'synthetic':
    return (SyntheticFaces(per_class=plan.per_class, seed=seed,
                                    data_dir=str(paths.data), progress=False),
            TINY.replace(epochs=plan.epochs, seed=seed), plan,
            f'synthetic faces: {plan.per_class} per class with planted traits')
  from gestaltxai.data.planted_faces import PlantedFaces
  # The photos and strengths stay those of seed 0: seeds vary the training, on the same faces.
  builder = PlantedFaces(photos=photos, limit=plan.per_class, seed=DEFAULT_SEED,
                         alignment='dlib', data_dir=str(paths.data), progress=False)
  return (builder, DLIB.replace(epochs=plan.epochs, seed=seed), plan,
          f'real photos: {plan.per_class} with each trait planted and checked by dlib')


def run_demo(out: str | pathlib.Path = 'gestaltxai-demo', size: str = 'tiny', *, seed: int = 0,
             overwrite: bool = False, batch_size: int = 32, faces: str = 'synthetic',
             photos=None, log: Callable[[str], None] = print) -> dict:
  """Runs the whole study on faces with planted traits; returns what ``summary.json`` holds.

  Args:
    out: the folder every stage writes to (and reads back on a second run).
    size: 'tiny' or 'default' (``gestaltxai.train.configs``' DEMO_SIZES for
      synthetic faces, PLANTED_DEMO_SIZES for real ones).
    seed: of the training and the noise methods, and of the synthetic faces
      (the planted photos are always those of seed 0).
    overwrite: replace a dataset in ``out`` made with other arguments.
    batch_size: images per extraction step.
    faces: 'synthetic' (cartoons, the tiny network from scratch) or 'real'
      (traits planted on photos, dlib's pretrained face ResNet fine-tuned).
    photos: with ``faces='real'``, a folder of face photos; None: the shipped
      FairFace sample.
  """
  paths = DemoPaths(pathlib.Path(out))
  builder, config, plan, what = _faces_and_config(faces, size, seed, paths, photos)
  paths.root.mkdir(parents=True, exist_ok=True)
  stage = _Stages(log, total=6)

  stage(f'{what} -> {paths.data}')
  directory = build(builder, overwrite=overwrite, log=lambda line: log(f'  {line}'))
  dataset = FaceDataset.open(directory)
  planted = dataset.metadata[MetadataKey.TRAIT_REGIONS]

  stage(f'training {config.name} on fold {FOLD}: {plan.epochs} epochs at '
      f'{config.image_size} px -> {paths.runs}')
  trained = train_fold(dataset, FOLD, config, paths.runs, log=lambda line: log(f'  {line}'))

  stage(f'extraction: {len(DEMO_METHODS)} methods x fold {FOLD}\'s test images -> '
      f'{paths.table}')
  job = extraction.extraction(directory, paths.table, runs=paths.runs, methods=DEMO_METHODS,
                              method_options=METHOD_OPTIONS[faces], folds=[FOLD],
                              batch_size=batch_size, seed=seed, progress=False,
                              log=lambda line: log(f'  {line}'))
  provenance = job.assemble(job.run())

  stage(f'statistics: RQ1 against {CONTROL}, RQ2 against the annotations -> {paths.stats}')
  table = read_table(paths.table)
  hpo = hpo_dir(directory)
  results = compute(table, read_hpo(hpo), Rq1Config(control=CONTROL))
  write_results(results, paths.stats)
  chain_of.write_stats_provenance(paths.stats, paths.table, hpo)

  stage(f'recovery of the planted regions; localisation, faithfulness and sanity -> '
        f'{paths.evaluation}')
  recovered = metrics.recovery(table, results.rq1, planted, CONTROL)
  scores = explanation_metrics(paths, directory, plan, seed=seed,
                               method_options=METHOD_OPTIONS[faces],
                               log=lambda line: log(f'  {line}'))

  summary = {
      'size': size, 'faces': faces, 'test_accuracy': trained['test']['accuracy'],
      'control': CONTROL, 'planted_regions': planted,
      'randomisation_limit': metrics.SIMILARITY_LIMIT,
      'methods': {name: {
          'recovery_classes': recovered[name].classes,
          'recovery_images': recovered[name].images,
          'chance_classes': recovered[name].chance_classes,
          'chance_images': recovered[name].chance_images,
          'scored_classes': recovered[name].num_classes,
          'scored_images': recovered[name].num_images,
          'strongest_regions': recovered[name].strongest,
          **scores[name],
          'images_per_s': provenance['method_images_per_s'][name]} for name in DEMO_METHODS}}
  write_json(paths.summary, summary)

  stage(f'report -> {paths.report}')
  chain = chain_of.check_report_inputs(paths.table, table.classes, runs=paths.runs,
                                       stats=paths.stats, data_dir=directory)
  write_report(ReportInputs(table=paths.table, runs=paths.runs, stats=paths.stats,
                            data_dir=directory, ground_truth=paths.summary,
                            evaluation=paths.evaluation, chain=tuple(chain)), paths.report)
  stage.finish()
  log('')
  log(summary_table(summary))
  log(f'\nreport: {paths.report}')
  return summary


def summary_table(summary: dict) -> str:
  """The methods' scores as a text table (what the demo prints at the end)."""
  header = ('method', 'recovery classes', 'recovery images', 'deletion', 'insertion',
            'randomisation', 'images/s')
  first = next(iter(summary['methods'].values()))
  rows = [header, ('(chance)', f'{first["chance_classes"]:.2f}', f'{first["chance_images"]:.2f}',
                   '(lower)', '(higher)', '(lower)', '')]
  for name, m in summary['methods'].items():
    rows.append((name, f'{m["recovery_classes"]:.2f}', f'{m["recovery_images"]:.2f}',
                 f'{m["deletion_auc"]:.3f}', f'{m["insertion_auc"]:.3f}',
                 f'{m["randomisation_similarity"]:.2f}',
                 '' if m['images_per_s'] is None else f'{m["images_per_s"]:.1f}'))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
  return (f'test accuracy of the {summary["size"]} model on {summary.get("faces", "synthetic")} '
          f'faces: {summary["test_accuracy"]:.2f}\n'
          + '\n'.join(lines))
