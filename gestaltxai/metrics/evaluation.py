"""Judging methods on a study: every method x every metric over each fold's held-out images.

``gestaltxai evaluate-methods`` (and :func:`evaluation`) explains each
held-out image with each method (the fold's best checkpoint, the predicted
class), then scores the explanation with each metric of
:data:`~gestaltxai.metrics.METRICS`. It is a command of its own rather than a
flag of ``extract`` because its work and its table differ: a metric costs up
to hundreds of forwards per image where a coefficient costs none, users run
it on a few hundred images where extraction runs on all, and its rows are
(image, method, metric) where extraction's are (image, method) with one
column per region; a flag would tie both manifests together, so changing a
metric would invalidate a finished extraction.

It shares extraction's seams instead of copying them: the shard plan, the
shard store (manifest, atomic shard files, resumption, splitting over
processes: :mod:`gestaltxai.extract.store`), model loading and
fingerprints, region maps and per-batch keys (:mod:`gestaltxai.extract.run`).

The ground truth of the localisation metrics is the planted region of the
image's class (a dataset whose metadata has ``trait_regions``, as the
synthetic faces and planted real photos do): ``mask`` is the pixels of that
region, ``region_mask`` its column. Images of a class without one (the
control) get NaN with status ``no ground truth``.

The table (``TABLE.parquet`` or ``.csv``): image_name, fold, method, metric,
value, direction, status; :func:`gestaltxai.metrics.summary.summarize`
writes ``TABLE.summary.csv`` beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa

from gestaltxai.artifacts import coefficient_table
from gestaltxai.artifacts.coefficient_table import NO_FOLD, OK
from gestaltxai.data.pipeline import FaceDataset, batch_dataset, iterate, plan_batches
from gestaltxai.data.schema import MetadataKey
from gestaltxai.extract import spec as specs
from gestaltxai.extract.batches import RegionMaps, batch_key, concatenate_plans
from gestaltxai.extract.step import predict_step
from gestaltxai.extract.store import Shard, ShardStore, plan_shards
from gestaltxai.provenance import dataset_fingerprint
from gestaltxai.files import write_json
from gestaltxai.metrics.declared import BoundMethod
from gestaltxai.metrics.faithfulness import coefficient_map
from gestaltxai.models.contract import explainable
from gestaltxai.metrics.registry import METRICS, Metric, get_metric
from gestaltxai.regions.coefficients import coefficients
from gestaltxai.saliency.execution import relevance_of
from gestaltxai.train.fold_models import ModelSource, checked_runs, model_sources

#: Metrics run when none are named: localisation (with a ground truth), faithfulness
#: and sanity at moderate cost.
DEFAULT_METRICS = ('relevance_mass_accuracy', 'relevance_rank_accuracy', 'pointing_game',
                   'region_pointing_game', 'deletion', 'insertion', 'road', 'region_deletion',
                   'random_logit', 'model_randomization')
#: Inputs only a ground truth provides.
GROUND_TRUTH_INPUTS = frozenset({'mask', 'region_mask'})
#: Re-explaining at most this many images (a sanity check on a slice), a method runs all
#: its steps or samples in one pass: compiling a chunked loop of twenty passes costs
#: more than the passes on a few images.
ONE_PASS_IMAGES = 8
COLUMNS = ('image_name', 'fold', 'method', 'metric', 'value', 'direction', 'status')
NO_GROUND_TRUTH = 'no ground truth'


def summary_path(table: pathlib.Path) -> pathlib.Path:
  """``TABLE.summary.csv`` beside the table."""
  return table.with_suffix('.summary.csv')


provenance_path = coefficient_table.provenance_path


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A metric and its options (JSON-able), resolved and checked when made."""

  name: str
  options: tuple[tuple[str, Any], ...] = ()

  @property
  def metric(self) -> Metric:
    return METRICS[self.name]

  def resolved(self) -> dict[str, Any]:
    return self.metric.resolve(dict(self.options))


