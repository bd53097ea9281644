"""Reading prepared face datasets: random access, folds, and batches on grain (one module, the
records and the batches that read them together, so longer than 400 lines).

No TensorFlow at run time: records come from ``tfds.data_source`` (array_record)
and are batched by a ``grain`` pipeline. Batching has three layers, each
usable alone:

* :func:`plan_batches`: which record fills which row of which batch, a pure
  function of (indices, batch size, seed, epochs, process). The global order
  is the same for any number of processes; process ``p`` of ``P`` owns rows
  ``[p * B / P, (p + 1) * B / P)`` of every global batch, which is the block
  ``jax.make_array_from_process_local_data`` expects for a batch sharded over
  a mesh of the devices in process order.
* :func:`batch_dataset`: a plan -> a ``grain.MapDataset`` of this process's
  batches (decode, resize, flip, subtract the mean, stack).
* :func:`iterate`: a checkpointable grain iterator over it, with decoding
  in worker processes or threads; its ``get_state()`` is saved with the model
  so a resumed run sees exactly the batches it would have seen.

:func:`batches` runs all three for a simple loop. Device placement is the
caller's (training and extraction code).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Iterator, Optional, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from gestaltxai.data import schema
from gestaltxai.data.examples import SIZE
from gestaltxai.data.schema import SPLITS, complete_datasets
from gestaltxai.roles import SplitRoles
from gestaltxai.regions.maps import LAPA_FLIP

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
# Five points swap pairs under a horizontal flip: eyes, and mouth corners.
_FIVE_FLIP = np.array([1, 0, 2, 4, 3])
#: The record index of a padding row in a plan.
PAD = -1
#: What to do with a last global batch smaller than the batch size.
REMAINDERS = ('keep', 'drop', 'pad')


def find_dataset_dir(path: str | pathlib.Path) -> pathlib.Path:
  """The prepared dataset directory (holding dataset_info.json) at or under ``path``."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'no dataset at {path}: the folder does not exist')
  found = complete_datasets(path)
  if path in found:
    return path
  if len(found) != 1:
    hint = '' if found else ' (make one with `gestaltxai prepare`)'
    raise FileNotFoundError(f'expected one prepared dataset under {path}, found {len(found)}'
                            + (f': {[str(p) for p in found]}' if found else hint))
  return found[0]


