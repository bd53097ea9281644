"""Extraction end to end: every held-out and annotated image x every method -> one row each.

For each fold the chosen checkpoint of ``gestaltxai train`` (or one given
model for every image) predicts each image of the asked roles once (by
default the held-out images for RQ1 and the annotated ones for RQ2, see
:mod:`gestaltxai.roles`); each row names the image's stored ``split`` and
its ``role`` ('held_out', 'annotated', or both joined by '+'); each method
explains the predicted class and its relevance becomes region coefficients
on the device.
The work is cut into shards (see :mod:`gestaltxai.extract.store`), which
makes it resumable and splittable over processes; whichever process finds
every shard present writes the table, its maps and its provenance.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import functools
import importlib.metadata
import pathlib
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np
import pyarrow as pa

from gestaltxai import paper
from gestaltxai.data.pipeline import (BatchPlan, FaceDataset, batch_dataset, iterate,
                                      plan_batches)
from gestaltxai.data.schema import MetadataKey
from gestaltxai.extract import spec as specs
from gestaltxai.extract.step import DeviceSteps
from gestaltxai.extract.store import FORMATS, Shard, ShardStore, plan_shards
from gestaltxai.files import atomic_write, save_npz, write_json
from gestaltxai import outputs, provenance as chain
from gestaltxai.provenance import dataset_fingerprint
from gestaltxai.stats.options import DEFAULT_CONTROL
from gestaltxai.models import load_vggface2
from gestaltxai.models.contract import explainable
from gestaltxai.roles import EVERY_ROLE, ROLES, STUDY_ROLES, row_role
from gestaltxai.stats.table import OK

#: The reference pipeline's fifteen methods (extract_region_coefficients.py).
REFERENCE_METHODS = paper.EXTRACTED_METHODS
#: The fold of every row when one model explains every image (``weights=``).
NO_FOLD = 0
#: Images whose relevance maps the maps file keeps for the report's overlays: the
#: first usable ones of the first shard.
EXAMPLES = 6
#: Keys of the maps file (and of the first shard's) holding the examples.
EXAMPLES_PREFIX = 'examples/'
_VGGFACE2_SIZE = 224


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A model ready to explain a fold: what it needs of the inputs, and its classes."""

  model: object
  variables: dict
  image_size: int
  mean_bgr: tuple[float, ...]
  classes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Where a fold's model comes from: a trained fold's best epoch, or a weights file."""

  path: pathlib.Path
  checkpoint: bool

  def load(self, dtype: Optional[str], classes: Sequence[str],
           dataset: FaceDataset) -> LoadedModel:
    if self.checkpoint:
      from gestaltxai.train import load_checkpoint  # pylint: disable=import-outside-toplevel
      model, variables, config, metadata = load_checkpoint(self.path)
      loaded = LoadedModel(model, variables, config.image_size, tuple(metadata['mean_bgr']),
                           tuple(metadata['classes']))
    else:
      variables = load_vggface2(self.path)
      head = variables['params']['fc']['bias'].shape[0]
      if head != len(classes):
        raise ValueError(f'{self.path} has a {head}-way head; the dataset has {len(classes)} '
                         'classes: give weights fine-tuned on its classes (a state dict '
                         '.npz or pickle, or a `gestaltxai train` fold)')
      from gestaltxai.models import ResNet50  # pylint: disable=import-outside-toplevel
      loaded = LoadedModel(ResNet50(head), variables, _VGGFACE2_SIZE,
                           tuple(dataset.mean_bgr(None)), tuple(classes))
    if list(loaded.classes) != list(classes):
      raise ValueError(f'{self.path} was trained on classes {list(loaded.classes)}; the '
                       f'dataset has {list(classes)}')
    if dtype is not None:
      loaded = dataclasses.replace(loaded, model=explainable(loaded.model).with_dtype(dtype))
    return loaded

  def fingerprint(self) -> str:
    """sha256 of the model's files (names and bytes), the provenance's checkpoint hash."""
    return fingerprint_files(self.path)


def best_epoch_dir(fold_dir: pathlib.Path) -> pathlib.Path:
  """The folder of a trained fold's best epoch; a missing fold names the path."""
  from gestaltxai.train import checkpoints  # pylint: disable=import-outside-toplevel
  if not fold_dir.is_dir():
    raise FileNotFoundError(f'no trained model for {fold_dir.name}: {fold_dir} does not exist '
                            '(train it with `gestaltxai train`)')
  directory = checkpoints.checkpoint_dir(fold_dir)
  manager = checkpoints.manager(directory, read_only=True)
  try:
    latest = manager.latest_step()
    if latest is None:
      raise FileNotFoundError(f'no complete checkpoint in {directory}')
    return directory / str(chain.read_checkpoint_metadata(directory / str(latest))['best_epoch'])
  finally:
    manager.close()


