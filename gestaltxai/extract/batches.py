"""The host side of an extraction batch: region label maps and row problems added in grain's
workers, the batch plan of a fold's shards, each batch's random key, and faces back to RGB."""

from __future__ import annotations

import hashlib
from typing import Sequence

import jax
import numpy as np

from gestaltxai.data.pipeline import BatchPlan
from gestaltxai.extract import spec as specs

#: Fields of a host batch a shard's rows are made from (the rest stays in the workers).
ROW_FIELDS = ('index', 'name', 'label', 'valid', 'usable', 'problem', 'image')
#: A row's problem when its image holds NaN or infinity (it is explained as zeros).
NON_FINITE_PIXELS = 'non-finite pixels'
#: Bytes of a method's name hash folded into its key.
_KEY_BYTES = 4


class RegionMaps:
  """Adds each batch's region maps (and why a row has none) on the host, in grain's workers.

  Adds 'labels' and 'rq2_labels' (B, H, W) int32, 'problem' B str ('' when
  none), 'usable' (B,) bool, and replaces non-finite images by zeros.
  """

  def __init__(self, region_set: specs.RegionSet):
    self.region_set = region_set

  def __call__(self, batch: dict) -> dict:
    size = batch['regions'].shape[1:]
    labels = np.zeros((len(batch['name']), *size), np.int32)
    rq2_labels = np.zeros_like(labels)
    problems = [''] * len(batch['name'])
    for row in np.flatnonzero(batch['valid']):
      record = {key: batch[key][row] for key in ('regions', 'parsing', 'points68')}
      try:
        labels[row] = self.region_set.labels(record)
        rq2_labels[row] = specs.RQ2_REGIONS.labels(record)
      except ValueError as err:  # a corrupt or incomplete map: the row says why
        problems[row] = f'no region map ({err})'
    finite = np.isfinite(batch['image']).reshape(len(labels), -1).all(axis=1)
    for row in np.flatnonzero(batch['valid'] & ~finite):
      problems[row] = NON_FINITE_PIXELS
    image = np.where(finite[:, None, None, None], batch['image'], 0.0).astype(np.float32)
    usable = batch['valid'] & np.array([not p for p in problems], bool)
    return {**batch, 'image': image, 'labels': labels, 'rq2_labels': rq2_labels,
            'problem': problems, 'usable': usable}


def concatenate_plans(plans: Sequence[BatchPlan]) -> BatchPlan:
  """One plan of the batches of several shards, in order (one input stream per fold)."""
  return BatchPlan(np.concatenate([p.records for p in plans]),
                   np.concatenate([p.flips for p in plans]))


def batch_key(seed: int, method: str, shard_id: str, batch_number: int) -> jax.Array:
  """A method's key for one batch: independent of which process runs the shard."""
  digest = int.from_bytes(hashlib.sha256(f'{method}/{shard_id}'.encode()).digest()[:_KEY_BYTES],
                          'little')
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), digest), batch_number)


def faces_rgb(images: np.ndarray, mean_bgr: Sequence[float]) -> np.ndarray:
  """(B, H, W, 3) float32 model inputs (BGR minus ``mean_bgr``) -> float32 RGB in [0, 255]."""
  return (images + np.asarray(mean_bgr, np.float32))[..., ::-1]