@dataclasses.dataclass
class FaceDataset:
  """A prepared face dataset: records by index, class names, folds and fold means.

  Pickles as its directory alone, so grain's worker processes reopen it.
  """

  directory: pathlib.Path

  @classmethod
  def open(cls, path: str | pathlib.Path) -> 'FaceDataset':
    directory = find_dataset_dir(path)
    from gestaltxai.provenance import check_dataset_files  # pylint: disable=import-outside-toplevel
    check_dataset_files(directory)
    return cls(directory)

  def __getstate__(self):
    return {'directory': self.directory}

  def __setstate__(self, state):
    self.__dict__.update(state)

  @functools.cached_property
  def builder(self):
    return tfds.builder_from_directory(str(self.directory))

  @functools.cached_property
  def source(self):
    return self.builder.as_data_source(schema.TFDS_SPLIT)

  @property
  def metadata(self) -> dict:
    return dict(self.builder.info.metadata)

  @property
  def classes(self) -> list[str]:
    return schema.classes(self.metadata)

  @property
  def num_folds(self) -> int:
    return self._index_table[0].shape[1]

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    return self.source[int(index)]

  @functools.cached_property
  def _index_table(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(folds (N, K) int8, labels (N,), names): from the metadata, or (datasets built before
    it recorded them) from every record."""
    recorded = schema.index(self.metadata)
    return recorded if recorded is not None else read_index(self.source)

  @property
  def labels(self) -> np.ndarray:
    return self._index_table[1]

  @property
  def names(self) -> list[str]:
    return self._index_table[2]

  def indices(self, fold: int, split: str) -> np.ndarray:
    """Record indices of ``split`` ('train', 'val', 'test') in fold ``fold`` (1-based)."""
    if not 1 <= fold <= self.num_folds:
      raise ValueError(f'fold must be in 1..{self.num_folds}, got {fold}')
    if split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    return np.flatnonzero(self._index_table[0][:, fold - 1] == SPLITS.index(split))

  @property
  def roles(self) -> SplitRoles:
    """Which split trains, selects the epoch, is held out and is annotated
    (:mod:`gestaltxai.roles`)."""
    return schema.split_roles(self.metadata)

  def role_indices(self, fold: int, role: str) -> np.ndarray:
    """Record indices playing ``role`` ('train', 'select', 'held_out', 'annotated') in
    fold ``fold`` (1-based)."""
    return self.indices(fold, self.roles.split(role))

  def mean_bgr(self, fold: Optional[int]) -> np.ndarray:
    """The fold's training BGR mean; the VGGFace2 mean when ``fold`` is None."""
    if fold is None:
      return np.array(VGGFACE2_MEAN_BGR, np.float32)
    return np.array(schema.fold_mean_bgr(self.metadata, fold), np.float32)


def read_index(source: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(folds (N, K) int8, labels (N,), names) of every record of a data source, in record
  order; this parses every record, images included (about 2 ms each), without keeping them."""
  folds, labels, names = [], [], []
  for i in range(len(source)):
    record = source[i]
    folds.append(record['folds'])
    labels.append(int(record['label']))
    names.append(_text(record['name']))
  return np.stack(folds), np.asarray(labels), names


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def flip_record(record: dict) -> dict:
  """Horizontal flip of an aligned record: maps mirrored, left/right labels swapped."""
  width = record['image'].shape[1]
  out = dict(record)
  out['image'] = record['image'][:, ::-1]
  out['parsing'] = LAPA_FLIP[record['parsing'][:, ::-1]].astype(record['parsing'].dtype)
  out['regions'] = record['regions'][:, ::-1]  # eye, nose and mouth are symmetric
  for key, order in (('five', _FIVE_FLIP), ('points68', None)):
    points = np.array(record[key], np.float32)
    points[:, 0] = width - 1 - points[:, 0]
    out[key] = points[order] if order is not None else points
  return out


def resize_record(record: dict, size: int) -> dict:
  """An aligned record at ``size`` x ``size``: the image by area, label maps by nearest.

  Points move with the pixel grid (pixel centres at integer coordinates), so
  maps, points and image stay registered at any size.
  """
  height = record['image'].shape[0]
  if size == height:
    return record
  out = dict(record)
  out['image'] = np.asarray(Image.fromarray(record['image']).resize((size, size), Image.BOX))
  for key in ('parsing', 'regions'):
    out[key] = np.asarray(Image.fromarray(record[key]).resize((size, size), Image.NEAREST))
  scale = size / height
  for key in ('five', 'points68'):
    out[key] = ((np.asarray(record[key], np.float32) + 0.5) * scale - 0.5).astype(np.float32)
  return out


def to_model_input(images_rgb: np.ndarray, mean_bgr: Sequence[float]) -> np.ndarray:
  """uint8 RGB (..., H, W, 3) -> float32 BGR minus the channel mean (VGGFace2)."""
  return images_rgb[..., ::-1].astype(np.float32) - np.asarray(mean_bgr, np.float32)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """Which record fills each row of this process's batches.

  Attributes:
    records: (steps, local batch) int64 record indices, :data:`PAD` for padding.
    flips: (steps, local batch) bool, flip that row horizontally.
  """

  records: np.ndarray
  flips: np.ndarray

  @property
  def steps(self) -> int:
    return self.records.shape[0]

  @property
  def local_batch_size(self) -> int:
    return self.records.shape[1]


def plan_batches(indices: Sequence[int], batch_size: int, *, seed: int = 0,
                 epochs: Sequence[int] = (0,), shuffle: bool = False, flip: bool = False,
                 process_index: int = 0, process_count: int = 1,
                 remainder: str = 'keep') -> BatchPlan:
  """The rows of every batch of ``epochs``, one after another, for one process.

  Args:
    indices: the records to read (for example ``dataset.indices(1, 'train')``).
    batch_size: the global batch size, a multiple of ``process_count``.
    seed, epochs: epoch ``e`` is shuffled and flipped by ``default_rng([seed, e])``.
    shuffle: a new permutation every epoch; otherwise the order of ``indices``.
    flip: a random horizontal flip per image, decided in the global order,
      so it does not depend on the number of processes.
    process_index, process_count: this process owns the contiguous block
      ``process_index`` of every global batch.
    remainder: a last batch smaller than ``batch_size`` is kept as
      padding rows that :func:`batches` strips ('keep'), dropped ('drop',
      training), or padded to full size with :data:`PAD` rows ('pad', fixed
      shapes for jit).
  """
  if remainder not in REMAINDERS:
    raise ValueError(f'remainder must be one of {REMAINDERS}, got {remainder!r}')
  if batch_size % process_count:
    raise ValueError(f'batch size {batch_size} must be a multiple of the process count '
                     f'{process_count}')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process index {process_index} not in 0..{process_count - 1}')
  base = np.asarray(indices, np.int64)
  records, flips = [], []
  for epoch in epochs:
    rng = np.random.default_rng([seed, epoch])
    order = base[rng.permutation(len(base))] if shuffle else base
    flipped = rng.random(len(order)) < 0.5 if flip else np.zeros(len(order), bool)
    steps = len(order) // batch_size if remainder == 'drop' else -(-len(order) // batch_size)
    padding = steps * batch_size - len(order)
    if padding > 0:
      order = np.concatenate([order, np.full(padding, PAD, np.int64)])
      flipped = np.concatenate([flipped, np.zeros(padding, bool)])
    records.append(order[:steps * batch_size].reshape(steps, batch_size))
    flips.append(flipped[:steps * batch_size].reshape(steps, batch_size))
  local = batch_size // process_count
  block = slice(process_index * local, (process_index + 1) * local)
  records = np.concatenate(records)[:, block] if records else np.zeros((0, local), np.int64)
  flips = np.concatenate(flips)[:, block] if flips else np.zeros((0, local), bool)
  return BatchPlan(records, flips)


#: Record fields the batches use.
_FIELDS = ('image', 'label', 'regions', 'parsing', 'five', 'points68', 'name')


@dataclasses.dataclass
class CachedRecords:
  """Records resized once and held in memory, read like a :class:`FaceDataset`.

  For small datasets (the tiny configuration): decoding and resizing then
  happen once, not every epoch.
  """

  records: dict[int, dict]

  def __getitem__(self, index: int) -> dict:
    return self.records[int(index)]


def cache_records(dataset: FaceDataset, indices: Sequence[int], image_size: int) -> CachedRecords:
  """The records at ``indices``, resized to ``image_size``, in memory."""
  def read(index):
    record = resize_record(dataset[index], image_size)
    return {key: record[key] for key in _FIELDS}
  return CachedRecords({int(i): read(i) for i in np.unique(np.asarray(indices))})


class _ReadExample(grain.transforms.Map):
  """(record index, flip) -> one model-ready example; a padding row is zeros."""

  def __init__(self, dataset: FaceDataset | CachedRecords, mean_bgr: Sequence[float],
               image_size: int):
    self.dataset = dataset
    self.mean_bgr = np.asarray(mean_bgr, np.float32)
    self.image_size = image_size

  def map(self, element):
    index, flip = element
    if index == PAD:
      return self._padding()
    record = resize_record(self.dataset[index], self.image_size)
    if flip:
      record = flip_record(record)
    return {'image': to_model_input(record['image'], self.mean_bgr),
            'label': np.int32(record['label']), 'regions': record['regions'],
            'parsing': record['parsing'], 'five': np.asarray(record['five'], np.float32),
            'points68': np.asarray(record['points68'], np.float32),
            'index': np.int64(index), 'name': _text(record['name']), 'valid': True}

  def _padding(self):
    size = self.image_size
    return {'image': np.zeros((size, size, 3), np.float32), 'label': np.int32(0),
            'regions': np.zeros((size, size), np.uint8),
            'parsing': np.zeros((size, size), np.uint8),
            'five': np.full((5, 2), np.nan, np.float32),
            'points68': np.full((68, 2), np.nan, np.float32),
            'index': np.int64(PAD), 'name': '', 'valid': False}


def _stack(examples: Sequence[dict]) -> dict:
  """Examples -> one batch: arrays stacked on a new first axis, names a list."""
  batch = {key: np.stack([e[key] for e in examples]) for key in examples[0] if key != 'name'}
  batch['name'] = [e['name'] for e in examples]
  return batch


def batch_dataset(dataset: FaceDataset | CachedRecords, plan: BatchPlan, *,
                  mean_bgr: Sequence[float], image_size: int = SIZE) -> grain.MapDataset:
  """A ``grain.MapDataset`` of this process's batches, one per row of ``plan``.

  Each batch: {'image': (b, S, S, 3) float32 BGR minus ``mean_bgr``, 'label':
  (b,) int32, 'regions', 'parsing': (b, S, S) uint8, 'five': (b, 5, 2),
  'points68': (b, 68, 2) float32 at size S, 'index': (b,) int64 (:data:`PAD`
  for padding), 'valid': (b,) bool, 'name': list of b str}, with b the
  plan's local batch size and S = ``image_size``.
  """
  slots = list(zip(plan.records.ravel().tolist(), plan.flips.ravel().tolist()))
  return (grain.MapDataset.source(slots)
          .map(_ReadExample(dataset, mean_bgr, image_size))
          .batch(plan.local_batch_size, batch_fn=_stack))


def iterate(batched: grain.MapDataset, *, workers: int = 0,
            prefetch: int = 2) -> grain.DatasetIterator:
  """A checkpointable iterator (``get_state`` / ``set_state``) over ``batched``.

  ``workers`` > 0 decodes in that many processes; otherwise ``prefetch``
  threads each assemble one batch ahead.
  """
  stream = batched.to_iter_dataset(grain.ReadOptions(num_threads=max(prefetch, 1),
                                                     prefetch_buffer_size=max(prefetch, 1)))
  if workers > 0:
    _parse_absl_flags()
    stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(stream)


def _parse_absl_flags() -> None:
  """grain reads an absl flag when it starts workers; a program that is no absl app never
  parsed its flags, so their defaults are taken as parsed."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def batches(dataset: FaceDataset, indices: Sequence[int], batch_size: int, *,
            mean_bgr: Sequence[float], seed: int = 0, epoch: int = 0, shuffle: bool = False,
            flip: bool = False, process_index: int = 0, process_count: int = 1,
            drop_remainder: bool = False, pad: bool = False, image_size: int = SIZE,
            workers: int = 0, prefetch: int = 2) -> Iterator[dict]:
  """One epoch of batches (see :func:`batch_dataset` for their contents).

  Args:
    batch_size: the global batch size; each process yields its
      ``batch_size // process_count`` rows of every batch.
    drop_remainder: drop a last, smaller batch (training).
    pad: pad the last batch to full size with rows whose 'valid' is False
      (fixed shapes for jit); otherwise a last batch is short.
    Other arguments as :func:`plan_batches` and :func:`iterate`.
  """
  if drop_remainder and pad:
    raise ValueError('drop_remainder and pad exclude each other')
  remainder = 'drop' if drop_remainder else 'pad' if pad else 'keep'
  plan = plan_batches(indices, batch_size, seed=seed, epochs=(epoch,), shuffle=shuffle,
                      flip=flip, process_index=process_index, process_count=process_count,
                      remainder=remainder)
  if not plan.steps:
    return
  stream = iterate(batch_dataset(dataset, plan, mean_bgr=mean_bgr, image_size=image_size),
                   workers=workers, prefetch=prefetch)
  for batch in stream:
    if remainder == 'keep' and not batch['valid'].all():
      keep = np.flatnonzero(batch['valid'])
      if not len(keep):
        continue
      batch = {k: ([v[i] for i in keep] if k == 'name' else v[keep]) for k, v in batch.items()}
    yield batch
