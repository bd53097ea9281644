"""The TFDS builder of planted traits on real photos (:mod:`gestaltxai.data.planted`).

Every photo is one identity, rendered unaffected and with each trait; an
image whose re-detected landmarks do not show its trait is dropped and
counted (``metadata['planted_checks']``), and a photo without a face drops
its identity. Beside the shared features each example holds ``identity``
(str), ``trait`` (str), ``strength``, ``planted_change``, ``measured_change``
and ``off_target`` (float32; :class:`gestaltxai.data.planted.PlantedFace`).
Folds are dealt over identities; ``hpo/<trait>.csv`` grade each trait's
images by strength, as the synthetic faces' do.
"""

from __future__ import annotations

import collections
import functools
import os
import pathlib
from typing import Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from gestaltxai.data import planted, staging
from gestaltxai.data.face_builder import FaceDatasetBuilder, write_hpo
from gestaltxai.data.folds import (DEFAULT_FOLDS, DEFAULT_SEED, check_class_sizes,
                                   check_num_folds, folds_from_parts)
from gestaltxai.data.schema import MetadataKey
from gestaltxai.data.detect import DETECTORS


#: Photo files the builder reads from a folder (searched recursively).
PHOTO_SUFFIXES = ('.jpg', '.jpeg', '.png')


def default_photos() -> pathlib.Path:
  """The FairFace sample shipped with the package (400 photos, CC BY 4.0; its SOURCE.md)."""
  return pathlib.Path(planted.__file__).parent / 'fairface400'


