"""The TFDS builder all face datasets share: checks, staged photos, the examples and metadata.

A subclass (:mod:`gestaltxai.data.sources`,
:mod:`gestaltxai.data.planted_faces`) lists its photos (:meth:`_items`) and
may assign its own folds; :func:`gestaltxai.data.build.build` runs it.
"""

from __future__ import annotations

import abc
import collections
import csv
import dataclasses
import functools
import json
import os
import pathlib
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from gestaltxai import roles
from gestaltxai.data import schema, staging, synthetic
from gestaltxai.data.align import ALIGNMENT_SIZES
from gestaltxai.data.folds import (check_class_sizes, check_num_folds, fold_means_bgr,
                                   stratified_folds)
from gestaltxai.data.schema import MetadataKey

#: The alignment of datasets that do not record one (the VGGFace2 ResNet-50's).
DEFAULT_ALIGNMENT = 'arcface'


@dataclasses.dataclass
class Skipped:
  name: str
  reason: str


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
               file_format: str = 'array_record', alignment: str = DEFAULT_ALIGNMENT,
               **kwargs):
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
    # Recorded only when not the default: datasets built before the option stay valid.
    if alignment != DEFAULT_ALIGNMENT:
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
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=schema.features(ALIGNMENT_SIZES[self.alignment], self._num_folds),
        metadata=tfds.core.MetadataDict({MetadataKey.CLASSES: list(self._classes)}),
    )

  # What a subclass provides.

  @abc.abstractmethod
  def _items(self) -> list[staging.Item]:
    """The photos to prepare, in a fixed order (cheap: recipes are run by :meth:`prepare`)."""

  def _assign_folds(self, usable: Sequence[staging.Item]) -> np.ndarray:
    """(N, K) folds of the usable items: stratified by label with the recorded seed."""
    check_class_sizes(
        collections.Counter(self._classes[item.label] for item in usable), self._num_folds,
        f'{len(usable)} usable images')
    return stratified_folds([item.label for item in usable], self._num_folds,
                            self._arguments['seed'])

  def _extra_metadata(self) -> dict:
    """The subclass's own metadata (:class:`gestaltxai.data.schema.MetadataKey`)."""
    return {}

  @property
  def _alignment_option(self) -> dict:
    """The alignment as a photo-digest option; absent for the default, so cached photos of
    datasets built before the option stay valid."""
    return {} if self.alignment == DEFAULT_ALIGNMENT else {'alignment': self.alignment}

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
    return json.loads(json.dumps(schema.identity_record(
        self.name, str(self.version), self._arguments,
        labels_digest=staging.digest([(i.name, i.label, i.folds) for i in self.items]),
        images_digest=staging.digest([(i.name, i.digest) for i in self.items])),
        default=staging.jsonable))

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
      raise RuntimeError('prepare the builder with gestaltxai.data.build.build(builder)')
    usable, folds, outcomes = self._prepared
    mean_rgb = np.array([outcomes[item.digest].mean_rgb for item in usable])
    self.info.metadata.update(schema.dataset_metadata(
        mean_bgr=fold_means_bgr(mean_rgb, folds),
        skipped=[dataclasses.asdict(s) for s in self.skipped],
        warnings=self.warnings, num_folds=self._num_folds, split_roles=self.SPLIT_ROLES,
        detectors=collections.Counter(outcomes[item.digest].detector for item in usable),
        identity=self.identity(), sources=self._sources, extra=self._extra_metadata()))
    return {schema.TFDS_SPLIT: self._generate_examples(usable, folds, outcomes)}

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


def photo_digest(path: pathlib.Path, **options) -> Optional[str]:
  """The cache key of a photo prepared with ``options``; None when it is missing."""
  content = staging.file_digest(path)
  return None if content is None else staging.digest('photo', content, options)


def write_hpo(directory: pathlib.Path, names: Sequence[str], traits: Sequence[str],
              strengths: Sequence[float]) -> None:
  """``hpo/<trait>.csv`` in ``directory``: each trait's images graded by strength
  (:func:`gestaltxai.data.synthetic.hpo_annotations`)."""
  folder = schema.hpo_dir(directory)
  folder.mkdir(exist_ok=True)
  for trait, rows in synthetic.hpo_annotations(names, traits, strengths).items():
    with open(folder / f'{trait}.csv', 'w', newline='', encoding='utf-8') as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