def metric_specs(names: Sequence[str], options: Optional[Mapping[str, Mapping]] = None,
                 ground_truth: bool = True) -> tuple[MetricSpec, ...]:
  """Canonical specs of ``names`` (['all'] or [] for the defaults), options checked now.

  Without a ground truth, defaults leave out the localisation metrics, and naming
  one is an error that says why.
  """
  if list(names) in ([], ['default']):
    names = [n for n in DEFAULT_METRICS
             if ground_truth or not GROUND_TRUTH_INPUTS & set(METRICS[n].inputs)]
  elif list(names) == ['all']:
    names = [n for n in METRICS
             if ground_truth or not GROUND_TRUTH_INPUTS & set(METRICS[n].inputs)]
  entries = [get_metric(n) for n in names]
  if not ground_truth:
    needing = [m.name for m in entries if GROUND_TRUTH_INPUTS & set(m.inputs)]
    if needing:
      raise ValueError(f'{needing} need a ground truth (planted regions: the dataset '
                       "metadata's trait_regions), which this dataset has not; leave them out")
  for name in options or {}:
    if get_metric(name).name not in [m.name for m in entries]:
      raise ValueError(f'--metric-options names {name}, which is not among the metrics '
                       f'{[m.name for m in entries]}')
  made = tuple(MetricSpec(m.name, tuple(sorted((options or {}).get(m.name, {}).items())))
               for m in entries)
  for spec in made:
    spec.resolved()
  return made


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def explain_step(spec: specs.MethodSpec, model, num_regions: int, variables, images, labels,
                 target, key):
  """(relevance (B, H, W), coefficients (B, R)) of one method; a region method's
  coefficients painted on its regions as its relevance."""
  entry, options = spec.method, dict(spec.options)
  if entry.space == 'region':
    # Label 0 ('none') is held fixed, as extraction holds it (extract.step).
    region_coefficients = entry(model, variables, images, target, key=key, regions=labels,
                                num_regions=num_regions, background=0, **options)
    return coefficient_map(region_coefficients, labels), region_coefficients.astype(jnp.float32)
  relevance = relevance_of(entry(model, variables, images, target, key=key, **options),
                           entry.space).astype(jnp.float32)
  return relevance, coefficients(relevance, labels, num_regions)


