"""What a prepared face dataset holds: its examples' features, splits, files and metadata.

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

(224 is the ArcFace alignment; dlib's alignment stores 150 px maps.)

``metadata.json`` (:class:`MetadataKey`) records the classes, the split roles
(``split_roles``: which split trains, selects the epoch, is held out and is
annotated, see :mod:`gestaltxai.roles`), each fold's BGR channel mean over
its training images (as the reference computes them), every image that could
not be used with the reason (``skipped``), per-image warnings (several faces
in a photo, labels that differ only by case), how many faces each detector
found, what the dataset was built from (``build``: the builder, its arguments
and a fingerprint of its inputs, :class:`BuildKey`), and each image's name,
label and folds in record order (``index``), so they are read without
reading the records. Builders add their own keys (seeds, planted traits).
:func:`dataset_metadata` writes it; the functions below it read it.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from gestaltxai import roles

#: What a fold stores per image, by code: ``folds[k] == SPLITS.index('val')``.
SPLITS = ('train', 'val', 'test')
#: The one TFDS split; fold membership is a feature, so no image is stored twice.
TFDS_SPLIT = 'faces'

#: TFDS's files in a finished dataset folder: its info (written last, so a folder
#: holding it is complete), its features and its metadata (ours, :class:`MetadataKey`).
DATASET_INFO_FILE = 'dataset_info.json'
FEATURES_FILE = 'features.json'
METADATA_FILE = 'metadata.json'
#: A dataset's JSON files, each read before any record.
DATASET_JSON_FILES = (DATASET_INFO_FILE, FEATURES_FILE, METADATA_FILE)
#: The folder of HPO annotations in the reference's layout (``hpo/<class>.csv``).
HPO_FOLDER = 'hpo'
#: The name of the builder whose datasets follow the reference's split roles
#: (:class:`gestaltxai.data.sources.NihFaces`).
NIH_FACES_BUILDER = 'nih_faces'


def features(map_size: int, num_folds: int) -> tfds.features.FeaturesDict:
  """The features of every example (the table above) at ``map_size`` px with K folds."""
  maps = (map_size, map_size)
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(*maps, 3), dtype=np.uint8),
      'parsing': tfds.features.Tensor(shape=maps, dtype=np.uint8),
      'regions': tfds.features.Tensor(shape=maps, dtype=np.uint8),
      'five': tfds.features.Tensor(shape=(5, 2), dtype=np.float32),
      'points68': tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
      'detector': tfds.features.Tensor(shape=(), dtype=np.str_),
      'label': tfds.features.Tensor(shape=(), dtype=np.int64),
      'name': tfds.features.Tensor(shape=(), dtype=np.str_),
      'folds': tfds.features.Tensor(shape=(num_folds,), dtype=np.int8),
  })


class MetadataKey:
  """The keys of ``metadata.json``."""
  CLASSES = 'classes'                 # class names, by label
  FOLD_MEAN_BGR = 'fold_mean_bgr'     # {fold_key(k): [B, G, R]} over fold k's training images
  SKIPPED = 'skipped'                 # [{'name', 'reason'}] per image that could not be used
  WARNINGS = 'warnings'               # [{'name', 'warning'}]
  NUM_FOLDS = 'num_folds'
  SPLIT_ROLES = 'split_roles'         # roles.SplitRoles.to_dict()
  DETECTORS = 'detectors'             # {detector: faces it found}
  BUILD = 'build'                     # the identity (BuildKey) and where the inputs were
  INDEX = 'index'                     # {'names', 'labels', 'folds'} in record order
  # Written by some builders only.
  FOLD_SEED = 'fold_seed'             # folder: the seed of the stratified folds
  SEED = 'seed'                       # synthetic, planted: of the faces and the folds
  PER_CLASS = 'per_class'             # synthetic
  CONTROL = 'control'                 # synthetic: the class with no planted trait
  TRAIT_REGIONS = 'trait_regions'     # synthetic, planted: {class: region or None}
  TRAIT_HPO = 'trait_hpo'             # synthetic, planted: {class: HPO term or None}
  TRAIT_STRENGTH = 'trait_strength'   # synthetic: {name: strength}
  PHOTOS = 'photos'                   # planted: photos found
  STRENGTH_RANGE = 'strength_range'   # planted
  PLANTED_CHECKS = 'planted_checks'   # planted: {trait: {'kept', 'no_face', 'check_failed'}}


class BuildKey:
  """The keys of a build record (``metadata['build']``): the identity compared on reuse,
  and ``sources``, which is not compared (a moved folder with the same photos is the same
  dataset)."""
  BUILDER = 'builder'
  VERSION = 'version'
  ARGUMENTS = 'arguments'
  INPUTS = 'inputs'        # {LABELS: digest, IMAGES: digest}
  LABELS = 'labels'
  IMAGES = 'images'
  SOURCES = 'sources'


#: The keys of the index (``metadata['index']``): each image's name, label and folds.
_INDEX_NAMES, _INDEX_LABELS, _INDEX_FOLDS = 'names', 'labels', 'folds'


def fold_key(fold: int) -> str:
  """How fold ``fold`` (1-based) is named in the metadata: 'fold-1', ..."""
  return f'fold-{fold}'


def identity_record(builder: str, version: str, arguments: dict, labels_digest: str,
                    images_digest: str) -> dict:
  """What a dataset is built from (compared with a dataset already in ``data_dir``)."""
  return {BuildKey.BUILDER: builder, BuildKey.VERSION: version, BuildKey.ARGUMENTS: arguments,
          BuildKey.INPUTS: {BuildKey.LABELS: labels_digest, BuildKey.IMAGES: images_digest}}


def dataset_metadata(*, mean_bgr: dict[str, list[float]], skipped: list[dict],
                     warnings: list[dict], num_folds: int, split_roles: roles.SplitRoles,
                     detectors: Mapping[str, int], identity: dict, sources: dict,
                     extra: dict) -> dict:
  """The metadata a builder records (beside the classes, given when its info is made).

  Args:
    mean_bgr: :func:`gestaltxai.data.folds.fold_means_bgr`.
    skipped, warnings: {'name', 'reason'} and {'name', 'warning'} per entry.
    identity: :func:`identity_record`.
    sources: where the inputs were.
    extra: the builder's own keys (:class:`MetadataKey`).
  """
  return {MetadataKey.FOLD_MEAN_BGR: mean_bgr, MetadataKey.SKIPPED: skipped,
          MetadataKey.WARNINGS: warnings, MetadataKey.NUM_FOLDS: num_folds,
          MetadataKey.SPLIT_ROLES: split_roles.to_dict(),
          MetadataKey.DETECTORS: dict(sorted(detectors.items())),
          MetadataKey.BUILD: {**identity, BuildKey.SOURCES: sources}, **extra}


def index_record(names: Sequence[str], labels: Sequence[int], folds: np.ndarray) -> dict:
  """``metadata['index']``: each image's name, label and folds, in record order."""
  return {_INDEX_NAMES: list(names), _INDEX_LABELS: [int(v) for v in labels],
          _INDEX_FOLDS: np.asarray(folds, np.int8).tolist()}