def fingerprint_files(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
  for file in files:
    digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
    with open(file, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        digest.update(block)
  return digest.hexdigest()


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


class RegionMaps:
  """Adds each batch's region maps (and why a row has none) on the host, in grain's workers."""

  def __init__(self, region_set: specs.RegionSet):
    self.region_set = region_set

  def __call__(self, batch: dict) -> dict:
    size = batch['regions'].shape[1:]
    labels = np.zeros((len(batch['name']), *size), np.int32)
    rq2_labels = np.zeros_like(labels)
    problems = [''] * len(batch['name'])
    for row in np.flatnonzero(batch['valid']):
      record = {key: batch[key][row] for key in ('regions', 'parsing', 'points68')}
      try:
        labels[row] = self.region_set.labels(record)
        rq2_labels[row] = specs.RQ2_REGIONS.labels(record)
      except ValueError as err:  # a corrupt or incomplete map: the row says why
        problems[row] = f'no region map ({err})'
    finite = np.isfinite(batch['image']).reshape(len(labels), -1).all(axis=1)
    for row in np.flatnonzero(batch['valid'] & ~finite):
      problems[row] = 'non-finite pixels'
    image = np.where(finite[:, None, None, None], batch['image'], 0.0).astype(np.float32)
    usable = batch['valid'] & np.array([not p for p in problems], bool)
    return {**batch, 'image': image, 'labels': labels, 'rq2_labels': rq2_labels,
            'problem': problems, 'usable': usable}


def _concatenate(plans: Sequence[BatchPlan]) -> BatchPlan:
  return BatchPlan(np.concatenate([p.records for p in plans]),
                   np.concatenate([p.flips for p in plans]))


def _key(seed: int, method: str, shard: Shard, batch_number: int) -> jax.Array:
  """A method's key for one batch: independent of which process runs the shard."""
  digest = int.from_bytes(hashlib.sha256(f'{method}/{shard.id}'.encode()).digest()[:4], 'little')
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), digest), batch_number)


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
    self.shards = plan_shards(self.fold_indices, self.shard_size)
    self.store = ShardStore(self.table)

  @functools.cached_property
  def arguments(self) -> dict:
    """What the rows depend on: a later run into the same output must bring the same."""
    return {'dataset': dataset_fingerprint(self.dataset),
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

  def _run_fold(self, fold: int, shards: Sequence[Shard], progress: Progress,
                counts: dict) -> None:
    loaded = self.sources[fold].load(self.dtype, self.classes, self.dataset)
    local_devices = jax.local_device_count()
    batch_size = -(-self.batch_size // local_devices) * local_devices
    steps = DeviceSteps(loaded.model, loaded.variables, self.methods,
                        len(self.region_set.names), len(specs.RQ2_REGIONS.names),
                        len(self.classes), batch_size, min(EXAMPLES, batch_size))
    plans = [plan_batches(s.indices, batch_size, remainder='pad') for s in shards]
    batched = batch_dataset(self.dataset, _concatenate(plans), mean_bgr=loaded.mean_bgr,
                            image_size=loaded.image_size).map(RegionMaps(self.region_set))
    stream = iterate(batched, workers=self.workers)
    for position, (shard, plan) in enumerate(zip(shards, plans)):
      started = time.perf_counter()
      collected = [self._explain_batch(steps, next(stream), shard, number, loaded, progress)
                   for number in range(plan.steps)]
      table, maps, problems = self._shard_outputs(shard, collected)
      # The fold's first batch compiles every method: the per-method rates leave it out.
      warm = collected[1:] if position == 0 else collected
      info = {'images': len(shard.indices), 'seconds': time.perf_counter() - started,
              'method_seconds': {m.name: sum(part['seconds'][m.name] for part in warm)
                                 for m in self.methods},
              'method_images': sum(int(part['batch']['valid'].sum()) for part in warm),
              'device': f'{jax.local_devices()[0].platform}: {jax.local_devices()[0].device_kind}',
              'device_count': local_devices, 'problems': problems}
      self.store.write(shard, table, maps, info)
      counts['images'] += len(shard.indices)
      counts['problems'] += problems

  def _explain_batch(self, steps: DeviceSteps, batch: dict, shard: Shard, number: int,
                     loaded: LoadedModel, progress: Progress) -> dict:
    """Every method on one batch; only coefficients and per-class sums come back."""
    device_batch = steps.put(batch)
    probabilities, predicted = steps.predict(device_batch)
    seconds, results = {}, {}
    # Examples' maps leave the device once: from the first batch of the first shard.
    with_examples = shard == self.shards[0] and number == 0
    for spec in self.methods:  # one at a time, so each one's time is its own
      started = time.perf_counter()
      result = steps.explain(spec.name, device_batch, predicted,
                             _key(self.seed, spec.name, shard, number))
      examples = result.pop('examples', None)
      results[spec.name] = jax.device_get(result)
      if with_examples and examples is not None:
        results[spec.name]['examples'] = np.asarray(examples)
      seconds[spec.name] = time.perf_counter() - started
    valid = np.asarray(batch['valid'])
    progress.update(int(valid.sum()), seconds)
    return {'batch': {k: batch[k] for k in ('index', 'name', 'label', 'valid', 'usable',
                                             'problem', 'image')},
            'probabilities': np.asarray(probabilities), 'predicted': np.asarray(predicted),
            'results': results, 'mean_bgr': loaded.mean_bgr, 'seconds': seconds}

  def _shard_outputs(self, shard: Shard, collected: Sequence[dict]):
    """The shard's rows as a table, its per-class map sums, and its count of problem rows."""
    columns = {name: [] for name in specs.columns(self.region_set, self.classes)}
    num_classes = len(self.classes)
    maps: dict[str, np.ndarray] = {}
    class_counts = np.zeros((len(self.methods), num_classes), np.int64)
    image_sums, image_counts = None, np.zeros(num_classes, np.int64)
    problems = 0
    for part in collected:
      batch = part['batch']
      rows = np.flatnonzero(batch['valid'])
      rgb = (batch['image'] + np.asarray(part['mean_bgr'], np.float32))[..., ::-1]
      if image_sums is None:
        image_sums = np.zeros((num_classes, *rgb.shape[1:]), np.float64)
      for row in np.flatnonzero(batch['usable']):
        image_sums[batch['label'][row]] += rgb[row]
        image_counts[batch['label'][row]] += 1
      for m, spec in enumerate(self.methods):
        result = part['results'][spec.name]
        if 'class_sums' in result:
          maps[f'class_sums/{spec.name}'] = maps.get(f'class_sums/{spec.name}', 0.0) + \
              result['class_sums'].astype(np.float64)
        for row in rows:
          status = self._status(batch['problem'][row], bool(result['finite'][row]),
                                result['coefficients'][row])
          problems += status != OK
          self._add_row(columns, shard.fold, spec.name, batch, row, part, result, status)
          if batch['usable'][row] and result['finite'][row]:  # as the device's class sums
            class_counts[m, batch['label'][row]] += 1
    maps['class_counts'] = class_counts
    maps['methods'] = np.array([m.name for m in self.methods])
    maps.update(self._kept_examples(collected[0]))
    if image_sums is not None:
      maps['image_sums'], maps['image_counts'] = image_sums, image_counts
    return pa.table(columns), maps, problems

  def _kept_examples(self, part: dict) -> dict[str, np.ndarray]:
    """The maps the device kept of a batch's first rows (only the run's first batch has
    them), for the usable rows among them, with their faces and names."""
    kept = {s.name: part['results'][s.name]['examples'] for s in self.methods
            if 'examples' in part['results'][s.name]}
    if not kept:
      return {}
    batch = part['batch']
    count = len(next(iter(kept.values())))  # min(EXAMPLES, batch size)
    rows = [r for r in range(count) if batch['usable'][r]]
    rgb = (batch['image'][rows] + np.asarray(part['mean_bgr'], np.float32))[..., ::-1]
    return {f'{EXAMPLES_PREFIX}names': np.array([batch['name'][r] for r in rows]),
            f'{EXAMPLES_PREFIX}images': np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
            **{f'{EXAMPLES_PREFIX}{name}': maps[rows] for name, maps in kept.items()}}

  def _status(self, problem: str, finite: bool, coefficients: np.ndarray) -> str:
    if problem:
      return problem
    if not finite:
      return 'non-finite relevance'
    empty = [name for name, value in zip(self.region_set.columns, coefficients[1:])
             if np.isnan(value)]
    return f'empty region: {", ".join(empty)}' if empty else OK

  def _add_row(self, columns, fold, method, batch, row, part, result, status) -> None:
    usable = not batch['problem'][row]
    coefficients = result['coefficients'][row][1:] if usable and result['finite'][row] else (
        np.full(len(self.region_set.columns), np.nan))
    normalized = result['normalized'][row][1:] if usable and result['finite'][row] else (
        np.full(len(specs.RQ2_REGIONS.columns), np.nan))
    split, role = self.row_roles.get(fold, {}).get(int(batch['index'][row]), ('', EVERY_ROLE))
    columns['image_name'].append(batch['name'][row])
    columns['fold'].append(fold)
    columns['split'].append(split)
    columns['role'].append(role)
    columns['method'].append(method)
    for region, value in zip(self.region_set.columns, coefficients):
      columns[f'{region}{specs.COEFFICIENT_SUFFIX}'].append(float(value))
    for region, value in zip(specs.RQ2_REGIONS.columns, normalized):
      columns[f'{region}{specs.NORMALIZED_SUFFIX}'].append(float(value))
    columns['label'].append(self.classes[batch['label'][row]])
    columns['predicted'].append(self.classes[part['predicted'][row]] if usable else None)
    for c, name in enumerate(self.classes):
      columns[f'{specs.PROBABILITY_PREFIX}{name}'].append(float(part['probabilities'][row, c]) if usable else np.nan)
    columns['status'].append(status)

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
    problems = sum(i['problems'] for i in infos)
    table_fingerprint = chain.file_fingerprint(self.table)
    self._write_maps()
    provenance = {
        chain.KEY: {**self.made_from, 'table': table_fingerprint},
        'table': str(self.table), 'rows': rows, 'images': images,
        'problem_rows': problems, 'arguments': self.arguments,
        'checkpoints': {str(f): str(s.path) for f, s in sorted(self.sources.items())},
        'versions': _versions(), 'device': infos[0]['device'] if infos else None,
        'device_count': infos[0]['device_count'] if infos else None,
        'command': ' '.join(['gestaltxai', *sys.argv[1:]]),
        'started': _iso(run_info['started']) if run_info else None,
        'finished': _iso(time.time()),
        'images_per_s': images / seconds if seconds else None,
        'method_images_per_s': {
            m.name: sum(i['method_images'] for i in infos) / total
            if (total := sum(i['method_seconds'][m.name] for i in infos)) else None
            for m in self.methods},
        'images_per_s_note': 'images over the summed shard times of every process; per '
                             'method, over its own time on each batch, leaving out each '
                             'fold\'s first batch (compilation)'}
    write_json(provenance_path(self.table), provenance)
    return provenance

  def _write_maps(self) -> None:
    """``TABLE.maps.npz``: per-class mean maps and faces, and a few examples' maps."""
    totals: dict[str, np.ndarray] = {}
    for shard in self.shards:
      for key, value in self.store.maps(shard).items():
        if key != 'methods':
          totals[key] = totals[key] + value if key in totals else value
    out = {'classes': np.array(self.classes)}
    counts = totals.get('class_counts')
    for m, spec in enumerate(self.methods):
      key = f'class_sums/{spec.name}'
      if key in totals:
        out[f'class_mean/{spec.name}'] = (totals[key] / np.maximum(counts[m], 1)[:, None, None]
                                          ).astype(np.float32)
    if 'image_sums' in totals:
      mean = totals['image_sums'] / np.maximum(totals['image_counts'], 1)[:, None, None, None]
      out['mean_image'] = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    # Only the first shard holds examples, so its arrays came through the sum unchanged.
    out.update({k: v for k, v in totals.items() if k.startswith(EXAMPLES_PREFIX)})
    out[chain.KEY] = np.array(chain.maps_record(self.table))
    atomic_write(maps_path(self.table), lambda p: save_npz(p, out))


def provenance_path(table: pathlib.Path) -> pathlib.Path:
  """``TABLE.json`` beside ``TABLE.parquet`` (or ``.csv``)."""
  return table.with_suffix('.json')


def maps_path(table: pathlib.Path) -> pathlib.Path:
  return table.with_suffix('.maps.npz')


def _versions() -> dict[str, str]:
  found = {'python': sys.version.split()[0]}
  for package in ('gestaltxai', 'jax', 'jaxlib', 'flax', 'numpy', 'grain', 'pyarrow'):
    try:
      found[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def _iso(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
      timespec='seconds')


#: Table suffixes of each format.
_SUFFIXES = {'parquet': ('.parquet', '.pq'), 'csv': ('.csv',)}


def control_class(dataset: FaceDataset) -> Optional[str]:
  """The dataset's control class: its metadata's ``control``, else a class named
  'unaffected' in any case (NIH-Faces: 'Unaffected'), else None."""
  named = dataset.metadata.get(MetadataKey.CONTROL)
  if named:
    return str(named)
  return next((c for c in dataset.classes if c.lower() == DEFAULT_CONTROL), None)


def _table_format(table: pathlib.Path, out_format: Optional[str]) -> str:
  """The format from ``--format`` or the suffix; a suffix of the other format is refused."""
  by_suffix = next((f for f, suffixes in _SUFFIXES.items()
                    if table.suffix.lower() in suffixes), None)
  if out_format is not None and out_format not in FORMATS:
    raise ValueError(f'--format must be one of {FORMATS}, got {out_format!r}')
  if by_suffix is None:
    raise ValueError(f'--out {table}: a table is TABLE.parquet or TABLE.csv; other suffixes '
                     'are not read back as tables')
  if out_format is not None and out_format != by_suffix:
    raise ValueError(f'--format {out_format} does not match --out {table} ({by_suffix} by its '
                     f'suffix): give --out TABLE{_SUFFIXES[out_format][0]}')
  return by_suffix


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
  if (runs is None) == (weights is None):
    raise ValueError('give either --runs (a `gestaltxai train` output) or --weights (one model)')
  if regions not in specs.REGION_SETS:
    raise ValueError(f'--regions must be one of {sorted(specs.REGION_SETS)}, got {regions!r}')
  dataset = FaceDataset.open(data_dir)
  table = pathlib.Path(out)
  out_format = _table_format(table, settings.pop('out_format', None))
  outputs.check_writable(table.parent)
  method_list = specs.method_specs(methods, method_options)
  if runs is not None:
    folds = sorted(folds or range(1, dataset.num_folds + 1))
    for fold in folds:
      if not 1 <= fold <= dataset.num_folds:
        raise ValueError(f'fold {fold} is out of range: {dataset.directory} has folds '
                         f'1..{dataset.num_folds}')
    from gestaltxai.train.loop import fold_dir  # pylint: disable=import-outside-toplevel
    sources = {fold: ModelSource(best_epoch_dir(fold_dir(runs, fold)), True)
               for fold in folds}
    roles = _check_roles(roles)
    row_roles = {fold: images_by_role(dataset, fold, roles) for fold in folds}
    fold_indices = {fold: np.array(sorted(row_roles[fold]), np.int64) for fold in folds}
  else:
    if folds:
      raise ValueError('--folds goes with --runs; --weights explains every image')
    if roles:
      raise ValueError('--roles goes with --runs; --weights explains every image (role "all")')
    roles, row_roles = (EVERY_ROLE,), {}
    weights = pathlib.Path(weights)
    if not weights.exists():
      raise FileNotFoundError(f'no weights at {weights}')
    source = (ModelSource(best_epoch_dir(weights), True) if weights.is_dir()
              and not weights.name.isdigit() else ModelSource(weights, weights.is_dir()))
    sources = {NO_FOLD: source}
    fold_indices = {NO_FOLD: np.arange(len(dataset))}
  # Each fold's run must have been trained on this dataset's split of that fold.
  run_records = {fold: chain.check_run_for_extraction(source.path, dataset, fold)
                 for fold, source in sources.items() if fold != NO_FOLD}
  empty = [f for f, i in fold_indices.items() if not len(i)]
  if empty:
    splits = ', '.join(f'{role} = {dataset.roles.split(role)}' for role in roles
                       if role in ROLES)
    raise ValueError(f'no images of the roles {", ".join(roles)} ({splits}) in folds {empty} '
                     f'of {dataset.directory}')
  for name, value in (('batch size', settings.get('batch_size', 1)),
                      ('shard size', settings.get('shard_size', 1))):
    if value < 1:
      raise ValueError(f'the {name} must be at least 1, got {value}')
  settings['made_from'] = {**chain.table_record(chain.dataset_record(dataset), run_records),
                           'control': control_class(dataset)}
  return Extraction(dataset, table, sources, fold_indices, method_list, regions,
                    out_format=out_format, row_roles=row_roles, roles=tuple(roles), **settings)


def _check_roles(roles: Optional[Sequence[str]]) -> tuple[str, ...]:
  roles = tuple(roles or STUDY_ROLES)
  unknown = [r for r in roles if r not in ROLES]
  if unknown:
    raise ValueError(f'--roles: unknown {unknown}; choose from {", ".join(ROLES)}')
  return tuple(r for r in ROLES if r in roles)


def images_by_role(dataset: FaceDataset, fold: int,
                   roles: Sequence[str]) -> dict[int, tuple[str, str]]:
  """{record index: (its split, its ``role`` cell)} of the fold's images of ``roles``: an
  image of several asked roles (held-out and annotated on our builders) appears once."""
  found: dict[int, list[str]] = {}
  for role in roles:
    for index in dataset.role_indices(fold, role):
      found.setdefault(int(index), []).append(role)
  return {index: (dataset.roles.split(played[0]), row_role(tuple(played)))
          for index, played in found.items()}


def process_split(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  """(index, count): the flags (independent jobs), else JAX's (a ``jax.distributed`` run)."""
  if (process_index is None) != (process_count is None):
    raise ValueError('give --process-index and --process-count together')
  if process_count is None:
    return jax.process_index(), jax.process_count()
  if not 0 <= process_index < process_count:
    raise ValueError(f'--process-index must be in 0..{process_count - 1}, got {process_index}')
  return process_index, process_count