@dataclasses.dataclass
class Evaluation:
  """One evaluate-methods run: what to compute (the manifest's arguments) and where."""

  dataset: FaceDataset
  table: pathlib.Path
  sources: dict[int, ModelSource]
  fold_indices: dict[int, np.ndarray]
  methods: tuple[specs.MethodSpec, ...]
  metrics: tuple[MetricSpec, ...]
  planted: Optional[Mapping[str, Optional[str]]] = None
  region_set_name: str = 'reference'
  batch_size: int = 16
  shard_size: int = 64
  out_format: str = 'parquet'
  seed: int = 0
  #: {metric: N}: that metric scores only the first N images of each fold (costly sanity
  #: checks on fewer images); the others score all.
  metric_images: Mapping[str, int] = dataclasses.field(default_factory=dict)
  log: Callable[[str], None] = print

  def __post_init__(self):
    self.region_set = specs.REGION_SETS[self.region_set_name]
    self.classes = tuple(self.dataset.classes)
    self.shards = plan_shards(self.fold_indices, self.shard_size)
    self.store = ShardStore(self.table)
    names = list(self.region_set.names)
    # The planted region's label id per class (0: none, an empty mask).
    unknown = set(self.metric_images) - {m.name for m in self.metrics}
    if unknown:
      raise ValueError(f'metric_images names {sorted(unknown)}, which are not among the metrics '
                       f'{[m.name for m in self.metrics]}')
    self.position = {f: {int(i): p for p, i in enumerate(ix)}
                     for f, ix in self.fold_indices.items()}
    self.planted_ids = np.array([names.index(self.planted[c]) if self.planted and
                                 self.planted.get(c) in names else 0 for c in self.classes],
                                np.int32)

  @functools.cached_property
  def arguments(self) -> dict:
    """What the rows depend on: a later run into the same output must bring the same."""
    return {'kind': 'evaluate-methods', 'dataset': dataset_fingerprint(self.dataset),
            'models': {str(f): s.fingerprint() for f, s in sorted(self.sources.items())},
            'methods': {m.name: m.resolved() for m in self.methods},
            'metrics': {m.name: m.resolved() for m in self.metrics},
            'planted': dict(self.planted or {}), 'regions': self.region_set_name,
            'images': {str(f): [int(i) for i in ix] for f, ix in sorted(self.fold_indices.items())},
            'batch_size': self.batch_size, 'shard_size': self.shard_size, 'seed': self.seed,
            'metric_images': dict(self.metric_images)}

  def run(self, process_index: int = 0, process_count: int = 1,
          stop_after: Optional[int] = None) -> dict:
    """Computes this process's missing shards (at most ``stop_after`` of them)."""
    started = time.time()
    self.store.open(self.arguments, self.shards)
    todo = self.store.missing(self.shards[process_index::process_count])
    if stop_after is not None:
      todo = todo[:stop_after]
    self.log(f'{len(self.shards)} shards, {len(todo)} to compute: {len(self.methods)} methods '
             f'x {len(self.metrics)} metrics')
    for fold in sorted({s.fold for s in todo}):
      self._run_fold(fold, [s for s in todo if s.fold == fold])
    return {'started': started, 'seconds': time.time() - started,
            'missing': [s.id for s in self.store.missing(self.shards)]}

  def _run_fold(self, fold: int, shards: Sequence[Shard]) -> None:
    loaded = self.sources[fold].load(None, self.classes, self.dataset)
    loaded = dataclasses.replace(loaded, model=explainable(loaded.model))
    plans = [plan_batches(s.indices, self.batch_size, remainder='pad') for s in shards]
    batched = batch_dataset(self.dataset, concatenate_plans(plans), mean_bgr=loaded.mean_bgr,
                            image_size=loaded.image_size).map(RegionMaps(self.region_set))
    stream = iterate(batched, workers=0)
    for shard, plan in zip(shards, plans):
      started = time.perf_counter()
      rows = {c: [] for c in COLUMNS}
      for number in range(plan.steps):
        self._score_batch(loaded, next(stream), shard, number, rows)
      self.store.write(shard, pa.table(rows), {},
                       {'images': len(shard.indices),
                        'seconds': time.perf_counter() - started})
      self.log(f'  {shard.id}: {len(shard.indices)} images in '
               f'{time.perf_counter() - started:.1f} s')

  def _score_batch(self, loaded, batch: dict, shard: Shard, number: int, rows: dict) -> None:
    """Every method x metric on one batch; appends its rows."""
    images, labels = jnp.asarray(batch['image']), jnp.asarray(batch['labels'])
    _, target = predict_step(loaded.model, loaded.variables, images)
    planted = self.planted_ids[np.asarray(batch['label'])]
    num_regions = len(self.region_set.names)
    mask = (labels == planted[:, None, None]) & (planted[:, None, None] > 0)
    region_mask = jnp.asarray((np.arange(num_regions) == planted[:, None]) & (planted[:, None] > 0))
    for spec in self.methods:
      key = batch_key(self.seed, spec.name, shard.id, number)
      relevance, region_coefficients = explain_step(spec, loaded.model, num_regions,
                                                    loaded.variables, images, labels, target,
                                                    key)
      bound = dict(spec.options)
      if spec.method.space == 'region':
        bound.update(regions=labels, num_regions=num_regions, background=0)
      inputs = {'method': BoundMethod(spec.method, bound), 'model': loaded.model,
                'variables': loaded.variables, 'x': images, 'target': target,
                'relevance': relevance, 'coefficients': region_coefficients,
                'regions': labels, 'mask': mask, 'region_mask': region_mask}
      for m, metric_spec in enumerate(self.metrics):
        entry = metric_spec.metric
        # Rows are in fold order, padding last: a limited metric scores a leading slice.
        count = self._rows_to_score(entry.name, shard.fold, batch)
        if not count:
          continue
        given = {name: _leading(inputs[name], count) for name in entry.inputs if name != 'key'}
        if 'method' in given and count <= ONE_PASS_IMAGES:
          given['method'] = _one_pass(given['method'], count, images.shape[1:3])
        if 'key' in entry.inputs:
          given['key'] = jax.random.fold_in(key, m)
        values = np.asarray(entry.fn(**given, **metric_spec.resolved()), np.float64)
        # Only metrics against the ground truth are undefined without one.
        has_truth = planted > 0 if GROUND_TRUTH_INPUTS & set(entry.inputs) else np.ones(
            len(planted), bool)
        self._add_rows(rows, shard.fold, spec.name, entry, batch, values, has_truth, count)

  def _rows_to_score(self, metric: str, fold: int, batch: dict) -> int:
    """How many leading rows of the batch ``metric`` scores (all but padding, or fewer)."""
    limit = self.metric_images.get(metric)
    if limit is None:
      return len(batch['valid'])
    positions = [self.position[fold][int(i)] for i, v in zip(batch['index'], batch['valid'])
                 if v]
    return sum(p < limit for p in positions)

  def _add_rows(self, rows, fold, method, entry, batch, values, has_truth, count) -> None:
    for row in np.flatnonzero(batch['valid'][:count]):
      if batch['problem'][row]:
        status = batch['problem'][row]
      elif not has_truth[row]:
        status = NO_GROUND_TRUTH
      elif not np.isfinite(values[row]):
        status = 'undefined (NaN)'
      else:
        status = OK
      rows['image_name'].append(str(batch['name'][row]))
      rows['fold'].append(int(fold))
      rows['method'].append(method)
      rows['metric'].append(entry.name)
      rows['value'].append(float(values[row]) if status == OK else float('nan'))
      rows['direction'].append(entry.direction)
      rows['status'].append(status)

  def assemble(self) -> dict:
    """Writes the table, its summary and provenance; every shard must be present."""
    from gestaltxai.metrics.summary import summarize, write_summary  # pylint: disable=import-outside-toplevel
    missing = self.store.missing(self.shards)
    if missing:
      raise ValueError(f'{len(missing)} shards are not done yet (first: {missing[0].id}); '
                       'run the same command again to finish them')
    rows = self.store.assemble(self.shards, self.out_format)
    summary = summarize(read_evaluation(self.table))
    write_summary(summary, summary_path(self.table))
    provenance = {'table': str(self.table), 'rows': rows, 'arguments': self.arguments,
                  'summary': str(summary_path(self.table)),
                  'checkpoints': {str(f): str(s.path) for f, s in sorted(self.sources.items())}}
    write_json(provenance_path(self.table), provenance)
    return provenance


