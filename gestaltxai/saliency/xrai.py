"""XRAI (Kapishnikov et al. 2019) over a given segmentation: integrated gradients
summed into regions, the regions ranked by their attribution density.

XRAI's result is a ranking of segments and a pixel map in which each pixel
holds its segment's density. Here the segments are the regions of a label map
(the face regions the study already has, or any map a user gives), so XRAI
lives in the region space: it returns (B, num_regions) densities, column r
the density of label r, like the other region methods; :func:`region_ranking`
gives the ranking and :func:`region_pixel_map` the pixel map. It never
segments an image itself: without ``regions`` it refuses.

PAIR saliency's ``XRAI.GetMask`` with ``segments`` = the masks of the labels
computes the same: on a partition its greedy loop adds every segment in order
of density, and pixels outside the kept segments share the density of their
union.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.regions.maps import REFERENCE_REGIONS
from gestaltxai.saliency.checks import non_negative, optional, positive_int
from gestaltxai.saliency.chunking import chunk_size, chunked_sum
from gestaltxai.saliency.core import input_gradient, result_dtype
from gestaltxai.saliency.region import label_map, per_pixel
from gestaltxai.saliency.registry import method

Array = jax.Array

#: PAIR's XRAIParameters: IG steps and the smallest segment, in pixels, XRAI ranks
#: (smaller ones join the unranked rest).
XRAI_STEPS = 100
XRAI_MIN_PIXELS = 50


def at_least_one_region(name: str, value) -> None:
  """Option check: ``num_regions`` counts label 0 (XRAI's unranked rest), so 2 is the least
  with one ranked segment."""
  positive_int(name, value)
  if value < 2:
    raise ValueError(f'{name} counts label 0 (the unranked rest) too: it needs at least 2 for '
                     f'one segment, got {value}')


def pair_integrated_gradients(model, variables, x, target, steps, max_batch, memory_budget):
  """PAIR's XRAI attribution: the mean over two baselines, each image's min and max
  value, of IG with ``steps`` points linspace(0, 1) each weighted 1 / steps. (B, H, W, C)."""
  dtype = result_dtype(x)
  x = x.astype(dtype)
  axes = tuple(range(1, x.ndim))
  ends = (x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True))

  def ig_term(point):
    alpha, use_max = point
    baseline = jnp.where(use_max, ends[1], ends[0])
    delta = x - baseline
    return delta * input_gradient(model, variables, baseline + alpha * delta, target).astype(dtype)

  alphas = np.tile(np.linspace(0.0, 1.0, steps), 2)
  points = (jnp.asarray(alphas, dtype), jnp.asarray(np.repeat([False, True], steps)))
  chunk = chunk_size(ig_term, points, x.shape[0], max_batch, memory_budget)
  return chunked_sum(ig_term, points, chunk) / (2 * steps)


def region_densities(attribution: Array, labels: Array, num_regions: int,
                     min_pixels: int) -> Array:
  """(B, num_regions): the mean of (B, H, W) ``attribution`` over each label's pixels.

  Labels 1..num_regions - 1 with at least ``min_pixels`` pixels are ranked
  segments; the other pixels (label 0, smaller regions, labels out of range)
  form the rest, whose density fills column 0 and the columns of the small
  regions (0 when there is no such pixel).
  """
  one_hot = jax.nn.one_hot(jnp.where((labels > 0) & (labels < num_regions), labels, 0),
                           num_regions, dtype=attribution.dtype)  # (B, H, W, R + 1)
  counts = one_hot.sum(axis=(1, 2))
  sums = jnp.einsum('bhw,bhwr->br', attribution, one_hot)
  ranked = (counts >= min_pixels) & (jnp.arange(num_regions) > 0)
  rest_sum = jnp.where(ranked, 0.0, sums).sum(1, keepdims=True)
  rest_count = jnp.where(ranked, 0.0, counts).sum(1, keepdims=True)
  rest = jnp.where(rest_count > 0, rest_sum / jnp.maximum(rest_count, 1.0), 0.0)
  return jnp.where(ranked, sums / jnp.maximum(counts, 1.0), rest)


def region_ranking(densities: Array, regions: Array, min_pixels: int = XRAI_MIN_PIXELS) -> Array:
  """(B, num_regions - 1) labels, XRAI's order: the ranked regions (at least ``min_pixels``
  pixels in ``regions``) by decreasing density, then the rest (ties: the lower label first).

  Args:
    densities: (B, num_regions) from :func:`xrai`.
    regions: the (B, H, W) label map it was given.
  """
  num_regions = densities.shape[1]
  labels = jnp.asarray(regions).astype(jnp.int32)
  counts = (labels[:, None] == jnp.arange(1, num_regions)[None, :, None, None]).sum(axis=(2, 3))
  unranked = counts < min_pixels
  # Sort by (unranked, -density): a lexicographic key as two stable sorts.
  order = jnp.argsort(-densities[:, 1:], axis=1, stable=True)
  order = jnp.take_along_axis(order, jnp.argsort(jnp.take_along_axis(unranked, order, 1), axis=1,
                                                 stable=True), 1)
  return order + 1


def region_pixel_map(densities: Array, regions: Array) -> Array:
  """(B, H, W): each pixel holds its region's column of ``densities`` (column 0 for
  pixels of no region): XRAI's heat map."""
  values, _ = per_pixel(densities, jnp.asarray(regions).astype(jnp.int32))
  return values


@method('xrai', 'XRAI', space='region',
        cost=lambda options, height, width: (2 * options['steps'], 2 * options['steps']),
        traced=('regions',),
        checks={'regions': label_map, 'num_regions': at_least_one_region,
                'steps': positive_int, 'min_pixels': non_negative,
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def xrai(model, variables, x, target, *, key=None, regions, num_regions=len(REFERENCE_REGIONS),
         steps=XRAI_STEPS, min_pixels=XRAI_MIN_PIXELS, max_batch=None, memory_budget=None):
  """XRAI over a region map, (B, num_regions) float32 densities. Cost: 2 ``steps`` x (forward + backward).

  The attribution is PAIR's: IG from two baselines (each image's minimum and
  maximum value), averaged, then the maximum over channels; a region's
  density is its mean (:func:`region_densities`). Rank the regions with
  :func:`region_ranking`, draw the heat map with :func:`region_pixel_map`.

  Args:
    regions: (B, H, W) int segments; e.g. regions.reference_region_map(segmap) per face
      (XRAI does not segment images itself: any label map works, as do the
      landmark and parsing region maps of ``gestaltxai.regions``).
    num_regions: labels counted with 0 (4: none, eye, nose, mouth).
    steps: IG points per baseline (PAIR's ``XRAIParameters.steps``).
    min_pixels: regions with fewer pixels are not ranked (PAIR's ``min_pixel_diff``).
    max_batch, memory_budget: the most images per pass, or the bytes the
      passes may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  if tuple(np.shape(regions)) != tuple(x.shape[:3]):
    raise ValueError(f'xrai: regions must be (B, H, W) = {tuple(x.shape[:3])} like the images, '
                     f'got {tuple(np.shape(regions))}')
  attribution = pair_integrated_gradients(model, variables, x, target, steps, max_batch,
                                          memory_budget).max(axis=-1)
  labels = jnp.asarray(regions).astype(jnp.int32)
  return region_densities(attribution, labels, num_regions, min_pixels)
