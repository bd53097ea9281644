"""Building a face dataset: reusing or refusing the one in place, preparing, moving it in.

:func:`build` runs a builder (:mod:`gestaltxai.data.sources`,
:mod:`gestaltxai.data.planted_faces`):

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
   of their names: the same inputs give the same bytes. Each record's name,
   label and folds are then added to the metadata in that order
   (:func:`gestaltxai.data.schema.index`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from typing import Callable, Optional

import tensorflow_datasets as tfds

from gestaltxai.data import schema, staging
from gestaltxai.data.face_builder import FaceDatasetBuilder
from gestaltxai.data.pipeline import read_index
from gestaltxai.data.schema import BuildKey, complete_datasets

#: Where a TFDS build left its unfinished output (gestaltxai before 0.1 built in place).
_TFDS_INCOMPLETE = 'incomplete.*'


class DatasetMismatchError(ValueError):
  """``data_dir`` holds a dataset built from other arguments or inputs."""


def _recorded_identity(dataset_dir: pathlib.Path) -> Optional[dict]:
  metadata = schema.read_metadata(dataset_dir)
  return None if metadata is None else schema.recorded_identity(metadata)


def _differences(old: Optional[dict], new: dict) -> list[str]:
  """What differs between two identities, in words."""
  if old is None:
    return ['it records no arguments or inputs (made by an earlier gestaltxai)']
  found = [f'{key} {old.get(key)} -> {new[key]}' for key in (BuildKey.BUILDER, BuildKey.VERSION)
           if old.get(key) != new[key]]
  if found:
    return found
  old_args, new_args = old.get(BuildKey.ARGUMENTS, {}), new[BuildKey.ARGUMENTS]
  found += [f'{key} {old_args.get(key)!r} -> {new_args.get(key)!r}'
            for key in sorted(set(old_args) | set(new_args))
            if old_args.get(key) != new_args.get(key)]
  if not found:  # other arguments make other inputs; name the inputs only when they are the cause
    found += [f'the {key} differ' for key in sorted(new[BuildKey.INPUTS])
              if old.get(BuildKey.INPUTS, {}).get(key) != new[BuildKey.INPUTS][key]]
  return found


def _record_index(directory: pathlib.Path) -> None:
  """Adds each record's name, label and folds to the written dataset's metadata, in record
  order, so readers get them without parsing every record (TFDS orders the records by a
  hash of their names, so the order is known only once they are written)."""
  source = tfds.builder_from_directory(str(directory)).as_data_source(schema.TFDS_SPLIT)
  schema.write_index(directory, *read_index(source))


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
    _record_index(built)
    builder.write_extras(built)
    final = target / builder.name / built.name
    for old in existing:
      shutil.rmtree(old)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(built, final)
    builder.staging.remove()
  log(f'dataset written to {final}')
  return final
