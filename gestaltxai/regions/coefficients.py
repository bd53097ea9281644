"""Region coefficients: mean relevance per region label, by segment sums on the device."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


@functools.partial(jax.jit, static_argnames=('num_regions',))
def coefficients(relevance: Array, labels: Array, num_regions: int) -> Array:
  """Mean relevance of each region label, for the whole batch in one segment sum.

  The convention the region methods share (``saliency.region_shapley``,
  ``region_occlusion``): column k is label k, label 0 a region like any
  other, NaN for a label with no pixel in the image.

  Args:
    relevance: (B, H, W) float.
    labels: (B, H, W) int, region ids in [0, num_regions); other ids are
      ignored. Float maps are refused (a resized label map is no longer one:
      resize with nearest neighbour and cast, e.g. ``labels.round().astype(int)``).
    num_regions: number of region ids (column k is label k).

  Returns:
    (B, num_regions) float32 (float64 for float64 relevance): sum of relevance over the pixels of label k
    divided by their count (the reference's coefficient_r); NaN where an
    image has no pixel of label k.
  """
  if relevance.shape != labels.shape or relevance.ndim != 3:
    raise ValueError(f'relevance and labels must both be (B, H, W); got {relevance.shape} '
                     f'and {labels.shape}')
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f'labels must be an int label map, got dtype {labels.dtype}: a float map '
                    'would be truncated; cast it yourself once its values are whole labels')
  batch = relevance.shape[0]
  labels = labels.astype(jnp.int32)
  valid = (labels >= 0) & (labels < num_regions)
  # Offset each image's labels so one segment sum covers the batch; invalid
  # pixels go to an extra segment that is dropped.
  offsets = jnp.arange(batch, dtype=jnp.int32)[:, None, None] * num_regions
  segments = jnp.where(valid, labels + offsets, batch * num_regions).ravel()
  values = relevance.astype(jnp.promote_types(relevance.dtype, jnp.float32)).ravel()
  num_segments = batch * num_regions + 1
  sums = jax.ops.segment_sum(values, segments, num_segments)[:-1]
  counts = jax.ops.segment_sum(jnp.ones_like(values), segments, num_segments)[:-1]
  means = jnp.where(counts > 0, sums / jnp.maximum(counts, 1), jnp.nan)
  return means.reshape(batch, num_regions)


def min_max_normalize(relevance: Array) -> Array:
  """(B, H, W) -> each map scaled to [0, 1] (a constant map gives zeros)."""
  low = relevance.min(axis=(1, 2), keepdims=True)
  span = relevance.max(axis=(1, 2), keepdims=True) - low
  return jnp.where(span > 0, (relevance - low) / jnp.where(span > 0, span, 1), 0.0)


@functools.partial(jax.jit, static_argnames=('num_regions',))
def normalized_coefficients(relevance: Array, labels: Array, num_regions: int) -> Array:
  """:func:`coefficients` of min-max normalised maps, as the reference's RQ2 notebook."""
  return coefficients(min_max_normalize(relevance), labels, num_regions)
