"""Reading prepared face datasets: random access, folds, batches for training and extraction.

No TensorFlow at run time: records come from ``tfds.data_source`` (array_record),
batches are NumPy, assembled by a background thread so the accelerator does
not wait. Device placement is the caller's (training and extraction code).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import pathlib
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from gestaltxai.data.builders import SPLIT, SPLITS
from gestaltxai.regions.maps import LAPA_FLIP

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
# Five points swap pairs under a horizontal flip: eyes, and mouth corners.
_FIVE_FLIP = np.array([1, 0, 2, 4, 3])


def find_dataset_dir(path: str | pathlib.Path) -> pathlib.Path:
  """The prepared dataset directory (holding dataset_info.json) at or under ``path``."""
  path = pathlib.Path(path)
  if (path / 'dataset_info.json').exists():
    return path
  found = sorted(p.parent for p in path.glob('**/dataset_info.json'))
  if len(found) != 1:
    raise FileNotFoundError(f'expected one prepared dataset under {path}, found {len(found)}'
                            + (f': {[str(p) for p in found]}' if found else ''))
  return found[0]


@dataclasses.dataclass
class FaceDataset:
  """A prepared face dataset: records by index, class names, folds and fold means."""

  directory: pathlib.Path

  @classmethod
  def open(cls, path: str | pathlib.Path) -> 'FaceDataset':
    return cls(find_dataset_dir(path))

  @functools.cached_property
  def builder(self):
    return tfds.builder_from_directory(str(self.directory))

  @functools.cached_property
  def source(self):
    return self.builder.as_data_source(SPLIT)

  @property
  def metadata(self) -> dict:
    return dict(self.builder.info.metadata)

  @property
  def classes(self) -> list[str]:
    return list(self.metadata['classes'])

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    return self.source[int(index)]

  @functools.cached_property
  def _index_table(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(folds (N, K) int8, labels (N,), names): read once, without keeping images."""
    folds, labels, names = [], [], []
    for i in range(len(self)):
      record = self[i]
      folds.append(record['folds'])
      labels.append(int(record['label']))
      names.append(_text(record['name']))
    return np.stack(folds), np.asarray(labels), names

  @property
  def labels(self) -> np.ndarray:
    return self._index_table[1]

  @property
  def names(self) -> list[str]:
    return self._index_table[2]

  def indices(self, fold: int, split: str) -> np.ndarray:
    """Record indices of ``split`` ('train', 'val', 'test') in fold ``fold`` (1-based)."""
    folds = self._index_table[0]
    if not 1 <= fold <= folds.shape[1]:
      raise ValueError(f'fold must be in 1..{folds.shape[1]}, got {fold}')
    return np.flatnonzero(folds[:, fold - 1] == SPLITS.index(split))

  def mean_bgr(self, fold: Optional[int]) -> np.ndarray:
    """The fold's training BGR mean; the VGGFace2 mean when ``fold`` is None."""
    if fold is None:
      return np.array(VGGFACE2_MEAN_BGR, np.float32)
    return np.array(self.metadata['fold_mean_bgr'][f'fold-{fold}'], np.float32)


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


def to_model_input(images_rgb: np.ndarray, mean_bgr: Sequence[float]) -> np.ndarray:
  """uint8 RGB (..., H, W, 3) -> float32 BGR minus the channel mean (VGGFace2)."""
  return images_rgb[..., ::-1].astype(np.float32) - np.asarray(mean_bgr, np.float32)


def batches(dataset: FaceDataset, indices: Sequence[int], batch_size: int, *,
            mean_bgr: Sequence[float], seed: int = 0, epoch: int = 0, shuffle: bool = False,
            flip: bool = False, process_index: int = 0, process_count: int = 1,
            drop_remainder: bool = False, prefetch: int = 2) -> Iterator[dict]:
  """Batches of model inputs, assembled ahead of use on a background thread.

  Args:
    indices: the records to read (for example ``dataset.indices(1, 'train')``).
    mean_bgr: subtracted from the BGR images (the fold's training mean).
    seed, epoch: the shuffle order and the flips are functions of both.
    shuffle: a new permutation every epoch.
    flip: a random horizontal flip per image (training).
    process_index, process_count: this host's share: every
      ``process_count``-th image of the (shuffled) order, so hosts read
      disjoint shards.
    drop_remainder: drop a last, smaller batch (training needs fixed shapes).

  Yields:
    {'image': (B, 224, 224, 3) float32, 'label': (B,) int32, 'regions',
    'parsing': (B, 224, 224) uint8, 'five': (B, 5, 2), 'points68': (B, 68, 2)
    float32, 'index': (B,) int64, 'name': list of str}.
  """
  order = np.asarray(indices, np.int64)
  rng = np.random.default_rng([seed, epoch])
  if shuffle:
    order = order[rng.permutation(len(order))]
  flips = rng.random(len(order)) < 0.5 if flip else np.zeros(len(order), bool)
  order, flips = order[process_index::process_count], flips[process_index::process_count]
  stops = range(0, len(order), batch_size)
  groups = [(order[s:s + batch_size], flips[s:s + batch_size]) for s in stops]
  if drop_remainder and groups and len(groups[-1][0]) < batch_size:
    groups.pop()

  def assemble(group):
    records = [flip_record(dataset[i]) if f else dataset[i] for i, f in zip(*group)]
    stack = lambda key: np.stack([r[key] for r in records])
    return {'image': to_model_input(stack('image'), mean_bgr),
            'label': stack('label').astype(np.int32), 'regions': stack('regions'),
            'parsing': stack('parsing'), 'five': stack('five'), 'points68': stack('points68'),
            'index': group[0], 'name': [_text(r['name']) for r in records]}

  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    pending = [pool.submit(assemble, g) for g in groups[:prefetch]]
    for next_group in groups[prefetch:] + [None] * min(prefetch, len(groups)):
      batch = pending.pop(0).result()
      if next_group is not None:
        pending.append(pool.submit(assemble, next_group))
      yield batch
