"""The three sources of face datasets: NIH-Faces as published, labelled photos, synthetic faces.

Each is a :class:`gestaltxai.data.face_builder.FaceDatasetBuilder` that reads
and checks its inputs when it is made (file, line and value in every
message), before any photo is opened; :func:`gestaltxai.data.build.build`
runs it. The planted traits on real photos are
:mod:`gestaltxai.data.planted_faces`.
"""

from __future__ import annotations

import collections
import functools
import os
import pathlib
from typing import Sequence

import numpy as np

from gestaltxai import paper, roles
from gestaltxai.data import examples, staging, synthetic, tables
from gestaltxai.data.detect import DETECTORS
from gestaltxai.data.face_builder import FaceDatasetBuilder, photo_digest, write_hpo
from gestaltxai.data.folds import (DEFAULT_FOLDS, DEFAULT_SEED, check_class_sizes,
                                   check_given_folds, check_num_folds)
from gestaltxai.data.schema import NIH_FACES_BUILDER, SPLITS, MetadataKey

NIH_CLASSES = paper.NIH_CLASSES
NIH_FOLDS = 5


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

  name = NIH_FACES_BUILDER  # split_roles() knows its datasets by this name
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
    check_given_folds(np.stack([p[3] for p in parsed]), str(path))
    return parsed

  def _items(self):
    items = []
    for name, label, five, folds in self._rows:
      photo = self._root / 'images' / name
      segmap = self._root / 'features' / 'segmaps' / name
      segmap = segmap if segmap.exists() else None
      content = photo_digest(photo, five=five, detector=self._detector,
                              segmap=segmap and staging.file_digest(segmap),
                              **self._alignment_option)
      recipe = functools.partial(examples.photo_example, str(photo), name, five=five,
                                 segmap_path=segmap and str(segmap), detector=self._detector,
                                 alignment=self.alignment)
      items.append(staging.Item(name, label, recipe, content, folds))
    return items

  def _assign_folds(self, usable):
    folds = np.stack([item.folds for item in usable])
    check_given_folds(folds, f'the {len(usable)} usable images')
    return folds


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
    check_class_sizes(collections.Counter(row.values[label_column] for row in rows),
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
                                photo_digest(photo, detector=self._detector,
                                              **self._alignment_option)))
    if all(item.digest is None for item in items):
      raise FileNotFoundError(f'none of the {len(items)} photos listed is in {self._images} '
                              f'(first: {items[0].name})')
    return items

  def _extra_metadata(self):
    return {MetadataKey.FOLD_SEED: self._arguments['seed']}


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
    check_class_sizes({c: per_class for c in classes}, num_folds, 'synthetic faces')
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
    return {MetadataKey.SEED: self._seed, MetadataKey.PER_CLASS: self._per_class,
            MetadataKey.CONTROL: control,
            MetadataKey.TRAIT_REGIONS: {c: synthetic.TRAIT_REGIONS[c] for c in self._classes},
            MetadataKey.TRAIT_HPO: {c: synthetic.TRAIT_HPO[c] for c in self._classes},
            MetadataKey.TRAIT_STRENGTH: dict(zip(*self._strengths()[:2]))}

  def _strengths(self) -> tuple[list[str], list[float], list[str]]:
    """(names, trait strengths, classes) of the faces the build keeps."""
    usable = self._prepared[0]
    # Each item's recipe is synthetic_example(seed, trait, index).
    strengths = [synthetic.trait_strength(*item.recipe.args) for item in usable]
    return ([item.name for item in usable], strengths,
            [self._classes[item.label] for item in usable])

  def write_extras(self, directory: pathlib.Path) -> None:
    """``hpo/<class>.csv``: annotations graded by trait strength
    (:func:`gestaltxai.data.schema.hpo_dir`)."""
    names, strengths, traits = self._strengths()
    write_hpo(directory, names, traits, strengths)
