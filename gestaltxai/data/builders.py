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
detector       () str                 who found the landmarks: 'hog', 'cnn' or 'given'
label          () int64               class index into metadata['classes']
name           () str                 image file name
folds          (K,) int8              per fold: 0 train, 1 val, 2 test
=============  =====================  ===========================================

``metadata.json`` records the classes, the split roles (``split_roles``: which
split trains, selects the epoch, is held out and is annotated, see
:mod:`gestaltxai.roles`), each fold's BGR channel mean over its
training images (as the reference computes them), every image that could
not be used with the reason (``skipped``), per-image warnings (several
faces in a photo, labels that differ only by case), how many faces each
detector found, and what the dataset was built from (``build``: the
builder, its arguments and a fingerprint of its inputs).

:func:`build` runs a builder:

1. The builder has read and checked its tables when it was made (file, line
   and value in every message), before any photo is opened.
2. Its identity is compared with the dataset already in ``data_dir``: the
   same is reused, anything else is refused with what differs, unless
   ``overwrite``.
3. Photos are detected and aligned in worker processes over all cores, each
   result cached as it finishes (:mod:`gestaltxai.data.staging`): a stopped
   build continues where it stopped.
4. TFDS writes the array_record files from the cache in the staging folder
   and the finished dataset is moved into ``data_dir`` with one rename, so a
   dataset found there is always complete. TFDS orders examples by a hash
   of their names: the same inputs give the same bytes.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import csv
import dataclasses
import functools
import json
import os
import pathlib
import shutil
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from gestaltxai import paper, roles
from gestaltxai.data import examples, staging, synthetic, tables
from gestaltxai.data.align import ALIGNMENT_SIZES
from gestaltxai.data.detect import DETECTORS
# Re-exported: scripts align single photos with it.
from gestaltxai.data.examples import aligned_example  # noqa: F401  pylint: disable=unused-import

SIZE = examples.SIZE
SPLITS = ('train', 'val', 'test')
#: The one TFDS split; fold membership is a feature, so no image is stored twice.
SPLIT = 'faces'
NIH_CLASSES = paper.NIH_CLASSES
NIH_FOLDS = 5
DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
#: Fewest folds: fold k tests part k, validates on part k + 1 and trains on the rest.
MIN_FOLDS = 3
#: Fewest classes a classifier can be trained on.
MIN_CLASSES = 2
#: Where a TFDS build left its unfinished output (gestaltxai before 0.1 built in place).
_TFDS_INCOMPLETE = 'incomplete.*'
_INFO_FILE = 'dataset_info.json'


@dataclasses.dataclass
class Skipped:
  name: str
  reason: str


class DatasetMismatchError(ValueError):
  """``data_dir`` holds a dataset built from other arguments or inputs."""


def check_num_folds(num_folds: int) -> None:
  if num_folds < MIN_FOLDS:
    raise ValueError(f'folds must be at least {MIN_FOLDS} (one part tests, the next validates, '
                     f'the rest trains), got {num_folds}')


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


def fold_means_bgr(mean_rgb: np.ndarray, folds: np.ndarray) -> dict[str, list[float]]:
  """{'fold-k': [B, G, R]}: the mean of each training image's channel means.

  Args:
    mean_rgb: (N, 3) each image's RGB channel means.
    folds: (N, K) fold splits.
  """
  means = {}
  for k in range(folds.shape[1]):
    train = folds[:, k] == SPLITS.index('train')
    if train.any():
      means[f'fold-{k + 1}'] = [float(v) for v in mean_rgb[train].mean(0)[::-1]]
  return means


def _check_class_sizes(counts: dict[str, int], num_folds: int, where: str) -> None:
  """Every class has an image in every fold's test, validation and training part."""
  if len(counts) < MIN_CLASSES:
    raise ValueError(f'{where}: {len(counts)} class ({", ".join(map(repr, counts))}); '
                     f'a classifier needs at least {MIN_CLASSES}')
  small = {name: n for name, n in counts.items() if n < num_folds}
  if small:
    listed = ', '.join(f'{name!r} has {n}' for name, n in sorted(small.items()))
    raise ValueError(f'{where}: {listed}; each class needs at least {num_folds} images for '
                     f'{num_folds} folds (use fewer folds or leave the class out)')


class FaceDatasetBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
  """Shared features, checks, metadata and generation of the face datasets (one split)."""

  #: What each stored split does (recorded in the metadata as ``split_roles``).
  SPLIT_ROLES = roles.CLEAN

  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {
      '1.0.0': 'Aligned faces, parsing and region maps, fold assignments.',
      '1.1.0': "The detector that found each face; the build's arguments and inputs.",
      '1.2.0': 'Synthetic faces: trait strengths vary per face, with HPO annotations.',
  }

  def __init__(self, *, data_dir: str | os.PathLike, num_folds: int, classes: Sequence[str],
               arguments: dict, sources: Optional[dict] = None, progress: bool = True,
               file_format: str = 'array_record', alignment: str = 'arcface', **kwargs):
    """
    Args:
      data_dir: the folder the dataset goes to (``DATA``; TFDS's own layout
        below it).
      num_folds: folds recorded per example.
      classes: class names, by label index.
      arguments: what the subclass was asked for that shapes the data (compared
        on reuse; add every new option here).
      sources: where the inputs are (recorded, not compared: a moved folder
        with the same photos is the same dataset).
      progress: print progress and messages.
      alignment: 'arcface' (224 px, for the VGGFace2 ResNet-50) or 'dlib'
        (dlib's 150 px face chip, for its face ResNet); region maps follow.
    """
    check_num_folds(num_folds)
    if alignment not in ALIGNMENT_SIZES:
      raise ValueError(f'alignment must be one of {sorted(ALIGNMENT_SIZES)}, got {alignment!r}')
    self.alignment = alignment
    if alignment != 'arcface':  # recorded only when not the default: older datasets stay valid
      arguments = dict(arguments, alignment=alignment)
    self.target_dir = pathlib.Path(data_dir)
    self.staging = staging.Staging(self.target_dir)
    self._num_folds = num_folds
    self._classes = tuple(classes)
    self._arguments = dict(arguments, num_folds=num_folds)
    self._sources = {k: str(v) for k, v in (sources or {}).items()}
    self._progress = progress
    self.skipped: list[Skipped] = []
    #: {'name', 'warning'} per warning: the tables' (set by subclasses), then each photo's.
    self.table_warnings: list[dict] = []
    self.warnings: list[dict] = []
    self._prepared = None
    super().__init__(data_dir=str(self.staging.new_tfds_dir()), file_format=file_format,
                     **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    maps = (ALIGNMENT_SIZES[self.alignment],) * 2
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(*maps, 3), dtype=np.uint8),
            'parsing': tfds.features.Tensor(shape=maps, dtype=np.uint8),
            'regions': tfds.features.Tensor(shape=maps, dtype=np.uint8),
            'five': tfds.features.Tensor(shape=(5, 2), dtype=np.float32),
            'points68': tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
            'detector': tfds.features.Tensor(shape=(), dtype=np.str_),
            'label': tfds.features.Tensor(shape=(), dtype=np.int64),
            'name': tfds.features.Tensor(shape=(), dtype=np.str_),
            'folds': tfds.features.Tensor(shape=(self._num_folds,), dtype=np.int8),
        }),
        metadata=tfds.core.MetadataDict(classes=list(self._classes)),
    )

  # What a subclass provides.

  @abc.abstractmethod
  def _items(self) -> list[staging.Item]:
    """The photos to prepare, in a fixed order (cheap: recipes are run by :meth:`prepare`)."""

  def _assign_folds(self, usable: Sequence[staging.Item]) -> np.ndarray:
    """(N, K) folds of the usable items: stratified by label with the recorded seed."""
    _check_class_sizes(
        collections.Counter(self._classes[item.label] for item in usable), self._num_folds,
        f'{len(usable)} usable images')
    return stratified_folds([item.label for item in usable], self._num_folds,
                            self._arguments['seed'])

  def _extra_metadata(self) -> dict:
    return {}

  @property
  def _alignment_option(self) -> dict:
    """The alignment as a photo-digest option; absent for the default, so cached photos of
    datasets built before the option stay valid."""
    return {} if self.alignment == 'arcface' else {'alignment': self.alignment}

  def write_extras(self, directory: pathlib.Path) -> None:
    """Files a dataset carries beside its records, written into its folder before it is
    moved into place (the synthetic faces' HPO annotations)."""
    del directory

  # What the build does.

  @functools.cached_property
  def items(self) -> list[staging.Item]:
    return self._items()

  def identity(self) -> dict:
    """What the dataset is built from: compared with a dataset already in ``data_dir``."""
    return json.loads(json.dumps({
        'builder': self.name, 'version': str(self.version), 'arguments': self._arguments,
        'inputs': {
            'labels': staging.digest([(i.name, i.label, i.folds) for i in self.items]),
            'images': staging.digest([(i.name, i.digest) for i in self.items])},
    }, default=staging.jsonable))

  def prepare(self, workers: Optional[int] = None) -> None:
    """Detects and aligns every photo (cached), then assigns and checks the folds."""
    outcomes = staging.prepare_items(self.items, self.staging, workers=workers,
                                     progress=self._progress)
    usable, self.skipped, self.warnings = [], [], list(self.table_warnings)
    for item in self.items:
      outcome = outcomes.get(item.digest)
      if outcome is None:
        self.skipped.append(Skipped(item.name, 'FileNotFoundError: no such file'))
      elif not outcome.usable:
        self.skipped.append(Skipped(item.name, outcome.error))
      else:
        usable.append(item)
        self.warnings += [{'name': item.name, 'warning': w.removeprefix(f'{item.name}: ')}
                          for w in outcome.warnings]
    if not usable:
      reasons = '; '.join(f'{s.name}: {s.reason}' for s in self.skipped[:3])
      raise ValueError(f'no usable image among {len(self.items)} ({reasons})')
    try:
      folds = self._assign_folds(usable)
    except ValueError as err:
      raise ValueError(f'{err}; the {len(usable)} aligned images are kept in '
                       f'{self.staging.root} for the next run') from None
    self._prepared = (usable, folds, outcomes)

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._prepared is None:
      raise RuntimeError('prepare the builder with gestaltxai.data.builders.build(builder)')
    usable, folds, outcomes = self._prepared
    mean_rgb = np.array([outcomes[item.digest].mean_rgb for item in usable])
    detectors = collections.Counter(outcomes[item.digest].detector for item in usable)
    self.info.metadata.update(
        fold_mean_bgr=fold_means_bgr(mean_rgb, folds),
        skipped=[dataclasses.asdict(s) for s in self.skipped],
        warnings=self.warnings, num_folds=self._num_folds,
        split_roles=self.SPLIT_ROLES.to_dict(),
        detectors=dict(sorted(detectors.items())),
        build={**self.identity(), 'sources': self._sources},
        **self._extra_metadata())
    return {SPLIT: self._generate_examples(usable, folds, outcomes)}

  def _generate_examples(self, usable, folds, outcomes) -> Iterator[tuple[str, dict]]:
    for item, item_folds in zip(usable, folds):
      example = self.staging.read(item.digest)
      example.update(label=item.label, name=item.name, folds=np.asarray(item_folds, np.int8),
                     detector=outcomes[item.digest].detector)
      yield item.name, example

  # TFDS would print the staging folder; build() says where the dataset went.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass


def _photo_digest(path: pathlib.Path, **options) -> Optional[str]:
  content = staging.file_digest(path)
  return None if content is None else staging.digest('photo', content, options)


class NihFaces(FaceDatasetBuilder):
  """NIH-Faces in the layout the paper published: partitions.csv, images/, features/segmaps/.

  ``partitions.csv`` has ``image_name``, ``fold-1`` .. ``fold-5`` (train, val
  or test) and the RetinaFace points ``x1,y1 .. x5,y5``; the class is the
  image name before ``Slide``. Parsing maps in ``features/segmaps/`` (same
  file names) are warped with the photo; without one, dlib's 68 landmarks
  are rasterised instead.

  Split roles as the reference code: a fold's ``val`` part trains nothing,
  chooses the epoch and is the held-out part scored and explained for RQ1;
  ``test`` holds the HPO-annotated images (the same in every fold) for RQ2.
  """

  SPLIT_ROLES = roles.REFERENCE
  COLUMNS = ('image_name', *(f'fold-{k}' for k in range(1, NIH_FOLDS + 1)),
             *(f'{a}{i}' for i in range(1, 6) for a in 'xy'))

  def __init__(self, *, root: str | os.PathLike, detector: str = 'auto', **kwargs):
    if detector not in DETECTORS:
      raise ValueError(f'detector must be one of {DETECTORS}, got {detector!r}')
    self._root = pathlib.Path(root)
    self._detector = detector
    self._rows = self._read_partitions()
    super().__init__(num_folds=NIH_FOLDS, classes=NIH_CLASSES,
                     arguments={'detector': detector}, sources={'root': self._root}, **kwargs)

  def _read_partitions(self) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """(name, label, five (5, 2), folds (5,)) per row, every value checked."""
    path = self._root / 'partitions.csv'
    if not self._root.is_dir():
      raise FileNotFoundError(f'no NIH-Faces folder at {self._root}')
    if not path.exists():
      raise FileNotFoundError(f'no partitions.csv in {self._root}')
    rows = tables.read_csv(path, self.COLUMNS)
    tables.require_values(rows, self.COLUMNS, path, key='image_name')
    tables.require_unique(rows, 'image_name', path)
    parsed = []
    for row in rows:
      name = row.values['image_name']
      stem = name.split('Slide')[0]
      if stem not in NIH_CLASSES:
        raise ValueError(f'{path} line {row.line}: {name!r} names no NIH-Faces class (the class '
                         f'is the name before "Slide": one of {", ".join(NIH_CLASSES)})')
      folds = []
      for k in range(1, NIH_FOLDS + 1):
        split = row.values[f'fold-{k}']
        if split not in SPLITS:
          raise ValueError(f'{path} line {row.line}: fold-{k} is {split!r}, expected one of '
                           f'{", ".join(SPLITS)}')
        folds.append(SPLITS.index(split))
      five = []
      for i in range(1, 6):
        point = []
        for axis in 'xy':
          value = row.values[f'{axis}{i}']
          try:
            point.append(float(value))
          except ValueError:
            raise ValueError(f'{path} line {row.line}: {axis}{i} is {value!r}, '
                             'not a number') from None
        five.append(point)
      five = np.array(five)
      if not np.isfinite(five).all():
        raise ValueError(f'{path} line {row.line}: the five points of {name!r} are not finite')
      parsed.append((name, NIH_CLASSES.index(stem), five, np.array(folds, np.int8)))
    _check_given_folds(np.stack([p[3] for p in parsed]), str(path))
    return parsed

  def _items(self):
    items = []
    for name, label, five, folds in self._rows:
      photo = self._root / 'images' / name
      segmap = self._root / 'features' / 'segmaps' / name
      segmap = segmap if segmap.exists() else None
      content = _photo_digest(photo, five=five, detector=self._detector,
                              segmap=segmap and staging.file_digest(segmap),
                              **self._alignment_option)
      recipe = functools.partial(examples.photo_example, str(photo), name, five=five,
                                 segmap_path=segmap and str(segmap), detector=self._detector,
                                 alignment=self.alignment)
      items.append(staging.Item(name, label, recipe, content, folds))
    return items

  def _assign_folds(self, usable):
    folds = np.stack([item.folds for item in usable])
    _check_given_folds(folds, f'the {len(usable)} usable images')
    return folds


