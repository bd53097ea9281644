"""ROAD: remove and debias (Rong, Leemann et al., "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022).

Deletion with a constant fill lets the model see *where* pixels were
removed (the fill's shape leaks the map). ROAD fills removed pixels by
**noisy linear imputation**: each removed pixel takes the weighted mean of
its 8 neighbours (weight 1/6 for the 4 direct ones, 1/12 for the diagonal
ones; neighbours outside the image drop out), all removed pixels at once as
one sparse linear system per channel, plus Gaussian noise. Pixels are removed
most relevant first (MoRF: the target's probability should fall fast) or
least relevant first (LeRF: it should stay), at fractions 10%..90%.

Here the system is solved on the device, batched: by conjugate gradients on
the removed pixels (the system is symmetric positive definite whenever some
pixel is kept), the 8-neighbour stencil as a 3 x 3 depthwise convolution.
The score is the target's softmax probability. Like pytorch-grad-cam's
``ROADCombined`` the headline is (mean LeRF - mean MoRF) / 2 over the
fractions (higher is better).

Where we differ from the ROAD code (``tleemann/road_evaluation``) and
pytorch-grad-cam's copy of its imputer: the noise is ``noise_level`` times
each image's value range (their 0.01 is absolute on [0, 1] images; ours are
0..255 minus a mean, where 0.01 of the range is the same share); equal
relevance is ranked in pixel order (a stable sort) where the ROAD code adds
1e-4 random noise to break ties; LeRF at fraction p removes the floor(p N)
least relevant pixels (as pytorch-grad-cam's percentile thresholds), where
the ROAD code's LeRF at p keeps the floor(p N) most relevant (their p is our
1 - p); the solution is iterative to a relative tolerance of
:data:`TOLERANCE` instead of a direct sparse solve.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gestaltxai.metrics.faithfulness import _curve, _prepare, relevance_ranks
from gestaltxai.saliency.region import per_pixel, with_label_zero

Array = jax.Array

#: The removed fractions of the ROAD paper and of pytorch-grad-cam's ROAD averages.
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The ROAD code's noise, 0.01 absolute on [0, 1] images, as a share of the value range.
NOISE_LEVEL = 0.01
#: Neighbour weights of the imputation: direct neighbours and diagonal ones.
DIRECT_WEIGHT, DIAGONAL_WEIGHT = 1 / 6, 1 / 12
#: Conjugate gradients stop at this residual relative to the right-hand side ...
TOLERANCE = 1e-5
#: ... or after this many iterations (a hole d pixels across needs about d of them).
MAX_ITERATIONS = 2000


class Road(NamedTuple):
  """ROAD curves (a pytree).

  Attributes:
    fractions: (F,) the share of pixels (regions) removed at each point.
    most_relevant_first, least_relevant_first: (B, F) the target's softmax
      probability with that share removed, MoRF and LeRF.
    score: (B,) (mean LeRF - mean MoRF) / 2; higher is better.
  """

  fractions: Array
  most_relevant_first: Array
  least_relevant_first: Array
  score: Array


def _stencil(channels: int, dtype) -> Array:
  """(3, 3, 1, C) depthwise kernel: the neighbour weights, 0 at the centre."""
  kernel = np.array([[DIAGONAL_WEIGHT, DIRECT_WEIGHT, DIAGONAL_WEIGHT],
                     [DIRECT_WEIGHT, 0.0, DIRECT_WEIGHT],
                     [DIAGONAL_WEIGHT, DIRECT_WEIGHT, DIAGONAL_WEIGHT]])
  return jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), dtype)


def _neighbour_sum(values: Array) -> Array:
  """(B, H, W, C): the weighted sum of each pixel's in-image neighbours (zero padding)."""
  return lax.conv_general_dilated(values, _stencil(values.shape[-1], values.dtype), (1, 1),
                                  'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=values.shape[-1],
                                  precision=lax.Precision.HIGHEST)


