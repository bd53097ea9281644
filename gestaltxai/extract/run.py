"""Extraction end to end: every held-out and annotated image x every method -> one row each.

For each fold the chosen checkpoint of ``gestaltxai train`` (or one given
model for every image) predicts each image of the asked roles once (by
default the held-out images for RQ1 and the annotated ones for RQ2, see
:mod:`gestaltxai.roles`); each row names the image's stored ``split`` and
its ``role`` ('held_out', 'annotated', or both joined by '+'); each method
explains the predicted class and its relevance becomes region coefficients
on the device.

This module is the orchestration; each part has its own owner: the fold's
model (:mod:`gestaltxai.train.fold_models`), host batches
(:mod:`~gestaltxai.extract.batches`), the compiled steps
(:mod:`~gestaltxai.extract.step`), rows (:mod:`~gestaltxai.extract.rows`),
shards (:mod:`~gestaltxai.extract.store`), and the files written
(:mod:`gestaltxai.artifacts.coefficient_table`). Whichever process finds every
shard present writes the table, its maps and its provenance.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib
import sys
import time
from typing import Callable, Iterator, Optional, Sequence

import jax
import numpy as np

from gestaltxai import outputs, paper, provenance as chain
from gestaltxai.artifacts import coefficient_table as table_files
from gestaltxai.artifacts.coefficient_table import NO_FOLD
from gestaltxai.data.pipeline import FaceDataset, batch_dataset, iterate, plan_batches
from gestaltxai.data.schema import MetadataKey
from gestaltxai.errors import ParameterError
from gestaltxai.extract import rows as row_parts
from gestaltxai.extract import spec as specs
from gestaltxai.extract.batches import (ROW_FIELDS, RegionMaps, batch_key, concatenate_plans,
                                        faces_rgb)
from gestaltxai.extract.step import DeviceSteps
from gestaltxai.extract.store import Shard, ShardStore, plan_shards
from gestaltxai.roles import EVERY_ROLE, ROLES, STUDY_ROLES, check_roles, images_by_role
from gestaltxai.stats.options import DEFAULT_CONTROL
from gestaltxai.train.fold_models import (LoadedModel, ModelSource, checked_runs,
                                          model_sources)

#: The reference pipeline's fifteen methods (extract_region_coefficients.py).
REFERENCE_METHODS = paper.EXTRACTED_METHODS
#: Images whose relevance maps the maps file keeps for the report's overlays: the
#: first usable ones of the first shard.
EXAMPLES = 6
#: The provenance's note on its images/s figures.
RATES_NOTE = ('images over the summed shard times of every process; per method, over its own '
              'time on each batch, leaving out each fold\'s first batch (compilation)')

@dataclasses.dataclass
class Progress:
  """Images done, images/s and ETA overall, and milliseconds per image of each method."""

  total: int
  enabled: bool = True

  def __post_init__(self):
    from tqdm import auto as tqdm  # pylint: disable=import-outside-toplevel
    self.bar = tqdm.tqdm(total=self.total, unit='img', desc='extracting',
                         disable=not self.enabled, dynamic_ncols=True)
    self.seconds: dict[str, float] = {}
    self.images: dict[str, int] = {}

  def update(self, images: int, method_seconds: dict[str, float]) -> None:
    for name, seconds in method_seconds.items():
      self.seconds[name] = self.seconds.get(name, 0.0) + seconds
      self.images[name] = self.images.get(name, 0) + images
    self.bar.set_postfix_str(', '.join(
        f'{n} {1000 * s / max(self.images[n], 1):.0f} ms/img' for n, s in self.seconds.items()),
        refresh=False)
    self.bar.update(images)

  def close(self):
    self.bar.close()


@dataclasses.dataclass(frozen=True)
class FoldSetup:
  """A fold's model, its compiled steps, and its batches' plan per shard."""

  loaded: LoadedModel
  steps: DeviceSteps
  plans: list
  batches: object  # a grain MapDataset of host batches, the plans' batches in order


@dataclasses.dataclass
class Extraction:
  """One extraction run: what to compute (the manifest's arguments) and where."""

  dataset: FaceDataset
  table: pathlib.Path
  sources: dict[int, ModelSource]
  fold_indices: dict[int, np.ndarray]
  methods: tuple[specs.MethodSpec, ...]
  region_set_name: str = 'reference'
  batch_size: int = 32
  shard_size: int = 256
  dtype: Optional[str] = None
  out_format: str = 'parquet'
  seed: int = 0
  workers: int = 0
  #: Replace a finished table (and its maps, provenance and shards) at ``table``.
  overwrite: bool = False
  #: What the rows are made from (:func:`gestaltxai.provenance.table_record`).
  made_from: dict = dataclasses.field(default_factory=dict)
  progress: bool = True
  log: Callable[[str], None] = print
  #: {fold: {record index: (split, role)}}: what each row's ``split`` and ``role`` say
  #: (an image missing here is written with split '' and role 'all').
  row_roles: dict = dataclasses.field(default_factory=dict)
  #: The roles asked for (recorded in the manifest).
  roles: tuple[str, ...] = STUDY_ROLES

  def __post_init__(self):
    self.region_set = specs.REGION_SETS[self.region_set_name]
    self.classes = tuple(self.dataset.classes)
    self.layout = row_parts.RowLayout(self.region_set.columns, specs.RQ2_REGIONS.columns,
                                      self.classes)
    self.shards = plan_shards(self.fold_indices, self.shard_size)
    self.store = ShardStore(self.table)

  @functools.cached_property
  def arguments(self) -> dict:
    """What the rows depend on: a later run into the same output must bring the same."""
    return {'dataset': chain.dataset_fingerprint(self.dataset),
            'models': {str(f): s.fingerprint() for f, s in sorted(self.sources.items())},
            'methods': {m.name: m.resolved() for m in self.methods},
            'regions': self.region_set_name, 'folds': sorted(self.fold_indices),
            'roles': list(self.roles),
            'batch_size': self.batch_size, 'shard_size': self.shard_size,
            'dtype': self.dtype or 'float32', 'seed': self.seed}

  def run(self, process_index: int = 0, process_count: int = 1) -> dict:
    """Computes this process's missing shards; returns what was done and what is left."""
    started = time.time()
    outputs.claim_table(self.table, self.store.directory, self.arguments, self.overwrite)
    self.store.open(self.arguments, self.shards)
    mine = self.shards[process_index::process_count]
    todo = self.store.missing(mine)
    self.log(f'{len(self.shards)} shards of at most {self.shard_size} images, '
             f'{len(mine)} for process {process_index} of {process_count}, '
             f'{len(mine) - len(todo)} already done')
    counts = {'images': 0, 'problems': 0}
    if todo:
      progress = Progress(sum(len(s.indices) for s in todo), self.progress)
      try:
        for fold in sorted({s.fold for s in todo}):
          self._run_fold(fold, [s for s in todo if s.fold == fold], progress, counts)
      finally:
        progress.close()
    return {'started': started, 'seconds': time.time() - started, **counts,
            'missing': [s.id for s in self.store.missing(self.shards)]}

  def fold_setup(self, fold: int, shards: Sequence[Shard]) -> FoldSetup:
    """The fold's model and compiled steps, and the host batches of ``shards`` (the seam
    benchmarks time the same steps through)."""
    loaded = self.sources[fold].load(self.dtype, self.classes, self.dataset)
    local_devices = jax.local_device_count()
    batch_size = -(-self.batch_size // local_devices) * local_devices
    steps = DeviceSteps(loaded.model, loaded.variables, self.methods,
                        len(self.region_set.names), len(specs.RQ2_REGIONS.names),
                        len(self.classes), batch_size, min(EXAMPLES, batch_size))
    plans = [plan_batches(s.indices, batch_size, remainder='pad') for s in shards]
    batches = batch_dataset(self.dataset, concatenate_plans(plans), mean_bgr=loaded.mean_bgr,
                            image_size=loaded.image_size).map(RegionMaps(self.region_set))
    return FoldSetup(loaded, steps, plans, batches)

  def _run_fold(self, fold: int, shards: Sequence[Shard], progress: Progress,
                counts: dict) -> None:
    setup = self.fold_setup(fold, shards)
    stream = iterate(setup.batches, workers=self.workers)
    device = jax.local_devices()[0]
    for position, (shard, plan) in enumerate(zip(shards, setup.plans)):
      started = time.perf_counter()
      collected = [self._explain_batch(setup, next(stream), shard, number, progress)
                   for number in range(plan.steps)]
      examples = (self._kept_examples(collected[0])
                  if shard == self.shards[0] else None)
      table, maps, problems = row_parts.shard_outputs(
          self.layout, fold, [m.name for m in self.methods], collected,
          self.row_roles.get(fold, {}), examples)
      # The fold's first batch compiles every method: the per-method rates leave it out.
      warm = collected[1:] if position == 0 else collected
      info = {'images': len(shard.indices), 'seconds': time.perf_counter() - started,
              'method_seconds': {m.name: sum(part['seconds'][m.name] for part in warm)
                                 for m in self.methods},
              'method_images': sum(int(part['batch']['valid'].sum()) for part in warm),
              'device': f'{device.platform}: {device.device_kind}',
              'device_count': jax.local_device_count(), 'problems': problems,
              'statuses': _counts(table.column('status')),
              'roles': _counts(table.column('role'))}
      self.store.write(shard, table, maps, info)
      counts['images'] += len(shard.indices)
      counts['problems'] += problems

  def _explain_batch(self, setup: FoldSetup, batch: dict, shard: Shard, number: int,
                     progress: Progress) -> dict:
    """Every method on one batch; only coefficients and per-class sums come back.

    Each method runs to completion on the device before the next is dispatched, so the
    time it takes is its own: back-to-back dispatches overlap (XLA:CPU runs them side by
    side on its thread pool), and the time until each is ready would then credit the
    first method with the others' work. Nothing leaves the device until every method has
    run; then the coefficients come back in one transfer.
    """
    steps = setup.steps
    device_batch = steps.put(batch)
    probabilities, predicted = steps.predict(device_batch)
    # Examples' maps leave the device once: from the first batch of the first shard.
    with_examples = shard == self.shards[0] and number == 0
    pending, seconds = {}, {}
    started = time.perf_counter()
    for spec in self.methods:
      pending[spec.name] = jax.block_until_ready(steps.explain(
          spec.name, device_batch, predicted, batch_key(self.seed, spec.name, shard.id, number)))
      now = time.perf_counter()
      seconds[spec.name], started = now - started, now
    examples = {name: result.pop('examples', None) for name, result in pending.items()}
    probabilities, predicted, results = jax.device_get((probabilities, predicted, pending))
    if with_examples:
      for name, kept in examples.items():
        if kept is not None:
          results[name]['examples'] = np.asarray(kept)
    progress.update(int(np.asarray(batch['valid']).sum()), seconds)
    return {'batch': {k: batch[k] for k in ROW_FIELDS},
            'probabilities': probabilities, 'predicted': predicted,
            'results': results, 'mean_bgr': setup.loaded.mean_bgr, 'seconds': seconds}

  def _kept_examples(self, part: dict) -> Optional[dict[str, np.ndarray]]:
    """The maps the device kept of a batch's first rows (only the run's first batch has
    them), for the usable rows among them, with their faces and names."""
    kept = {s.name: part['results'][s.name]['examples'] for s in self.methods
            if 'examples' in part['results'][s.name]}
    if not kept:
      return None
    batch = part['batch']
    count = len(next(iter(kept.values())))  # min(EXAMPLES, batch size)
    rows = [r for r in range(count) if batch['usable'][r]]
    rgb = faces_rgb(batch['image'][rows], part['mean_bgr'])
    return table_files.example_arrays(table_files.Examples(
        [batch['name'][r] for r in rows], np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
        {name: maps[rows] for name, maps in kept.items()}))

  def assemble(self, run_info: Optional[dict] = None) -> dict:
    """Writes the table, its maps and its provenance; every shard must be present."""
    missing = self.store.missing(self.shards)
    if missing:
      raise ValueError(f'{len(missing)} shards are not done yet (first: {missing[0].id}); '
                       'run the same command again to finish them')
    rows = self.store.assemble(self.shards, self.out_format)
    infos = [self.store.info(s) for s in self.shards]
    images = sum(i['images'] for i in infos)
    seconds = sum(i['seconds'] for i in infos)
    self._write_maps()
    record = {
        chain.KEY: {**self.made_from, 'table': chain.file_fingerprint(self.table)},
        'table': str(self.table), 'rows': rows, 'images': images,
        'problem_rows': sum(i['problems'] for i in infos),
        'statuses': _summed(i.get('statuses', {}) for i in infos),
        'rows_per_role': _summed(i.get('roles', {}) for i in infos),
        'arguments': self.arguments,
        'checkpoints': {str(f): str(s.path) for f, s in sorted(self.sources.items())},
        'versions': chain.software_versions(), 'device': infos[0]['device'] if infos else None,
        'device_count': infos[0]['device_count'] if infos else None,
        'command': ' '.join(['gestaltxai', *sys.argv[1:]]),
        'started': chain.iso_time(run_info['started']) if run_info else None,
        'finished': chain.iso_time(time.time()),
        'images_per_s': images / seconds if seconds else None,
        'method_images_per_s': {
            m.name: sum(i['method_images'] for i in infos) / total
            if (total := sum(i['method_seconds'][m.name] for i in infos)) else None
            for m in self.methods},
        'images_per_s_note': RATES_NOTE}
    table_files.write_provenance(self.table, record)
    return record

  def _write_maps(self) -> None:
    """``TABLE.maps.npz``: per-class mean maps and faces, and a few examples' maps."""
    totals: dict[str, np.ndarray] = {}
    for shard in self.shards:
      for key, value in self.store.maps(shard).items():
        if key != row_parts.METHODS:
          totals[key] = totals[key] + value if key in totals else value
    counts = totals.get(row_parts.CLASS_COUNTS)
    class_mean = {}
    for m, spec in enumerate(self.methods):
      key = f'{row_parts.CLASS_SUMS_PREFIX}{spec.name}'
      if key in totals:
        class_mean[spec.name] = (totals[key] / np.maximum(counts[m], 1)[:, None, None]
                                 ).astype(np.float32)
    mean_image = None
    if row_parts.IMAGE_SUMS in totals:
      mean = (totals[row_parts.IMAGE_SUMS]
              / np.maximum(totals[row_parts.IMAGE_COUNTS], 1)[:, None, None, None])
      mean_image = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    # Only the first shard holds examples, so its arrays came through the sum unchanged.
    examples = {k: v for k, v in totals.items() if table_files.is_example_key(k)}
    table_files.write_maps(self.table, self.classes, class_mean, mean_image, examples,
                           chain.made_from_table(self.table))


def _counts(column) -> dict[str, int]:
  return dict(collections.Counter(column.to_pylist()))


def _summed(counts: Iterator[dict[str, int]]) -> dict[str, int]:
  total: collections.Counter = collections.Counter()
  for part in counts:
    total.update(part)
  return dict(sorted(total.items()))


def control_class(dataset: FaceDataset) -> Optional[str]:
  """The dataset's control class: its metadata's ``control``, else a class named
  'unaffected' in any case (NIH-Faces: 'Unaffected'), else None."""
  named = dataset.metadata.get(MetadataKey.CONTROL)
  if named:
    return str(named)
  return next((c for c in dataset.classes if c.lower() == DEFAULT_CONTROL), None)


def extraction(data_dir, out, *, runs=None, weights=None,
               methods: Sequence[str] = REFERENCE_METHODS, method_options=None,
               regions: str = 'reference', folds: Optional[Sequence[int]] = None,
               roles: Optional[Sequence[str]] = None, **settings) -> Extraction:
  """An :class:`Extraction` from command-line style arguments, every input checked first.

  Args:
    data_dir: a dataset prepared by ``gestaltxai prepare``.
    out: the table's path (``.parquet`` or ``.csv``).
    runs: a ``gestaltxai train`` output: fold K's images of ``roles`` are
      explained by ``runs/fold-K``'s chosen checkpoint.
    weights: instead of ``runs``: one model (a VGGFace2-format state dict with
      the dataset's classes, or a trained fold / checkpoint folder) for every
      image; the rows' fold is 0.
    methods: names or aliases, or ['all'].
    method_options: {method: {option: value}}.
    regions: a key of :data:`gestaltxai.extract.spec.REGION_SETS`.
    folds: the folds to explain (default: all).
    roles: the split roles whose images are explained (default
      :data:`~gestaltxai.roles.STUDY_ROLES`: held-out for RQ1, annotated for
      RQ2); with ``weights`` every image is explained and its role is 'all'.
    **settings: :class:`Extraction`'s other fields.
  """
  if regions not in specs.REGION_SETS:
    raise ParameterError('{regions} must be one of {choices}, got {given!r}',
                         choices=sorted(specs.REGION_SETS), given=regions)
  for name in ('batch_size', 'shard_size'):
    if settings.get(name, 1) < 1:
      raise ParameterError(f'{{{name}}} must be at least 1, got {{given}}', given=settings[name])
  dataset = FaceDataset.open(data_dir)
  table = pathlib.Path(out)
  out_format = table_files.table_format(table, settings.pop('out_format', None))
  outputs.check_writable(table.parent)
  method_list = specs.method_specs(methods, method_options)
  sources = model_sources(dataset, runs=runs, weights=weights, folds=folds)
  if runs is not None:
    roles = check_roles(roles)
    row_roles = {fold: images_by_role(dataset, fold, roles) for fold in sources}
    fold_indices = {fold: np.array(sorted(row_roles[fold]), np.int64) for fold in sources}
  else:
    if roles:
      raise ParameterError('{roles} go with {runs}; {weights} explain every image (role "all")')
    roles, row_roles = (EVERY_ROLE,), {}
    fold_indices = {NO_FOLD: np.arange(len(dataset))}
  run_records = checked_runs(sources, dataset)
  empty = [f for f, i in fold_indices.items() if not len(i)]
  if empty:
    splits = ', '.join(f'{role} = {dataset.roles.split(role)}' for role in roles
                       if role in ROLES)
    raise ValueError(f'no images of the roles {", ".join(roles)} ({splits}) in folds {empty} '
                     f'of {dataset.directory}')
  settings['made_from'] = {**chain.table_record(chain.dataset_record(dataset), run_records),
                           'control': control_class(dataset)}
  return Extraction(dataset, table, sources, fold_indices, method_list, regions,
                    out_format=out_format, row_roles=row_roles, roles=tuple(roles), **settings)


def process_split(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  """(index, count): the flags (independent jobs), else JAX's (a ``jax.distributed`` run)."""
  if (process_index is None) != (process_count is None):
    raise ParameterError('give {process_index} and {process_count} together')
  if process_count is None:
    return jax.process_index(), jax.process_count()
  if not 0 <= process_index < process_count:
    raise ParameterError('{process_index} must be in 0..{last}, got {given}',
                         last=process_count - 1, given=process_index)
  return process_index, process_count