def _check_given_folds(folds: np.ndarray, where: str) -> None:
  for k in range(folds.shape[1]):
    for index, split in enumerate(SPLITS):
      if not (folds[:, k] == index).any():
        raise ValueError(f'{where}: fold-{k + 1} has no {split} image')


class FolderFaces(FaceDatasetBuilder):
  """A folder of photos and a CSV of labels (column ``file`` and a label column).

  Landmarks come from dlib; folds are stratified by label over the usable
  photos with a fixed seed, recorded per example. Labels are stripped of
  surrounding spaces, their case kept; labels that differ only by case or
  spaces are reported in the dataset's warnings.
  """

  FILE_COLUMN = 'file'

  def __init__(self, *, images: str | os.PathLike, labels: str | os.PathLike,
               label_column: str, num_folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED,
               detector: str = 'auto', **kwargs):
    if detector not in DETECTORS:
      raise ValueError(f'detector must be one of {DETECTORS}, got {detector!r}')
    check_num_folds(num_folds)
    self._images = pathlib.Path(images)
    if not self._images.is_dir():
      raise FileNotFoundError(f'no image folder at {self._images}')
    self._detector = detector
    rows = tables.read_csv(labels, (self.FILE_COLUMN, label_column))
    tables.require_values(rows, (self.FILE_COLUMN, label_column), labels, key=self.FILE_COLUMN)
    tables.require_unique(rows, self.FILE_COLUMN, labels)
    classes = sorted({row.values[label_column] for row in rows})
    table_warnings = [
        {'name': os.path.basename(labels),
         'warning': f'labels {", ".join(map(repr, group))} differ only by case or spaces; '
                    'they are separate classes'}
        for group in tables.similar_labels(classes)]
    _check_class_sizes(collections.Counter(row.values[label_column] for row in rows),
                       num_folds, str(labels))
    self._rows = [(row.values[self.FILE_COLUMN], classes.index(row.values[label_column]))
                  for row in rows]
    super().__init__(num_folds=num_folds, classes=classes,
                     arguments={'label_column': label_column, 'seed': seed,
                                'detector': detector},
                     sources={'images': self._images, 'labels': labels}, **kwargs)
    self.table_warnings = table_warnings

  def _items(self):
    items = []
    for name, label in self._rows:
      photo = self._images / name
      recipe = functools.partial(examples.photo_example, str(photo), name,
                                 detector=self._detector, alignment=self.alignment)
      items.append(staging.Item(name, label, recipe,
                                _photo_digest(photo, detector=self._detector,
                                              **self._alignment_option)))
    if all(item.digest is None for item in items):
      raise FileNotFoundError(f'none of the {len(items)} photos listed is in {self._images} '
                              f'(first: {items[0].name})')
    return items

  def _extra_metadata(self):
    return {'fold_seed': self._arguments['seed']}


