"""Region-native methods: one coefficient per facial region by construction, no pixel map.

The convention is :func:`gestaltxai.regions.coefficients`': column k of the
(B, num_columns) result is label k, and a label with no pixel in an image
gives NaN there. The players are exactly:

* ``region_ids=(...)``, the labels declared (sparse ids such as 5, 10, 20
  are fine: they play as 3 players, 2^3 coalitions); or
* ``num_regions=N``: labels 0..N-1, label 0 included; or
* neither: the labels present in the map (read on the host; under a
  caller's ``jit`` the map is traced, so declare them).

``background=`` names labels that are no player (e.g. ``background=0`` for
the face study's "none"): their pixels always stay as they are, their column
is 0. A pixel whose label is neither a player nor background is an error
(NaN for that image under tracing, see :mod:`~gestaltxai.saliency.calls`):
no region is dropped silently. A player left out of an input has all its
pixels set to the baseline (0, the channel mean, as occlusion; or
``baseline=``). The score is the target logit. The number of columns is the
largest label named plus 1 (at least ``num_regions``); columns of labels
that are neither players nor background are NaN.

These are Captum's ``FeatureAblation`` and ``ShapleyValues`` with a feature
mask, on the logit.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.regions.maps import REFERENCE_REGIONS
from gestaltxai.saliency.checks import broadcast_baseline, optional, positive_int
from gestaltxai.saliency.chunking import auto_chunked_map
from gestaltxai.saliency.core import gather_targets, result_dtype
from gestaltxai.saliency.registry import method

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


def label_ids(name: str, value) -> tuple[int, ...]:
  """Option check and value: None, one label or labels, each a non-negative int."""
  ids = () if value is None else (value,) if np.ndim(value) == 0 else tuple(value)
  for label in ids:
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or (
        label < 0):
      raise ValueError(f'{name} must be non-negative int labels, got {value!r}')
  if len(set(ids)) != len(ids):
    raise ValueError(f'{name} names a label twice: {value!r}')
  return tuple(int(label) for label in ids)


def players_and_width(name: str, num_regions: Optional[int], region_ids, background
                      ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
  """(players, background labels, number of columns) from the declared options."""
  held = label_ids(f'{name}: background', background)
  if region_ids is not None:
    players = label_ids(f'{name}: region_ids', region_ids)
  elif num_regions is not None:
    players = tuple(range(num_regions))
  else:
    raise ValueError(
        f'{name}: which labels are players? Under jit (or compiled with a traced map) the '
        'labels present cannot be read: declare them with num_regions=N (labels 0..N-1) or '
        'region_ids=(...), and background=... for labels held fixed')
  players = tuple(sorted(set(players) - set(held)))
  if not players:
    raise ValueError(f'{name}: no player left: region_ids/num_regions {region_ids or num_regions}'
                     f' all lie in background {held}')
  width = max(num_regions or 0, *(label + 1 for label in players + held))
  return players, held, width


def prepare_players(name: str, options: dict, x) -> dict:
  """Host step of the region methods: the players present in a concrete map when none are
  declared (a static option), and every label checked against the declared ones."""
  regions = options.get('regions')
  if regions is None or isinstance(regions, jax.core.Tracer):
    return options
  label_map(f'{name}: regions', regions)
  if np.size(regions) == 0:  # an empty batch: no label, no column unless declared
    undeclared = options.get('region_ids') is None and options.get('num_regions') is None
    return {**options, 'region_ids': ()} if undeclared else options
  present = np.unique(np.asarray(regions))
  held = label_ids(f'{name}: background', options.get('background'))
  if options.get('region_ids') is None and options.get('num_regions') is None:
    ids = tuple(int(label) for label in present if label not in held)
    return {**options, 'region_ids': ids}  # () for an empty batch: no column
  players, held, _ = players_and_width(name, options.get('num_regions'),
                                       options.get('region_ids'), held)
  stray = sorted(set(present.tolist()) - set(players) - set(held))
  if stray:
    raise ValueError(
        f'{name}: regions has labels {stray} that are neither players {list(players)} nor '
        f'background {list(held)}: add them to region_ids / raise num_regions, or hold them '
        'fixed with background=...')
  return options


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
  """(B, H, W) int32 labels, the images' shape."""
  if tuple(np.shape(regions)) != tuple(x.shape[:3]):
    raise ValueError(f'regions must be (B, H, W) = {tuple(x.shape[:3])} like the images, got '
                     f'{tuple(np.shape(regions))}')
  return jnp.asarray(regions).astype(jnp.int32)