# Reading.

def classes(metadata: Mapping) -> list[str]:
  return list(metadata[MetadataKey.CLASSES])


def fold_mean_bgr(metadata: Mapping, fold: int) -> list[float]:
  """Fold ``fold``'s (1-based) BGR mean over its training images."""
  return metadata[MetadataKey.FOLD_MEAN_BGR][fold_key(fold)]


def split_roles(metadata: Mapping) -> roles.SplitRoles:
  """A prepared dataset's split roles: recorded in its metadata, or (datasets prepared before
  the roles were recorded) its builder's."""
  if MetadataKey.SPLIT_ROLES in metadata:
    return roles.SplitRoles.from_dict(metadata[MetadataKey.SPLIT_ROLES])
  builder = (metadata.get(MetadataKey.BUILD) or {}).get(BuildKey.BUILDER)
  return roles.REFERENCE if builder == NIH_FACES_BUILDER else roles.CLEAN


def recorded_identity(metadata: Mapping) -> Optional[dict]:
  """The identity a dataset was built from (its build record without the sources); None
  for datasets made before it was recorded."""
  build_record = metadata.get(MetadataKey.BUILD)
  if build_record is None:
    return None
  return {k: v for k, v in build_record.items() if k != BuildKey.SOURCES}


def read_metadata(dataset_dir: str | os.PathLike) -> Optional[dict]:
  """``metadata.json`` of a dataset folder; None when it is missing or not JSON."""
  try:
    with open(pathlib.Path(dataset_dir) / METADATA_FILE) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def index(metadata: Mapping) -> Optional[tuple[np.ndarray, np.ndarray, list[str]]]:
  """(folds (N, K) int8, labels (N,), names) in record order; None for datasets made
  before the index was recorded (read them from the records)."""
  recorded = metadata.get(MetadataKey.INDEX)
  if recorded is None:
    return None
  num_folds = metadata[MetadataKey.NUM_FOLDS]
  folds = np.asarray(recorded[_INDEX_FOLDS], np.int8).reshape(-1, num_folds)
  return folds, np.asarray(recorded[_INDEX_LABELS], np.int64), list(recorded[_INDEX_NAMES])


def write_index(dataset_dir: str | os.PathLike, folds: np.ndarray, labels: Sequence[int],
                names: Sequence[str]) -> None:
  """Adds the index (:func:`index_record`) to a written dataset's ``metadata.json``, with
  TFDS's own writer (the record order is known only once TFDS has written the records)."""
  metadata = tfds.core.MetadataDict()
  metadata.load_metadata(str(dataset_dir))
  metadata[MetadataKey.INDEX] = index_record(names, labels, folds)
  metadata.save_metadata(str(dataset_dir))


def hpo_dir(dataset_dir: str | os.PathLike) -> pathlib.Path:
  """Where a dataset keeps HPO annotations in the reference's layout (synthetic faces do)."""
  return pathlib.Path(dataset_dir) / HPO_FOLDER


def complete_datasets(directory: pathlib.Path) -> list[pathlib.Path]:
  """The TFDS dataset folders (holding dataset_info.json) under ``directory``."""
  return sorted(p.parent for p in directory.glob(f'**/{DATASET_INFO_FILE}'))