class SyntheticFaces(FaceDatasetBuilder):
  """Synthetic faces with planted traits (:mod:`gestaltxai.data.synthetic`).

  Each face is ``synthetic.synthetic_face(seed, class, index)``; a new
  option of the faces goes into ``arguments`` (so a dataset built without it
  is not reused) and into :meth:`_recipe`.
  """

  def __init__(self, *, classes: Sequence[str] = tuple(synthetic.TRAITS), per_class: int = 40,
               seed: int = DEFAULT_SEED, num_folds: int = DEFAULT_FOLDS, **kwargs):
    classes = tuple(classes)
    unknown = sorted(set(classes) - set(synthetic.TRAITS))
    if unknown:
      raise ValueError(f'unknown synthetic classes {unknown}; choose from '
                       f'{sorted(synthetic.TRAITS)}')
    repeated = sorted(c for c, n in collections.Counter(classes).items() if n > 1)
    if repeated:
      raise ValueError(f'synthetic class {repeated[0]!r} is listed twice')
    check_num_folds(num_folds)
    _check_class_sizes({c: per_class for c in classes}, num_folds, 'synthetic faces')
    self._per_class, self._seed = per_class, seed
    super().__init__(num_folds=num_folds, classes=classes,
                     arguments={'classes': classes, 'per_class': per_class, 'seed': seed},
                     **kwargs)

  def _recipe(self, trait: str, index: int):
    return functools.partial(examples.synthetic_example, self._seed, trait, index,
                             **self._alignment_option)

  def _items(self):
    model = staging.digest(*synthetic.shape_model().values())
    items = []
    for label, trait in enumerate(self._classes):
      for index in range(self._per_class):
        recipe = self._recipe(trait, index)
        items.append(staging.Item(f'{trait}_{index:05d}', label, recipe,
                                  staging.digest('synthetic', model, recipe.args, recipe.keywords)))
    return items

  def _extra_metadata(self):
    # The control class (the stats' default --control) is the one with no planted trait.
    control = next((c for c in self._classes if synthetic.TRAIT_REGIONS[c] is None), None)
    return {'seed': self._seed, 'per_class': self._per_class, 'control': control,
            'trait_regions': {c: synthetic.TRAIT_REGIONS[c] for c in self._classes},
            'trait_hpo': {c: synthetic.TRAIT_HPO[c] for c in self._classes},
            'trait_strength': dict(zip(*self._strengths()[:2]))}

  def _strengths(self) -> tuple[list[str], list[float], list[str]]:
    """(names, trait strengths, classes) of the faces the build keeps."""
    usable = self._prepared[0]
    # Each item's recipe is synthetic_example(seed, trait, index).
    strengths = [synthetic.trait_strength(*item.recipe.args) for item in usable]
    return ([item.name for item in usable], strengths,
            [self._classes[item.label] for item in usable])

  def write_extras(self, directory: pathlib.Path) -> None:
    """``hpo/<class>.csv``: annotations graded by trait strength (:func:`hpo_dir`)."""
    names, strengths, traits = self._strengths()
    write_hpo(directory, names, traits, strengths)


