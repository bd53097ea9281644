"""Localisation: does the relevance fall on the ground truth (a planted region, a mask)?

Definitions as Arras et al., "CLEVR-XAI" (Information Fusion 2022) and as
Quantus implements them (``quantus.metrics.localisation``, with its
``abs=False``; its default max-normalisation changes none of these scores):

* **relevance mass accuracy**: relevance inside the mask over all relevance;
* **relevance rank accuracy**: with K the mask's size, the share of the K
  most relevant pixels that lie in the mask;
* **pointing game** (Zhang et al. 2018, without their 15-pixel tolerance,
  as Quantus): 1 when a pixel of the maximum relevance lies in the mask (any
  of tied maxima counts); ``weighted`` scales a hit by 1 - mask share;
* **top-k intersection** (Theiner et al. 2021): the share of the k most
  relevant pixels inside the mask (``concept_influence`` divides by the
  mask's share).

Each takes (B, ...) relevance and a (B, ...) bool mask of the same shape and
gives (B,) float, NaN where the mask is empty. Differences from Quantus:
equal relevance values are ranked in pixel order (a stable sort, row-major),
where NumPy's default sort leaves their order to the algorithm; NaN
relevance (a region absent from an image) counts as no relevance (0 in sums,
last in rank). The region-level variants take (B, R) region coefficients and
a (B, R) bool region mask, column 0 (label 0, no region) left out.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gestaltxai.metrics.registry import metric
from gestaltxai.saliency.checks import positive_int

Array = jax.Array
#: Quantus' default k of top-k intersection (Theiner et al. 2021 on 224 x 224 images).
TOP_K = 1000


def _flat(relevance, mask, name: str) -> tuple[Array, Array]:
  """(B, N) relevance and bool mask; shapes checked."""
  relevance, mask = jnp.asarray(relevance), jnp.asarray(mask)
  if relevance.shape != mask.shape or relevance.ndim < 2:
    raise ValueError(f'{name}: relevance and mask must have the same shape (B, ...), got '
                     f'{relevance.shape} and {mask.shape}')
  if mask.dtype != jnp.bool_:
    raise ValueError(f'{name}: mask must be bool (True on the ground truth), got {mask.dtype}')
  batch = relevance.shape[0]
  return relevance.reshape(batch, -1).astype(jnp.promote_types(relevance.dtype, jnp.float32)), \
      mask.reshape(batch, -1)


def _ranks(values: Array) -> Array:
  """(B, N) -> (B, N) int32: 0 for the largest value; ties in index order, NaN last."""
  order = jnp.argsort(-jnp.where(jnp.isnan(values), -jnp.inf, values), axis=1, stable=True)
  rows = jnp.arange(values.shape[0])[:, None]
  positions = jnp.broadcast_to(jnp.arange(values.shape[1], dtype=jnp.int32), values.shape)
  return jnp.zeros_like(positions).at[rows, order].set(positions)


def _undefined_if_empty(score: Array, mask: Array) -> Array:
  return jnp.where(mask.any(axis=1), score, jnp.nan)


@jax.jit
def relevance_mass_accuracy(relevance, mask) -> Array:
  """Relevance inside the mask over all relevance, (B, ...) x (B, ...) bool -> (B,)."""
  values, mask = _flat(relevance, mask, 'relevance_mass_accuracy')
  values = jnp.nan_to_num(values, nan=0.0)
  inside = jnp.where(mask, values, 0.0).sum(axis=1)
  return _undefined_if_empty(inside / values.sum(axis=1), mask)


@jax.jit
def relevance_rank_accuracy(relevance, mask) -> Array:
  """The share of the |mask| most relevant pixels inside the mask, (B, ...) -> (B,)."""
  values, mask = _flat(relevance, mask, 'relevance_rank_accuracy')
  size = mask.sum(axis=1)
  hits = (mask & (_ranks(values) < size[:, None])).sum(axis=1)
  return _undefined_if_empty(hits / jnp.maximum(size, 1), mask)


def pointing_game(relevance, mask, *, weighted: bool = False) -> Array:
  """1 when the most relevant pixel (any of tied maxima) lies in the mask, (B, ...) -> (B,).

  Args:
    weighted: a hit scores 1 - (mask size / pixels) instead of 1 (Quantus'
      ``weighted``): pointing into a large mask earns less.
  """
  return _pointing_game(relevance, mask, weighted)


@jax.jit
def _pointing_game(relevance, mask, weighted):
  values, mask = _flat(relevance, mask, 'pointing_game')
  values = jnp.where(jnp.isnan(values), -jnp.inf, values)
  peak = values == values.max(axis=1, keepdims=True)
  hit = (peak & mask).any(axis=1).astype(values.dtype)
  share = mask.mean(axis=1, dtype=values.dtype)
  return _undefined_if_empty(jnp.where(weighted, hit * (1 - share), hit), mask)


def top_k_intersection(relevance, mask, *, k: int = TOP_K,
                       concept_influence: bool = False) -> Array:
  """The share of the k most relevant pixels inside the mask, (B, ...) -> (B,).

  Args:
    k: how many of the most relevant pixels; at most the pixels per image.
    concept_influence: divide by the mask's share of the image (Quantus'
      ``concept_influence``): 1 is chance.
  """
  size = int(jnp.size(relevance) // max(jnp.shape(relevance)[0], 1))
  if k > size:
    raise ValueError(f'top_k_intersection: k={k} is more than the {size} pixels (values) '
                     'per image; give a smaller k=')
  return _top_k(relevance, mask, k, concept_influence)


@functools.partial(jax.jit, static_argnums=2)
def _top_k(relevance, mask, k, concept_influence):
  values, mask = _flat(relevance, mask, 'top_k_intersection')
  score = (mask & (_ranks(values) < k)).sum(axis=1) / k
  share = mask.mean(axis=1, dtype=values.dtype)
  score = jnp.where(concept_influence, score / jnp.maximum(share, 1e-30), score)
  return _undefined_if_empty(score.astype(values.dtype), mask)


def region_values(coefficients, region_mask, name: str) -> tuple[Array, Array]:
  """(B, R) coefficients and mask without column 0 (label 0, no region)."""
  coefficients, region_mask = jnp.asarray(coefficients), jnp.asarray(region_mask)
  if coefficients.ndim != 2 or coefficients.shape != region_mask.shape:
    raise ValueError(f'{name}: coefficients and region_mask must both be (B, R), got '
                     f'{coefficients.shape} and {region_mask.shape}')
  return coefficients[:, 1:], region_mask[:, 1:]


# The registrations: the pixel metrics, and the same definitions over regions.

@metric('relevance_mass_accuracy', direction='higher')
def _mass_metric(relevance, mask):
  """Relevance inside the ground truth over all relevance (Arras et al. 2022)."""
  return relevance_mass_accuracy(relevance, mask)


@metric('relevance_rank_accuracy', direction='higher')
def _rank_metric(relevance, mask):
  """The share of the |truth| most relevant pixels inside the ground truth (Arras et al.)."""
  return relevance_rank_accuracy(relevance, mask)


@metric('pointing_game', direction='higher')
def _pointing_game_metric(relevance, mask, *, weighted: bool = False):
  """The most relevant pixel lies in the ground truth (1) or not (0)."""
  return pointing_game(relevance, mask, weighted=weighted)


@metric('top_k_intersection', direction='higher', checks={'k': positive_int})
def _top_k_metric(relevance, mask, *, k: int = TOP_K, concept_influence: bool = False):
  """The share of the k most relevant pixels in the ground truth."""
  return top_k_intersection(relevance, mask, k=k, concept_influence=concept_influence)


@metric('region_mass_accuracy', direction='higher')
def region_mass_accuracy(coefficients, region_mask):
  """The ground-truth regions' share of the sum of region coefficients."""
  return relevance_mass_accuracy(*region_values(coefficients, region_mask,
                                                'region_mass_accuracy'))


@metric('region_rank_accuracy', direction='higher')
def region_rank_accuracy(coefficients, region_mask):
  """The share of the |truth| highest-coefficient regions that are ground truth."""
  return relevance_rank_accuracy(*region_values(coefficients, region_mask,
                                                'region_rank_accuracy'))


@metric('region_pointing_game', direction='higher')
def region_pointing_game(coefficients, region_mask):
  """The region of the highest coefficient is ground truth (1) or not (0)."""
  return pointing_game(*region_values(coefficients, region_mask, 'region_pointing_game'))

