"""The fold policy: how many folds, how images are dealt over them, and what each must hold.

A dataset of K folds records per image and fold whether it trains, validates
or tests (:data:`gestaltxai.data.schema.SPLITS`). The images are dealt into K
parts: fold k tests part k, validates on part k + 1 and trains on the rest.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gestaltxai.data.schema import SPLITS, fold_key

DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
#: Fewest folds: fold k tests part k, validates on part k + 1 and trains on the rest.
MIN_FOLDS = 3
#: Fewest classes a classifier can be trained on.
MIN_CLASSES = 2


def check_num_folds(num_folds: int) -> None:
  if num_folds < MIN_FOLDS:
    raise ValueError(f'folds must be at least {MIN_FOLDS} (one part tests, the next validates, '
                     f'the rest trains), got {num_folds}')


def folds_from_parts(part: np.ndarray, num_folds: int) -> np.ndarray:
  """(N, K) int8 from each image's part in 0..K-1: fold k tests part k, validates on
  part k + 1 and trains on the rest."""
  folds = np.zeros((len(part), num_folds), np.int8)
  for k in range(num_folds):
    folds[part == k, k] = SPLITS.index('test')
    folds[part == (k + 1) % num_folds, k] = SPLITS.index('val')
  return folds


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
  return folds_from_parts(part, num_folds)


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
      means[fold_key(k + 1)] = [float(v) for v in mean_rgb[train].mean(0)[::-1]]
  return means


def check_class_sizes(counts: dict[str, int], num_folds: int, where: str) -> None:
  """Every class has an image in every fold's test, validation and training part."""
  if len(counts) < MIN_CLASSES:
    raise ValueError(f'{where}: {len(counts)} class ({", ".join(map(repr, counts))}); '
                     f'a classifier needs at least {MIN_CLASSES}')
  small = {name: n for name, n in counts.items() if n < num_folds}
  if small:
    listed = ', '.join(f'{name!r} has {n}' for name, n in sorted(small.items()))
    raise ValueError(f'{where}: {listed}; each class needs at least {num_folds} images for '
                     f'{num_folds} folds (use fewer folds or leave the class out)')


def check_given_folds(folds: np.ndarray, where: str) -> None:
  """Every fold of folds given with the data (NIH-Faces) has a test, validation and
  training image."""
  for k in range(folds.shape[1]):
    for index, split in enumerate(SPLITS):
      if not (folds[:, k] == index).any():
        raise ValueError(f'{where}: fold-{k + 1} has no {split} image')