def dense_players(labels: Array, players: tuple[int, ...]) -> Array:
  """(B, H, W) player numbers: 1..R for the labels ``players`` (sorted), 0 for the rest."""
  matches = labels[..., None] == jnp.asarray(players, jnp.int32)  # R compares a pixel
  return jnp.where(matches.any(-1), matches.argmax(-1) + 1, 0).astype(jnp.int32)


def _columns(name, labels, dense, per_player, num_regions, region_ids, background):
  """(B, R) per player -> (B, width), column k for label k (module docstring)."""
  players, held, width = players_and_width(name, num_regions, region_ids, background)
  counts = jax.vmap(lambda d: jnp.bincount(d.ravel(), length=len(players) + 1))(dense)
  values = jnp.where(counts[:, 1:] > 0, per_player, jnp.nan)  # empty region: NaN
  out = jnp.full((labels.shape[0], width), jnp.nan, per_player.dtype)
  out = out.at[:, jnp.asarray(players)].set(values)
  if held:
    out = out.at[:, jnp.asarray(held)].set(0.0)
  known = ((dense > 0) | jnp.isin(labels, jnp.asarray(held, jnp.int32))).all(axis=(1, 2))
  return jnp.where(known[:, None], out, jnp.nan)  # a stray label: the image is NaN


def _region_scores(model, variables, x, target, labels, fill):
  """removed (B, num_regions) bool -> (B,) target logits with those regions at ``fill``."""
  return lambda removed: gather_targets(
      model.logits(variables, remove_regions(x, fill, labels, removed)), target)


def _per_image(removed: Array, batch: int) -> Array:
  return jnp.broadcast_to(removed, (batch, removed.shape[-1]))


def coalition_value(score, batch: int):
  """present (R,) bool -> (B,) v(S): the target logit with the absent regions at the baseline."""
  no_region = jnp.zeros(1, bool)
  return lambda present: score(_per_image(jnp.concatenate([no_region, ~present]), batch))


def with_label_zero(per_player: Array) -> Array:
  """(B, R) per player -> (B, R + 1): column 0 (label 0, no player) is 0."""
  return jnp.pad(per_player, ((0, 0), (1, 0)))