def _leading(value, count: int):
  """An input's first ``count`` rows (arrays with a batch axis, and a bound method's
  per-image options); the model, its variables and the method itself as they are."""
  if isinstance(value, BoundMethod):
    return BoundMethod(value.method, {k: _leading(v, count) for k, v in value.options.items()})
  if isinstance(value, jax.Array) and value.ndim and value.shape[0] >= count:
    return value if value.shape[0] == count else value[:count]
  return value


def _one_pass(bound: BoundMethod, count: int, size) -> BoundMethod:
  """``bound`` with ``max_batch`` covering every pass of ``count`` images, where the method
  has that option and the user left it unset."""
  entry = bound.method
  if 'max_batch' not in entry.options or bound.options.get('max_batch') is not None:
    return bound
  _, backward = entry.passes(*size, **{k: v for k, v in bound.options.items()
                                       if k not in specs.REGION_OPTIONS})
  return BoundMethod(entry, {**bound.options, 'max_batch': max(backward, 1) * count})


def read_evaluation(path: pathlib.Path) -> dict[str, np.ndarray]:
  """The evaluation table as {column: array}."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'no evaluation table at {path} (write one with `gestaltxai '
                            'evaluate-methods`)')
  if path.suffix.lower() == '.csv':
    import pyarrow.csv as pa_csv  # pylint: disable=import-outside-toplevel
    table = pa_csv.read_csv(path)
  else:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    table = pq.read_table(path)
  missing = [c for c in COLUMNS if c not in table.column_names]
  if missing:
    raise ValueError(f'{path} is no evaluate-methods table: it lacks columns {missing}')
  return {c: np.asarray(table.column(c).to_pylist(), dtype=object if c in (
      'image_name', 'method', 'metric', 'direction', 'status') else float) for c in COLUMNS}


def evaluation(data_dir, out, *, runs=None, weights=None, methods: Sequence[str] = (),
               method_options=None, metrics: Sequence[str] = (), metric_options=None,
               folds: Optional[Sequence[int]] = None, images_per_fold: Optional[int] = None,
               **settings) -> Evaluation:
  """An :class:`Evaluation` from command-line style arguments, every input checked first.

  Args:
    data_dir: a dataset made by ``gestaltxai prepare``.
    out: the table's path (``.parquet`` or ``.csv``).
    runs: a ``gestaltxai train`` output (fold K's held-out images, its best checkpoint).
    weights: instead: one model for every image (fold 0).
    methods: names or aliases, or ['all'] (default: the reference pipeline's).
    method_options: {method: {option: value}}.
    metrics: metric names, ['all'], or [] for :data:`DEFAULT_METRICS`.
    metric_options: {metric: {option: value}}.
    folds: the folds (default: all).
    images_per_fold: the first N held-out images of each fold (default: all).
    **settings: :class:`Evaluation`'s other fields.
  """
  from gestaltxai.extract.run import REFERENCE_METHODS  # pylint: disable=import-outside-toplevel
  metric_specs(list(metrics), metric_options)  # names and options, before any file is read
  dataset = FaceDataset.open(data_dir)
  table = pathlib.Path(out)
  out_format = coefficient_table.table_format(table, settings.pop('out_format', None))
  planted = dataset.metadata.get(MetadataKey.TRAIT_REGIONS)
  method_list = specs.method_specs(list(methods) or list(REFERENCE_METHODS), method_options)
  metric_list = metric_specs(list(metrics), metric_options, ground_truth=bool(planted))
  sources = model_sources(dataset, runs=runs, weights=weights, folds=folds)
  # The held-out images, as extraction takes them; one model explains every image.
  fold_indices = ({f: dataset.role_indices(f, 'held_out') for f in sources} if runs is not None
                  else {NO_FOLD: np.arange(len(dataset))})
  checked_runs(sources, dataset)  # each fold's run trained on this split of it (no leakage)
  if images_per_fold is not None:
    if images_per_fold < 1:
      raise ValueError(f'--images-per-fold must be at least 1, got {images_per_fold}')
    fold_indices = {f: i[:images_per_fold] for f, i in fold_indices.items()}
  empty = [f for f, i in fold_indices.items() if not len(i)]
  if empty:
    raise ValueError(f'no held-out images in folds {empty} of {dataset.directory}')
  return Evaluation(dataset, table, sources, fold_indices, method_list, metric_list,
                    planted=planted, out_format=out_format, **settings)