def find_photos(folder: str | os.PathLike) -> list[tuple[str, pathlib.Path]]:
  """(identity, path) of every photo under ``folder``, sorted; the identity is the path
  below the folder without its suffix, '/' written '-' (one photo, one person)."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f'no photo folder at {folder} (--photos: a folder of face photos)')
  photos = sorted(p for p in folder.rglob('*') if p.suffix.lower() in PHOTO_SUFFIXES)
  if not photos:
    raise FileNotFoundError(f'no photo ({", ".join(PHOTO_SUFFIXES)}) under {folder}')
  return [(str(p.relative_to(folder).with_suffix('')).replace(os.sep, '-'), p) for p in photos]


def identity_folds(identities: Sequence[str], num_folds: int, seed: int) -> np.ndarray:
  """(N, K) int8 per image: fold k tests part k, validates on part k + 1, trains on the rest.

  Parts are dealt over the distinct identities (shuffled with ``seed``), so every image of
  one person is in the same part: no person is in two splits of a fold.
  """
  people = sorted(set(identities))
  order = np.random.default_rng(seed).permutation(len(people))
  part_of = {people[i]: rank % num_folds for rank, i in enumerate(order)}
  return folds_from_parts(np.array([part_of[i] for i in identities]), num_folds)


class PlantedFaces(FaceDatasetBuilder):
  """Real face photos, each rendered unaffected and with each planted trait."""

  def __init__(self, *, photos: Optional[str | os.PathLike] = None,
               seed: int = DEFAULT_SEED, num_folds: int = DEFAULT_FOLDS,
               limit: Optional[int] = None, detector: str = 'auto', **kwargs):
    """
    Args:
      photos: a folder of face photos (searched recursively); None: the
        FairFace sample shipped with the package.
      seed: of the strengths and the folds.
      limit: use the first ``limit`` photos (sorted by identity) only.
      detector: dlib's detector for the photos (:func:`detect_landmarks`).
    """
    if detector not in DETECTORS:
      raise ValueError(f'detector must be one of {DETECTORS}, got {detector!r}')
    if limit is not None and limit < 1:
      raise ValueError(f'limit must be at least 1 photo, got {limit}')
    check_num_folds(num_folds)
    self._photos = pathlib.Path(photos) if photos is not None else default_photos()
    self._found = find_photos(self._photos)[:limit]
    if len(self._found) < num_folds:
      raise ValueError(f'{self._photos}: {len(self._found)} photos for {num_folds} folds; '
                       'each fold needs a person to test on (use more photos or fewer folds)')
    self._seed, self._detector = seed, detector
    super().__init__(num_folds=num_folds, classes=planted.TRAITS,
                     arguments={'seed': seed, 'limit': limit, 'detector': detector,
                                'strength_range': planted.STRENGTH_RANGE,
                                'min_recovered': planted.MIN_RECOVERED,
                                'max_off_target': planted.MAX_OFF_TARGET},
                     sources={'photos': self._photos}, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    info = super()._info()
    features = dict(info.features)
    features.update(identity=tfds.features.Tensor(shape=(), dtype=np.str_),
                    trait=tfds.features.Tensor(shape=(), dtype=np.str_),
                    **{key: tfds.features.Tensor(shape=(), dtype=np.float32)
                       for key in planted.PLANTED_FEATURES})
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=tfds.features.FeaturesDict(features),
                                 metadata=info.metadata)

  def _items(self):
    items = []
    for identity, path in self._found:
      content = staging.file_digest(path)
      for label, trait in enumerate(planted.TRAITS):
        strength = planted.trait_strength(self._seed, identity, trait)
        name = f'{identity}_{trait}'
        recipe = functools.partial(planted.planted_example, str(path), identity, trait,
                                   strength, self._detector, self.alignment)
        items.append(staging.Item(name, label, recipe, staging.digest(
            'planted', content, trait, strength, self._detector, self.alignment,
            self._arguments_digest())))
    return items

  def _arguments_digest(self) -> str:
    return staging.digest(planted.MIN_RECOVERED, planted.MAX_OFF_TARGET,
                          planted.BORDER_POINTS_PER_SIDE, planted.LATTICE_STEP)

  def _identity_of(self, item) -> str:
    return item.recipe.args[1]

  def _assign_folds(self, usable):
    check_class_sizes(collections.Counter(self._classes[item.label] for item in usable),
                       self._num_folds, f'{len(usable)} usable planted images')
    return identity_folds([self._identity_of(i) for i in usable], self._num_folds,
                                  self._seed)

  def _generate_examples(self, usable, folds, outcomes):
    for (key, example), item in zip(super()._generate_examples(usable, folds, outcomes), usable):
      example.update(identity=self._identity_of(item), trait=self._classes[item.label])
      yield key, example

  def _checks(self) -> dict:
    """{trait: {'kept', 'no_face', 'check_failed'}}: what the after-the-fact check did."""
    counts = {trait: collections.Counter() for trait in self._classes}
    kept = {item.name for item in self._prepared[0]}
    reasons = {s.name: s.reason for s in self.skipped}
    for item in self.items:
      trait = self._classes[item.label]
      if item.name in kept:
        counts[trait]['kept'] += 1
      elif 'PlantedCheckError' in reasons.get(item.name, ''):
        counts[trait]['check_failed'] += 1
      else:
        counts[trait]['no_face'] += 1
    return {trait: {k: c[k] for k in ('kept', 'no_face', 'check_failed')}
            for trait, c in counts.items()}

  def _extra_metadata(self):
    return {MetadataKey.SEED: self._seed, MetadataKey.PHOTOS: len(self._found),
            MetadataKey.STRENGTH_RANGE: list(planted.STRENGTH_RANGE),
            MetadataKey.TRAIT_REGIONS: {c: planted.TRAIT_REGIONS[c] for c in self._classes},
            MetadataKey.TRAIT_HPO: {c: planted.TRAIT_HPO[c] for c in self._classes},
            MetadataKey.PLANTED_CHECKS: self._checks()}

  def write_extras(self, directory: pathlib.Path) -> None:
    """``hpo/<trait>.csv``: each trait's images graded by strength (as the synthetic faces)."""
    usable = self._prepared[0]
    names = [item.name for item in usable]
    traits = [self._classes[item.label] for item in usable]
    strengths = [item.recipe.args[3] for item in usable]
    write_hpo(directory, names, traits, strengths)