REGION_CHECKS = {'regions': label_map, 'num_regions': optional(positive_int),
                 'region_ids': lambda n, v: label_ids(n, v),
                 'background': lambda n, v: label_ids(n, v),
                 'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)}


def count_players(options) -> int:
  """Players the options declare (the face study's 3, eye, nose, mouth, when none are)."""
  if options['region_ids'] is None and options['num_regions'] is None:
    return len(REFERENCE_REGIONS) - 1
  players, _, _ = players_and_width('cost', options['num_regions'], options['region_ids'],
                                    options['background'])
  return len(players)


def region_game(name, model, variables, x, target, regions, num_regions, region_ids, background,
          baseline):
  """(score of removed (B, R + 1) bool, a function of (B, R) per player -> the result, R)."""
  labels = _check_labels(regions, x)
  players, _, _ = players_and_width(name, num_regions, region_ids, background)
  dense = dense_players(labels, players)
  score = _region_scores(model, variables, x, target, dense, broadcast_baseline(baseline, x))
  columns = lambda per_player: _columns(name, labels, dense, per_player, num_regions,
                                        region_ids, background)
  return score, columns, len(players)


@method('region_occlusion', 'FeatureAblation', space='region',
        cost=lambda o, height, width: (count_players(o) + 1, 0),
        traced=('regions', 'baseline'), checks=REGION_CHECKS, prepare=prepare_players)
def region_occlusion(model, variables, x, target, *, key=None, regions, num_regions=None,
                     region_ids=None, background=None, baseline=0.0, max_batch=None,
                     memory_budget=None):
  """Region occlusion, (B, num_columns) float32, column k for label k. Cost: R + 1 forwards.

  Coefficient of region r = f(x) - f(x with region r set to the baseline), f
  the target logit. Captum's ``FeatureAblation`` with the region map as
  feature mask.

  Args:
    regions: (B, H, W) int label map.
    num_regions: players are labels 0..num_regions - 1 (label 0 included).
    region_ids: the labels that are players, any ints (instead of num_regions).
      Neither: the labels present in the map (host paths only).
    background: label(s) held fixed, no player; column 0 (e.g. background=0).
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  score, columns, num_players = region_game('region_occlusion', model, variables, x, target,
                                           regions, num_regions, region_ids, background,
                                           baseline)
  batch, players = x.shape[0], jnp.arange(1, num_players + 1)
  occluded_score = lambda player: score(_per_image(jnp.arange(num_players + 1) == player, batch))
  occluded = auto_chunked_map(occluded_score, players, batch, max_batch,
                              memory_budget)  # (R, B)
  drops = gather_targets(model.logits(variables, x), target)[:, None] - occluded.T
  return columns(drops.astype(result_dtype(x)))


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


def _exact_shapley(score, num_players, batch, chunking, dtype):
  bits, value = jnp.arange(num_players), coalition_value(score, batch)
  coalitions = jnp.arange(2**num_players)  # bit j set: player j present
  values = chunking(lambda c: value(((c >> bits) & 1) == 1), coalitions)
  without, with_, weights = shapley_pairs(num_players)
  # Differences first: each is a small change of a large logit.
  differences = values[with_] - values[without]  # (R, 2^(R-1), B)
  return jnp.einsum('rs,rsb->br', jnp.asarray(weights, dtype), differences.astype(dtype))


def _sampled_shapley(score, num_players, batch, chunking, dtype, key, permutations):
  """Mean marginal contributions over random orders of the players (the same for every
  image); each order's contributions sum to v(all) - v(none) exactly."""
  orders = jax.vmap(lambda k: jax.random.permutation(k, num_players))(
      jax.random.split(key, permutations))  # (P, R): the players in the order they join
  position = jnp.argsort(orders, axis=1)  # (P, R): when each player joins
  joined = jnp.arange(num_players + 1)  # players present after each join, 0..R
  value = coalition_value(score, batch)
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
  players = count_players(options)
  if players <= options['max_exact_regions']:
    return 2**players, 0
  return options['permutations'] * (players - 1) + 2, 0


@method('region_shapley', 'ShapleyValues', space='region', cost=shapley_cost,
        traced=('regions', 'baseline'), prepare=prepare_players,
        checks={**REGION_CHECKS, 'max_exact_regions': positive_int,
                'permutations': positive_int})
def region_shapley(model, variables, x, target, *, key=None, regions, num_regions=None,
                   region_ids=None, background=None, baseline=0.0,
                   max_exact_regions=MAX_EXACT_REGIONS, permutations=DEFAULT_PERMUTATIONS,
                   max_batch=None, memory_budget=None):
  """Shapley values of the regions, (B, num_columns) float32, column k for label k.
  Cost: 2^R forwards (exact), R the number of players.

  The game: v(S) is the target logit with the players outside S set to the
  baseline. Up to ``max_exact_regions`` players the values are exact, from
  all 2^R coalitions in one computation (Captum's ``ShapleyValues``, which
  walks all R! orders); above it, the mean marginal contribution over
  ``permutations`` random orders drawn from ``key`` (Captum's
  ``ShapleyValueSampling``; P (R - 1) + 2 forwards). Either way the values of
  an image sum (nansum: absent regions are NaN) to v(all) - v(none).

  Args:
    regions: (B, H, W) int label map.
    num_regions: players are labels 0..num_regions - 1 (label 0 included).
    region_ids: the labels that are players, any ints, remapped to 1..R
      (instead of num_regions). Neither: the labels present (host paths only).
    background: label(s) held fixed, no player; column 0 (e.g. background=0).
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_exact_regions: the most players computed exactly.
    permutations: random orders sampled above that.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  score, columns, num_players = region_game('region_shapley', model, variables, x, target,
                                           regions, num_regions, region_ids, background,
                                           baseline)
  batch, dtype = x.shape[0], result_dtype(x)
  chunking = functools.partial(auto_chunked_map, batch=batch, max_batch=max_batch,
                               memory_budget=memory_budget)
  if num_players <= max_exact_regions:
    values = _exact_shapley(score, num_players, batch, chunking, dtype)
  else:
    values = _sampled_shapley(score, num_players, batch, chunking, dtype, key, permutations)
  return columns(values.astype(dtype))