def linear_imputation(x: Array, removed: Array, *, tolerance: float = TOLERANCE,
                      max_iterations: int = MAX_ITERATIONS) -> Array:
  """The ROAD imputation without noise: removed pixels solved from their neighbours.

  Args:
    x: (B, H, W, C) float images.
    removed: (B, H, W) bool, True where a pixel is removed (all channels).

  Returns:
    (B, H, W, C): ``x`` where kept; where removed, the solution of
    ``weight_sum(p) * v(p) = sum over neighbours q of w(p, q) * v(q)`` (kept
    neighbours at their values), ``weight_sum`` counting in-image
    neighbours only.
  """
  hole = removed[..., None].astype(x.dtype)
  weight_sum = _neighbour_sum(jnp.ones_like(x[..., :1]))  # (B, H, W, 1): in-image neighbours
  rhs = hole * _neighbour_sum(x * (1 - hole))

  def solve(rhs_i, hole_i, weight_i):  # one image, so each stops at its own tolerance
    # Symmetric positive definite on the removed pixels: diag(weight_sum) - hole W hole.
    operator = lambda v: hole_i * (weight_i * v - _neighbour_sum((hole_i * v)[None])[0])
    jacobi = lambda v: hole_i * v / weight_i
    solution, _ = jax.scipy.sparse.linalg.cg(operator, rhs_i, x0=jacobi(rhs_i), tol=tolerance,
                                             maxiter=max_iterations, M=jacobi)
    return solution

  solution = jax.vmap(solve)(rhs, hole, weight_sum)
  return jnp.where(hole > 0, solution, x)


def noisy_linear_imputation(x: Array, removed: Array, key: Array, *,
                            noise_level: float = NOISE_LEVEL, tolerance: float = TOLERANCE,
                            max_iterations: int = MAX_ITERATIONS) -> Array:
  """:func:`linear_imputation` plus Gaussian noise of sigma ``noise_level`` x each image's
  value range on the removed pixels."""
  imputed = linear_imputation(x, removed, tolerance=tolerance, max_iterations=max_iterations)
  spread = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
  noise = noise_level * spread * jax.random.normal(key, x.shape, x.dtype)
  return jnp.where(removed[..., None], imputed + noise, x)


def _road(model, variables, target, key, removed_after, counts, total, options) -> Road:
  """MoRF and LeRF curves of ``removed_after(count, most_first)`` for each count."""
  noise_level, tolerance, max_iterations, max_batch, memory_budget, x = options
  curves = []
  for order, most_first in enumerate((True, False)):
    def image_after(count, most_first=most_first, order=order):
      step_key = jax.random.fold_in(jax.random.fold_in(key, order), count)
      return noisy_linear_imputation(x, removed_after(count, most_first), step_key,
                                     noise_level=noise_level, tolerance=tolerance,
                                     max_iterations=max_iterations)
    curves.append(_curve(model, variables, target, image_after, counts, total, max_batch,
                         memory_budget))
  morf, lerf = curves[0].probabilities, curves[1].probabilities
  return Road(curves[0].fractions, morf, lerf, (lerf.mean(1) - morf.mean(1)) / 2)


def road(model, variables, x: Array, relevance: Array, target: Optional[Array] = None, *,
         fractions: tuple[float, ...] = FRACTIONS, noise_level: float = NOISE_LEVEL,
         key: Optional[Array] = None, tolerance: float = TOLERANCE,
         max_iterations: int = MAX_ITERATIONS, max_batch: Optional[int] = None,
         memory_budget: Optional[int] = None) -> Road:
  """ROAD of relevance maps: MoRF and LeRF with noisy linear imputation, batched on device.

  Args:
    model, variables: any model ``explainable`` accepts, and its variables.
    x: (B, H, W, C) float images.
    relevance: (B, H, W) float maps.
    target: (B,) int classes; the predicted class when None.
    fractions: the shares of pixels removed, each in (0, 1); floor(p H W)
      pixels at share p.
    noise_level: the imputation noise's sigma over each image's value range.
    key: the noise's randomness (default ``PRNGKey(0)``).
    tolerance, max_iterations: the conjugate-gradient solve.
    max_batch, memory_budget: images per forward, or the bytes they may take.

  Returns:
    :class:`Road`, 2 F forwards per image.
  """
  if np.shape(relevance) != np.shape(x)[:3]:
    raise ValueError(f'road: relevance must be (B, H, W) = {np.shape(x)[:3]}, got '
                     f'{np.shape(relevance)}')
  _check_fractions(fractions)
  # A list of fractions works as well as a tuple: they compile in, so they must hash.
  return _road_pixels(model, variables, x, relevance, target,
                      fractions=tuple(float(f) for f in fractions), noise_level=noise_level,
                      key=key, tolerance=tolerance, max_iterations=max_iterations,
                      max_batch=max_batch, memory_budget=memory_budget)


