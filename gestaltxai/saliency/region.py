"""Region-native methods: one coefficient per facial region by construction, no pixel map.

The players are the labels 1..R of a region map (R = ``num_regions - 1``,
labels counted with 0 as :func:`gestaltxai.regions.coefficients` counts
them). A player left out of an input has all its pixels set to the baseline
(0, the channel mean, as occlusion; or ``baseline=``); pixels labelled 0, or
with a label outside 1..R, always stay as they are. The score is the target
logit. Results are (B, num_regions) like ``regions.coefficients``, column 0
(label 0, no player) being 0, so extraction uses them as coefficients.

These are Captum's ``FeatureAblation`` and ``ShapleyValues`` with a feature
mask, on the logit, with label 0 held fixed.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.regions.maps import REFERENCE_REGIONS
from gestaltxai.saliency.chunking import auto_chunked_map
from gestaltxai.saliency.core import broadcast_baseline, gather_targets, result_dtype
from gestaltxai.saliency.registry import method, optional, positive_int

Array = jax.Array

#: region_shapley evaluates all 2^R coalitions up to this many regions (4,096
#: forwards per image at 12); above it, it samples permutations.
MAX_EXACT_REGIONS = 12
#: Permutations sampled above the exact limit (Captum ShapleyValueSampling's default).
DEFAULT_PERMUTATIONS = 25


def label_map(name: str, value) -> None:
  """Option check: a (B, H, W) integer label map (concrete or traced)."""
  if np.ndim(value) != 3 or not jnp.issubdtype(jnp.result_type(value), jnp.integer):
    raise ValueError(f'{name} must be a (B, H, W) int label map, got shape {np.shape(value)} '
                     f'dtype {jnp.result_type(value)}')


def at_least_one_region(name: str, value) -> None:
  """Option check: ``num_regions`` counts label 0, so 2 is the least with a player."""
  positive_int(name, value)
  if value < 2:
    raise ValueError(f'{name} counts label 0 (no region) too: it needs at least 2 for one '
                     f'region, got {value}')


def per_pixel(values: Array, labels: Array) -> tuple[Array, Array]:
  """Each pixel's entry of a per-region table, and whether its label is a player.

  Args:
    values: (B, num_regions), column k for label k.
    labels: (B, H, W) int region labels.

  Returns:
    ((B, H, W) values, (B, H, W) bool): labels 0 and those outside
    [1, num_regions) are no player, and take column 0's value.
  """
  batch, num_regions = values.shape
  players = (labels > 0) & (labels < num_regions)
  index = jnp.where(players, labels, 0).reshape(batch, -1)
  return jnp.take_along_axis(values, index, axis=1).reshape(labels.shape), players


def remove_regions(x: Array, fill: Array, labels: Array, removed: Array) -> Array:
  """Images with the pixels of the removed regions set to ``fill``.

  Args:
    x, fill: (B, H, W, C) images and what replaces them.
    labels: (B, H, W) int region labels.
    removed: (B, num_regions) bool, column k for label k; labels 0 and those
      outside [1, num_regions) are never removed.

  Returns:
    (B, H, W, C) in x's dtype.
  """
  gone, players = per_pixel(removed, labels)
  return jnp.where((gone & players)[..., None], fill, x)


def _check_labels(regions, x: Array) -> Array:
  """(B, H, W) int32 labels; those outside 1..num_regions - 1 are simply not players."""
  if tuple(np.shape(regions)) != tuple(x.shape[:3]):
    raise ValueError(f'regions must be (B, H, W) = {tuple(x.shape[:3])} like the images, got '
                     f'{tuple(np.shape(regions))}')
  return jnp.asarray(regions).astype(jnp.int32)


def _region_scores(model, variables, x, target, labels, fill):
  """removed (B, num_regions) bool -> (B,) target logits with those regions at ``fill``."""
  return lambda removed: gather_targets(
      model.logits(variables, remove_regions(x, fill, labels, removed)), target)


def _per_image(removed: Array, batch: int) -> Array:
  return jnp.broadcast_to(removed, (batch, removed.shape[-1]))


def _coalition_value(score, batch: int):
  """present (R,) bool -> (B,) v(S): the target logit with the absent regions at the baseline."""
  no_region = jnp.zeros(1, bool)
  return lambda present: score(_per_image(jnp.concatenate([no_region, ~present]), batch))


def with_label_zero(per_player: Array) -> Array:
  """(B, R) per player -> (B, R + 1): column 0 (label 0, no player) is 0."""
  return jnp.pad(per_player, ((0, 0), (1, 0)))


@method('region_occlusion', 'FeatureAblation', space='region',
        cost=lambda o, height, width: (o['num_regions'], 0),
        traced=('regions', 'baseline'),
        checks={'regions': label_map, 'num_regions': at_least_one_region,
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def region_occlusion(model, variables, x, target, *, key=None, regions,
                     num_regions=len(REFERENCE_REGIONS), baseline=0.0, max_batch=None,
                     memory_budget=None):
  """Region occlusion, (B, num_regions) float32. Cost: R + 1 forwards, no backward.

  Coefficient r = f(x) - f(x with region r set to the baseline), f the
  target logit; column 0 is 0. Captum's ``FeatureAblation`` with the region
  map as feature mask.

  Args:
    regions: (B, H, W) int label map; the players are labels 1..num_regions - 1.
    num_regions: labels counted with 0 (4: none, eye, nose, mouth).
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  labels = _check_labels(regions, x)
  score = _region_scores(model, variables, x, target, labels, broadcast_baseline(baseline, x))
  batch, players = x.shape[0], jnp.arange(1, num_regions)
  occluded_score = lambda player: score(_per_image(jnp.arange(num_regions) == player, batch))
  occluded = auto_chunked_map(occluded_score, players, batch, max_batch,
                              memory_budget)  # (R, B)
  drops = gather_targets(model.logits(variables, x), target)[:, None] - occluded.T
  return with_label_zero(drops).astype(result_dtype(x))