def write_hpo(directory: pathlib.Path, names: Sequence[str], traits: Sequence[str],
              strengths: Sequence[float]) -> None:
  """``hpo/<trait>.csv`` in ``directory``: each trait's images graded by strength
  (:func:`gestaltxai.data.synthetic.hpo_annotations`)."""
  folder = hpo_dir(directory)
  folder.mkdir(exist_ok=True)
  for trait, rows in synthetic.hpo_annotations(names, traits, strengths).items():
    with open(folder / f'{trait}.csv', 'w', newline='', encoding='utf-8') as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)


def split_roles(metadata: dict) -> roles.SplitRoles:
  """A prepared dataset's split roles: recorded in its metadata, or (datasets prepared before
  the roles were recorded) its builder's."""
  if 'split_roles' in metadata:
    return roles.SplitRoles.from_dict(metadata['split_roles'])
  builder = (metadata.get('build') or {}).get('builder')
  return roles.REFERENCE if builder == NihFaces.name else roles.CLEAN


def hpo_dir(dataset_dir: str | os.PathLike) -> pathlib.Path:
  """Where a dataset keeps HPO annotations in the reference's layout (synthetic faces do)."""
  return pathlib.Path(dataset_dir) / 'hpo'


def complete_datasets(directory: pathlib.Path) -> list[pathlib.Path]:
  """The TFDS dataset folders (holding dataset_info.json) under ``directory``."""
  return sorted(p.parent for p in directory.glob(f'**/{_INFO_FILE}'))


def _recorded_identity(dataset_dir: pathlib.Path) -> Optional[dict]:
  try:
    with open(dataset_dir / 'metadata.json') as f:
      build_record = json.load(f).get('build')
  except (OSError, ValueError):
    return None
  if build_record is None:
    return None
  return {k: v for k, v in build_record.items() if k != 'sources'}