@functools.partial(jax.jit, static_argnames=('model', 'fractions', 'max_iterations',
                                             'max_batch', 'memory_budget'))
def _road_pixels(model, variables, x, relevance, target, *, fractions, noise_level, key,
                 tolerance, max_iterations, max_batch, memory_budget) -> Road:
  model, target = _prepare(model, variables, x, target)
  key = jax.random.PRNGKey(0) if key is None else key
  ranks = relevance_ranks(relevance)
  num_pixels = x.shape[1] * x.shape[2]
  counts = np.floor(np.asarray(fractions) * num_pixels).astype(np.int64)

  def removed_after(count, most_first):
    return ranks < count if most_first else ranks >= num_pixels - count

  return _road(model, variables, target, key, removed_after, counts, num_pixels,
               (noise_level, tolerance, max_iterations, max_batch, memory_budget, x))


@functools.partial(jax.jit, static_argnames=('model', 'max_iterations', 'max_batch',
                                             'memory_budget'))
def region_road(model, variables, x: Array, coefficients: Array, regions: Array,
                target: Optional[Array] = None, *, noise_level: float = NOISE_LEVEL,
                key: Optional[Array] = None, tolerance: float = TOLERANCE,
                max_iterations: int = MAX_ITERATIONS, max_batch: Optional[int] = None,
                memory_budget: Optional[int] = None) -> Road:
  """ROAD over face regions: whole regions removed in coefficient order, then imputed.

  Args:
    coefficients: (B, R) float, column k for label k (column 0, no region,
      never removed); NaN (a region absent from the image) counts as least
      relevant.
    regions: (B, H, W) int labels.
    Others as :func:`road`.

  Returns:
    :class:`Road` at k = 1..R - 2 of the R - 1 regions removed (fractions
    k / (R - 1)); removing none or all is the same in both orders.
  """
  if regions.shape != x.shape[:3] or coefficients.ndim != 2 or coefficients.shape[1] < 3:
    raise ValueError(f'region_road: expected coefficients (B, R) with R >= 3 (none and two '
                     f'regions at least) and regions (B, H, W) = {x.shape[:3]}; got '
                     f'{coefficients.shape} and {regions.shape}')
  model, target = _prepare(model, variables, x, target)
  key = jax.random.PRNGKey(0) if key is None else key
  players = coefficients[:, 1:]
  num_players = players.shape[1]
  order = relevance_ranks(jnp.where(jnp.isnan(players), -jnp.inf, players))
  labels = regions.astype(jnp.int32)

  def removed_after(count, most_first):
    chosen = order < count if most_first else order >= num_players - count
    removed, _ = per_pixel(with_label_zero(chosen), labels)  # label 0 is never removed
    return removed

  return _road(model, variables, target, key, removed_after, np.arange(1, num_players),
               num_players, (noise_level, tolerance, max_iterations, max_batch, memory_budget,
                             x))


def _check_fractions(fractions) -> None:
  values = np.asarray(fractions, float)
  if values.ndim != 1 or not len(values) or ((values <= 0) | (values >= 1)).any():
    raise ValueError(f'road: fractions must be shares in (0, 1), got {fractions!r}')