def shapley_pairs(num_players: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The exact Shapley value as weighted differences over coalitions (bit masks).

  phi_i = sum over S without i of |S|! (R - |S| - 1)! / R! (v(S + i) - v(S)).

  Returns:
    (without, with_, weights), each (R, 2^(R - 1)): coalition S (bit j set:
    player j present), S + i, and the weight of the pair, float64; each row
    of weights sums to 1.
  """
  coalitions = np.arange(2**num_players)
  sizes = np.array([bin(c).count('1') for c in coalitions])
  weight_of_size = np.array([math.factorial(s) * math.factorial(num_players - s - 1)
                             for s in range(num_players)], np.float64)
  weight_of_size /= math.factorial(num_players)
  without = np.stack([coalitions[((coalitions >> i) & 1) == 0] for i in range(num_players)])
  with_ = without | (1 << np.arange(num_players))[:, None]
  return without, with_, weight_of_size[sizes[without]]


def _exact_shapley(score, num_regions, batch, chunking, dtype):
  num_players = num_regions - 1
  bits, value = jnp.arange(num_players), _coalition_value(score, batch)
  coalitions = jnp.arange(2**num_players)  # bit j set: player j present
  values = chunking(lambda c: value(((c >> bits) & 1) == 1), coalitions)
  without, with_, weights = shapley_pairs(num_players)
  # Differences first: each is a small change of a large logit.
  differences = values[with_] - values[without]  # (R, 2^(R-1), B)
  return jnp.einsum('rs,rsb->br', jnp.asarray(weights, dtype), differences.astype(dtype))


def _sampled_shapley(score, num_regions, batch, chunking, dtype, key, permutations):
  """Mean marginal contributions over random orders of the players (the same for every
  image); each order's contributions sum to v(all) - v(none) exactly."""
  num_players = num_regions - 1
  orders = jax.vmap(lambda k: jax.random.permutation(k, num_players))(
      jax.random.split(key, permutations))  # (P, R): the players in the order they join
  position = jnp.argsort(orders, axis=1)  # (P, R): when each player joins
  joined = jnp.arange(num_players + 1)  # players present after each join, 0..R
  value = _coalition_value(score, batch)
  # v(none) and v(all) are the same in every order; the R - 1 coalitions between differ.
  inner = (position[:, None, :] < joined[None, 1:-1, None]).reshape(-1, num_players)
  values = chunking(value, inner)
  ends = jax.vmap(value)(jnp.stack([jnp.zeros(num_players, bool), jnp.ones(num_players, bool)]))
  curve = jnp.concatenate([jnp.broadcast_to(ends[0], (permutations, 1, batch)),
                           values.reshape(permutations, num_players - 1, batch),
                           jnp.broadcast_to(ends[1], (permutations, 1, batch))], axis=1)
  marginal = jnp.diff(curve.astype(dtype), axis=1)  # (P, R, B): of the player joining at step k
  per_player = jnp.take_along_axis(marginal, position[:, :, None], axis=1)
  return per_player.mean(0).T


def shapley_cost(options, height, width) -> tuple[int, int]:
  """Forwards per image: 2^R exact; P (R - 1) + 2 sampled."""
  del height, width
  players = options['num_regions'] - 1
  if players <= options['max_exact_regions']:
    return 2**players, 0
  return options['permutations'] * (players - 1) + 2, 0


@method('region_shapley', 'ShapleyValues', space='region', cost=shapley_cost,
        traced=('regions', 'baseline'),
        checks={'regions': label_map, 'num_regions': at_least_one_region,
                'max_exact_regions': positive_int, 'permutations': positive_int,
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def region_shapley(model, variables, x, target, *, key=None, regions,
                   num_regions=len(REFERENCE_REGIONS), baseline=0.0,
                   max_exact_regions=MAX_EXACT_REGIONS, permutations=DEFAULT_PERMUTATIONS,
                   max_batch=None, memory_budget=None):
  """Shapley values of the regions, (B, num_regions) float32. Cost: 2^R forwards (exact).

  The game: v(S) is the target logit with the regions outside S set to the
  baseline. Up to ``max_exact_regions`` regions the values are exact, from
  all 2^R coalitions in one computation (Captum's ``ShapleyValues``, which
  walks all R! orders); above it, the mean marginal contribution over
  ``permutations`` random orders drawn from ``key`` (Captum's
  ``ShapleyValueSampling``; P (R - 1) + 2 forwards). Either way the values of
  an image sum to v(all) - v(none) = f(x) - f(x with every region at the
  baseline). Column 0 is 0.

  Args:
    regions: (B, H, W) int label map; the players are labels 1..num_regions - 1.
    num_regions: labels counted with 0 (4: none, eye, nose, mouth).
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_exact_regions: the most regions computed exactly.
    permutations: random orders sampled above that.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  labels = _check_labels(regions, x)
  score = _region_scores(model, variables, x, target, labels, broadcast_baseline(baseline, x))
  batch, dtype = x.shape[0], result_dtype(x)
  chunking = functools.partial(auto_chunked_map, batch=batch, max_batch=max_batch,
                               memory_budget=memory_budget)
  if num_regions - 1 <= max_exact_regions:
    values = _exact_shapley(score, num_regions, batch, chunking, dtype)
  else:
    values = _sampled_shapley(score, num_regions, batch, chunking, dtype, key, permutations)
  return with_label_zero(values).astype(dtype)
