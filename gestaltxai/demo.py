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
5. scores each method: recovery of the planted regions, deletion and
   insertion areas, and model randomisation (``DIR/metrics.json``);
6. writes ``DIR/summary.json`` and ``DIR/report.html``.

Every stage reuses what an earlier run left in ``DIR`` when it was made from
the same inputs (the dataset, a finished training run, finished extraction
shards, metrics of the same checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Callable

import jax
import numpy as np

from gestaltxai import extract as extraction
from gestaltxai import metrics, saliency
from gestaltxai.data import builders
from gestaltxai.data.pipeline import FaceDataset, batch_dataset, plan_batches
from gestaltxai.files import write_json
from gestaltxai.stats import Rq1Config, compute, read_hpo, read_table, write_results
from gestaltxai.train import load_checkpoint, train_fold
from gestaltxai.viz.report import ReportInputs, write_report

#: A representative method of each family (LRP by one composite).
DEMO_METHODS = ('gradient', 'integrated_gradients', 'smoothgrad', 'grad_cam',
                'lrp_epsilon_plus_flat', 'occlusion', 'region_shapley')
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
  def metrics(self) -> pathlib.Path:
    return self.root / 'metrics.json'

  @property
  def summary(self) -> pathlib.Path:
    return self.root / 'summary.json'

  @property
  def report(self) -> pathlib.Path:
    return self.root / 'report.html'


def _images(dataset: FaceDataset, indices, mean_bgr, image_size) -> dict:
  """One batch of the given records, as the model sees them."""
  return batch_dataset(dataset, plan_batches(indices, len(indices)), mean_bgr=mean_bgr,
                       image_size=image_size)[0]


def _metric_options(name: str, batch: dict, num_regions: int) -> dict:
  """Options of a method for the metrics' few images: region maps for region methods, and
  every step or sample in one pass (on a few images, compiling twenty passes costs more
  than the passes)."""
  entry = saliency.get_method(name)
  if entry.space == 'region':
    return {'regions': batch['regions'], 'num_regions': num_regions}
  _, backward = entry.passes(*batch['image'].shape[1:3])
  return {'max_batch': backward * len(batch['image'])} if (
      'max_batch' in entry.options and backward > 1) else {}


def _maps(name: str, model, variables, batch: dict, target, key, num_regions: int):
  """(B, H, W) relevance of a method; a region method's coefficients painted on its regions."""
  options = _metric_options(name, batch, num_regions)
  if saliency.get_method(name).space == 'region':
    coefficients = saliency.attribute(name, model, variables, batch['image'], target, key=key,
                                      **options)
    return metrics.coefficient_map(coefficients, batch['regions'])
  return saliency.relevance(name, model, variables, batch['image'], target, key=key, **options)


def explanation_metrics(fold_dir: pathlib.Path, dataset: FaceDataset, indices: np.ndarray,
                        sanity_images: int, methods=DEMO_METHODS, seed: int = 0,
                        log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
  """Deletion and insertion areas and model-randomisation similarity of each method.

  Args:
    fold_dir: the trained fold whose best checkpoint is explained.
    indices: the records to score (deletion and insertion use them all, the
      randomisation check the first ``sanity_images``).

  Returns:
    {method: {'deletion_auc', 'insertion_auc', 'randomisation_similarity'}}:
    mean target-probability areas (lower deletion, higher insertion is
    better) and the mean Spearman correlation of the maps with every stage
    re-initialised (a method that passes the check has it low).
  """
  model, variables, config, metadata = load_checkpoint(fold_dir)
  # A network without batch statistics (dlib's) comes back with an empty collection that a
  # fresh init lacks; the randomisation check compares the two trees' structures.
  variables = {name: tree for name, tree in variables.items() if jax.tree.leaves(tree)}
  batch = _images(dataset, indices, metadata['mean_bgr'], config.image_size)
  target = saliency.predict(model, variables, batch['image'])
  key = jax.random.PRNGKey(seed)
  num_regions = len(extraction.REGION_SETS['reference'].names)
  scores = {}
  for name in methods:
    relevance = _maps(name, model, variables, batch, target, key, num_regions)
    deleted = metrics.deletion(model, variables, batch['image'], relevance, target)
    inserted = metrics.insertion(model, variables, batch['image'], relevance, target)
    few = {k: v[:sanity_images] for k, v in batch.items() if k in ('image', 'regions')}
    randomised = metrics.model_randomization(
        name, model, variables, few['image'], target[:sanity_images], key=key,
        **_metric_options(name, few, num_regions))
    scores[name] = {'deletion_auc': float(np.mean(deleted.area)),
                    'insertion_auc': float(np.mean(inserted.area)),
                    'randomisation_similarity': float(randomised.similarity)}
    log(f'  {name}: deletion {scores[name]["deletion_auc"]:.3f}, insertion '
        f'{scores[name]["insertion_auc"]:.3f}, randomisation '
        f'{scores[name]["randomisation_similarity"]:.2f}')
  return scores


def _cached_metrics(paths: DemoPaths, arguments: dict, compute_scores) -> dict:
  """The metrics of an earlier run with the same arguments, else newly computed ones."""
  if paths.metrics.exists():
    saved = json.loads(paths.metrics.read_text())
    if saved.get('arguments') == json.loads(json.dumps(arguments)):
      return saved['methods']
  scores = compute_scores()
  write_json(paths.metrics, {'arguments': arguments, 'methods': scores})
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
    return (builders.SyntheticFaces(per_class=plan.per_class, seed=seed,
                                    data_dir=str(paths.data), progress=False),
            TINY.replace(epochs=plan.epochs, seed=seed), plan,
            f'synthetic faces: {plan.per_class} per class with planted traits')
  from gestaltxai.data.planted_faces import PlantedFaces
  # The photos and strengths stay those of seed 0: seeds vary the training, on the same faces.
  builder = PlantedFaces(photos=photos, limit=plan.per_class, seed=builders.DEFAULT_SEED,
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
  directory = builders.build(builder, overwrite=overwrite, log=lambda line: log(f'  {line}'))
  dataset = FaceDataset.open(directory)
  planted = dataset.metadata['trait_regions']

  stage(f'training {config.name} on fold {FOLD}: {plan.epochs} epochs at '
      f'{config.image_size} px -> {paths.runs}')
  trained = train_fold(dataset, FOLD, config, paths.runs, log=lambda line: log(f'  {line}'))

  stage(f'extraction: {len(DEMO_METHODS)} methods x fold {FOLD}\'s test images -> '
      f'{paths.table}')
  job = extraction.extraction(directory, paths.table, runs=paths.runs, methods=DEMO_METHODS,
                              folds=[FOLD], batch_size=batch_size, seed=seed, progress=False,
                              log=lambda line: log(f'  {line}'))
  provenance = job.assemble(job.run())

  stage(f'statistics: RQ1 against {CONTROL}, RQ2 against the annotations -> {paths.stats}')
  table = read_table(paths.table)
  hpo = builders.hpo_dir(directory)
  results = compute(table, read_hpo(hpo), Rq1Config(control=CONTROL))
  write_results(results, paths.stats)

  stage(f'recovery of the planted regions, faithfulness and sanity -> {paths.metrics}')
  recovered = metrics.recovery(table, results.rq1, planted, CONTROL)
  test = dataset.indices(FOLD, 'test')[:plan.metric_images]
  arguments = {'checkpoint': provenance['arguments']['models'], 'methods': list(DEMO_METHODS),
               'images': test.tolist(), 'sanity_images': plan.sanity_images, 'seed': seed}
  scores = _cached_metrics(paths, arguments, lambda: explanation_metrics(
      paths.runs / f'fold-{FOLD}', dataset, test, plan.sanity_images, seed=seed,
      log=lambda line: log(f'  {line}')))

  summary = {
      'size': size, 'faces': faces, 'test_accuracy': trained['test']['accuracy'],
      'control': CONTROL, 'planted_regions': planted,
      'randomisation_limit': metrics.SIMILARITY_LIMIT,
      'methods': {name: {
          'recovery_classes': recovered[name].classes,
          'recovery_images': recovered[name].images,
          'chance_classes': recovered[name].chance_classes,
          'chance_images': recovered[name].chance_images,
          'strongest_regions': recovered[name].strongest,
          **scores[name],
          'images_per_s': provenance['method_images_per_s'][name]} for name in DEMO_METHODS}}
  write_json(paths.summary, summary)

  stage(f'report -> {paths.report}')
  write_report(ReportInputs(table=paths.table, runs=paths.runs, stats=paths.stats,
                            data_dir=directory, ground_truth=paths.summary), paths.report)
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