def _differences(old: Optional[dict], new: dict) -> list[str]:
  """What differs between two identities, in words."""
  if old is None:
    return ['it records no arguments or inputs (made by an earlier gestaltxai)']
  found = [f'{key} {old.get(key)} -> {new[key]}' for key in ('builder', 'version')
           if old.get(key) != new[key]]
  if found:
    return found
  old_args, new_args = old.get('arguments', {}), new['arguments']
  found += [f'{key} {old_args.get(key)!r} -> {new_args.get(key)!r}'
            for key in sorted(set(old_args) | set(new_args))
            if old_args.get(key) != new_args.get(key)]
  if not found:  # other arguments make other inputs; name the inputs only when they are the cause
    found += [f'the {key} differ' for key in sorted(new['inputs'])
              if old.get('inputs', {}).get(key) != new['inputs'][key]]
  return found


def _remove_tfds_leftovers(directory: pathlib.Path) -> None:
  """TFDS's unfinished output under ``directory`` from builds made in place (before 1.1.0)."""
  for leftover in directory.glob(f'*/{_TFDS_INCOMPLETE}'):
    if leftover.is_dir():
      shutil.rmtree(leftover)


@contextlib.contextmanager
def _tfds_progress(enabled: bool):
  """TFDS's own progress bars on or off for one build, as they were afterwards (TFDS keeps
  the switch in a module global that has no getter)."""
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=import-outside-toplevel
  before = tqdm_utils._active  # pylint: disable=protected-access
  tfds.display_progress_bar(enabled)
  try:
    yield
  finally:
    tfds.display_progress_bar(before)


def build(builder: FaceDatasetBuilder, *, overwrite: bool = False,
          workers: Optional[int] = None,
          log: Optional[Callable[[str], None]] = None) -> pathlib.Path:
  """Prepares a dataset (array_record, no TensorFlow) and returns its directory.

  Args:
    builder: what to build; its ``data_dir`` is where the dataset goes.
    overwrite: replace a dataset in ``data_dir`` built from anything else.
    workers: processes that detect and align photos; None: every core;
      0: this process.
    log: where the build's messages go (reuse, the written directory); None:
      ``print`` when the builder shows progress, else nowhere.

  Returns:
    The dataset's directory (``data_dir/<builder>/<version>``).

  Raises:
    DatasetMismatchError: ``data_dir`` holds a dataset built from other
      arguments or inputs, and ``overwrite`` is False; the message says what
      differs.
    ValueError, OSError: bad inputs (before any photo is processed), or no
      usable photo; work already done stays in the staging folder.
  """
  target = builder.target_dir
  target.mkdir(parents=True, exist_ok=True)
  if log is None:
    log = print if builder._progress else lambda _: None  # pylint: disable=protected-access
  with staging.exclusive(target):
    _remove_tfds_leftovers(target)
    identity = builder.identity()
    existing = complete_datasets(target)
    if existing and not overwrite:
      if len(existing) > 1:
        raise DatasetMismatchError(
            f'{target} holds {len(existing)} datasets ({", ".join(map(str, existing))}); '
            'replace them with --overwrite (overwrite=True) or choose another data folder')
      differences = _differences(_recorded_identity(existing[0]), identity)
      if not differences:
        log(f'reusing the dataset in {existing[0]}: built from the same arguments and inputs')
        return existing[0]
      raise DatasetMismatchError(
          f'{target} holds a dataset built from something else: {"; ".join(differences)}. '
          'Replace it with --overwrite (overwrite=True) or choose another data folder')
    builder.staging.clean_leftovers()
    builder.prepare(workers)
    with _tfds_progress(builder._progress):  # pylint: disable=protected-access
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    built = pathlib.Path(builder.data_dir)
    builder.write_extras(built)
    final = target / builder.name / built.name
    for old in existing:
      shutil.rmtree(old)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(built, final)
    builder.staging.remove()
  log(f'dataset written to {final}')
  return final
