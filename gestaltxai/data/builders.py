"""TFDS builders of aligned face datasets, readable without TensorFlow.

Features are plain ``Tensor``s stored as ``array_record``, read back with
random access through ``tfds.data_source`` (see
:mod:`gestaltxai.data.pipeline`). Every example holds:

=============  =====================  ===========================================
feature        shape, dtype           meaning
=============  =====================  ===========================================
image          (224, 224, 3) uint8    aligned photo, RGB
parsing        (224, 224) uint8       LaPa labels (given maps warped, or landmark parsing)
regions        (224, 224) uint8       reference RQ1 regions: 0 none, 1 eye, 2 nose, 3 mouth
five           (5, 2) float32         the five alignment points, aligned
points68       (68, 2) float32        dlib's 68 landmarks, aligned (NaN when not run)
label          () int64               class index into metadata['classes']
name           () str                 image file name
folds          (K,) int8              per fold: 0 train, 1 val, 2 test
=============  =====================  ===========================================

The builders process every photo before writing, so the dataset's metadata
(``metadata.json``) records the classes, the per-fold BGR channel means over
each fold's training images (as the reference computes them), and every
image that could not be used, with the reason. A broken image never stops a
build.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import os
import pathlib
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from gestaltxai.data import synthetic
from gestaltxai.data.align import align, transform_points, warp_affine
from gestaltxai.data.detect import detect_landmarks, five_from_68
from gestaltxai.regions.landmarks import landmark_parsing
from gestaltxai.regions.maps import reference_region_map

SIZE = 224
SPLITS = ('train', 'val', 'test')
#: The one TFDS split; fold membership is a feature, so no image is stored twice.
SPLIT = 'faces'
NIH_CLASSES = ('22q11DS', 'Angelman', 'BWS', 'CdLS', 'Down', 'KS', 'NS', 'PWS', 'RSTS1',
               'Unaffected', 'WHS', 'WS')
NIH_FOLDS = 5
DEFAULT_FOLDS = 5
DEFAULT_SEED = 0


@dataclasses.dataclass
class Skipped:
  name: str
  reason: str


def _read_rgb(path: pathlib.Path) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def aligned_example(rgb: np.ndarray, name: str, *, five: Optional[np.ndarray] = None,
                    segmap: Optional[np.ndarray] = None) -> dict:
  """Aligns one photo and derives its maps; raises with the reason it cannot be used.

  Args:
    rgb: (H, W, 3) uint8 photo.
    name: its file name, for messages.
    five: the five alignment points in the photo; dlib's when None.
    segmap: a LaPa parsing map of the photo; landmark parsing when None.
  """
  points68 = np.full((68, 2), np.nan)
  if five is None or segmap is None:
    landmarks = detect_landmarks(rgb, name=name)
    points68 = landmarks.points68
    five = landmarks.five if five is None else five
  image, matrix = align(rgb, five, SIZE)
  aligned68 = transform_points(points68, matrix)
  if segmap is not None:
    parsing = warp_affine(segmap.astype(np.uint8), matrix, SIZE, order=0)
  else:
    parsing = landmark_parsing(aligned68, SIZE)
  return {'image': image, 'parsing': parsing, 'five': transform_points(five, matrix),
          'points68': aligned68}


def _finish(example: dict, label: int, name: str, folds: Sequence[int]) -> dict:
  example = dict(example)
  example['regions'] = reference_region_map(example['parsing']).astype(np.uint8)
  example.update(label=label, name=name, folds=np.asarray(folds, np.int8))
  for key in ('five', 'points68'):
    example[key] = np.asarray(example[key], np.float32)
  return example


def stratified_folds(labels: Sequence[int], num_folds: int, seed: int) -> np.ndarray:
  """(N, K) int8: fold k tests part k, validates on part k + 1, trains on the rest.

  Parts are stratified by label: each class is shuffled with ``seed`` and
  dealt round-robin over the K parts.
  """
  labels = np.asarray(labels)
  part = np.zeros(len(labels), int)
  rng = np.random.default_rng(seed)
  for value in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == value))
    part[members] = (np.arange(len(members)) + rng.integers(num_folds)) % num_folds
  folds = np.zeros((len(labels), num_folds), np.int8)
  for k in range(num_folds):
    folds[part == k, k] = SPLITS.index('test')
    folds[part == (k + 1) % num_folds, k] = SPLITS.index('val')
  return folds


def fold_means_bgr(examples: Sequence[dict], num_folds: int) -> dict[str, list[float]]:
  """{'fold-k': [B, G, R]}: the mean of each training image's channel means."""
  means = {}
  for k in range(num_folds):
    per_image = [e['image'].reshape(-1, 3).mean(0)[::-1] for e in examples
                 if e['folds'][k] == SPLITS.index('train')]
    if per_image:
      means[f'fold-{k + 1}'] = [float(v) for v in np.mean(per_image, axis=0)]
  return means


class FaceDatasetBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
  """Shared features, metadata and generation of the face datasets (one split, 'faces')."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Aligned faces, parsing and region maps, fold assignments.'}

  def __init__(self, *, num_folds: int, classes: Sequence[str], progress: bool = True,
               **kwargs):
    self._num_folds = num_folds
    self._classes = tuple(classes)
    self._progress = progress
    self.skipped: list[Skipped] = []
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    maps = (SIZE, SIZE)
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(*maps, 3), dtype=np.uint8),
            'parsing': tfds.features.Tensor(shape=maps, dtype=np.uint8),
            'regions': tfds.features.Tensor(shape=maps, dtype=np.uint8),
            'five': tfds.features.Tensor(shape=(5, 2), dtype=np.float32),
            'points68': tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
            'label': tfds.features.Tensor(shape=(), dtype=np.int64),
            'name': tfds.features.Tensor(shape=(), dtype=np.str_),
            'folds': tfds.features.Tensor(shape=(self._num_folds,), dtype=np.int8),
        }),
        metadata=tfds.core.MetadataDict(classes=list(self._classes)),
    )

  @abc.abstractmethod
  def _sources(self) -> list:
    """The items to process, one per photo."""

  @abc.abstractmethod
  def _process(self, item) -> dict:
    """One item -> finished example; raises with the reason it is unusable."""

  def _split_generators(self, dl_manager):
    del dl_manager
    items = self._sources()
    examples = []
    progress = tfds.core.utils.tqdm(items, desc='aligning faces', unit='image',
                                    disable=not self._progress)
    for item in progress:
      try:
        examples.append(self._process(item))
      # Unreadable or truncated file, no face, a missing part, dlib refusing the input.
      except (OSError, ValueError, SyntaxError, RuntimeError) as err:
        name = item[0] if isinstance(item, tuple) else str(item)
        self.skipped.append(Skipped(str(name), f'{type(err).__name__}: {err}'))
    if not examples:
      raise ValueError(f'no usable image among {len(items)}: {self.skipped[:3]}')
    self.info.metadata['fold_mean_bgr'] = fold_means_bgr(examples, self._num_folds)
    self.info.metadata['skipped'] = [dataclasses.asdict(s) for s in self.skipped]
    self.info.metadata['num_folds'] = self._num_folds
    return {SPLIT: self._generate_examples(examples)}

  def _generate_examples(self, examples: Iterable[dict]):
    for example in examples:
      yield example['name'], example


class NihFaces(FaceDatasetBuilder):
  """NIH-Faces in the layout the paper published: partitions.csv, images/, features/segmaps/.

  ``partitions.csv`` has ``image_name``, ``fold-1`` .. ``fold-5`` (train, val
  or test) and the RetinaFace points ``x1,y1 .. x5,y5``; the class is the
  image name before ``Slide``. Parsing maps in ``features/segmaps/`` (same
  file names) are warped with the photo; without one, dlib's 68 landmarks
  are rasterised instead.
  """

  def __init__(self, *, root: str | os.PathLike, **kwargs):
    self._root = pathlib.Path(root)
    super().__init__(num_folds=NIH_FOLDS, classes=NIH_CLASSES, **kwargs)

  def _sources(self):
    path = self._root / 'partitions.csv'
    if not path.exists():
      raise FileNotFoundError(f'no partitions.csv in {self._root}')
    with open(path, newline='') as f:
      rows = list(csv.DictReader(f))
    needed = {'image_name', *(f'fold-{k}' for k in range(1, NIH_FOLDS + 1)),
              *(f'{a}{i}' for i in range(1, 6) for a in 'xy')}
    missing = needed - set(rows[0] if rows else ())
    if missing:
      raise ValueError(f'{path}: missing columns {sorted(missing)}')
    return [(row['image_name'], row) for row in rows]

  def _process(self, item):
    name, row = item
    stem = name.split('Slide')[0]
    if stem not in NIH_CLASSES:
      raise ValueError(f'class {stem!r} of {name} is not an NIH-Faces class')
    try:
      five = np.array([[float(row[f'x{i}']), float(row[f'y{i}'])] for i in range(1, 6)])
      folds = [SPLITS.index(row[f'fold-{k}'].strip()) for k in range(1, NIH_FOLDS + 1)]
    except ValueError as err:
      raise ValueError(f'{name}: bad partitions.csv row ({err})') from err
    rgb = _read_rgb(self._root / 'images' / name)
    segmap_path = self._root / 'features' / 'segmaps' / name
    segmap = np.asarray(Image.open(segmap_path)) if segmap_path.exists() else None
    example = aligned_example(rgb, name, five=five, segmap=segmap)
    return _finish(example, NIH_CLASSES.index(stem), name, folds)


class FolderFaces(FaceDatasetBuilder):
  """A folder of photos and a CSV of labels (column ``file`` and a label column).

  Landmarks come from dlib; folds are stratified by label with a fixed seed,
  recorded per example.
  """

  def __init__(self, *, images: str | os.PathLike, labels: str | os.PathLike,
               label_column: str, num_folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED,
               **kwargs):
    self._images = pathlib.Path(images)
    with open(labels, newline='') as f:
      rows = list(csv.DictReader(f))
    if not rows or 'file' not in rows[0] or label_column not in rows[0]:
      raise ValueError(f'{labels}: needs columns file and {label_column!r}')
    classes = sorted({row[label_column] for row in rows})
    self._rows = [(row['file'], classes.index(row[label_column])) for row in rows]
    self._folds = stratified_folds([label for _, label in self._rows], num_folds, seed)
    self._seed = seed
    super().__init__(num_folds=num_folds, classes=classes, **kwargs)

  def _sources(self):
    self.info.metadata['fold_seed'] = self._seed
    return [(name, label, folds) for (name, label), folds in zip(self._rows, self._folds)]

  def _process(self, item):
    name, label, folds = item
    rgb = _read_rgb(self._images / name)
    return _finish(aligned_example(rgb, name), label, name, folds)


class SyntheticFaces(FaceDatasetBuilder):
  """Synthetic faces with planted traits (:mod:`gestaltxai.data.synthetic`)."""

  def __init__(self, *, classes: Sequence[str] = tuple(synthetic.TRAITS), per_class: int = 40,
               seed: int = DEFAULT_SEED, num_folds: int = DEFAULT_FOLDS, **kwargs):
    unknown = set(classes) - set(synthetic.TRAITS)
    if unknown:
      raise ValueError(f'unknown synthetic classes {sorted(unknown)}; '
                       f'choose from {sorted(synthetic.TRAITS)}')
    self._per_class, self._seed = per_class, seed
    labels = [c for c in range(len(classes)) for _ in range(per_class)]
    self._folds = stratified_folds(labels, num_folds, seed)
    super().__init__(num_folds=num_folds, classes=classes, **kwargs)

  def _sources(self):
    self.info.metadata.update(seed=self._seed, per_class=self._per_class,
                              trait_regions={c: synthetic.TRAIT_REGIONS[c] for c in self._classes})
    return [(f'{c}_{i:05d}', label, i, self._folds[label * self._per_class + i])
            for label, c in enumerate(self._classes) for i in range(self._per_class)]

  def _process(self, item):
    name, label, index, folds = item
    face = synthetic.synthetic_face(self._seed, self._classes[label], index)
    example = {'image': face.image, 'parsing': face.parsing,
               'five': five_from_68(face.points68), 'points68': face.points68}
    return _finish(example, label, name, folds)


def build(builder: FaceDatasetBuilder) -> pathlib.Path:
  """Prepares a dataset (array_record, no TensorFlow) and returns its directory."""
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return pathlib.Path(builder.data_dir)
