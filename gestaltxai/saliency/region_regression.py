"""Region methods that fit a linear model to coalitions: KernelSHAP and LIME.

Players, coalitions and results are those of :mod:`~gestaltxai.saliency.region`:
the players are the labels 1..R of a region map, a player left out has its
pixels set to the baseline, the score is the target logit, and results are
(B, num_regions) with column 0 (no player) 0. Where the exact Shapley value
needs 2^R forwards, these sample a declared number of coalitions (the same
for every image of the batch, drawn from ``key``), evaluate them in passes of
``max_batch`` images inside one computation, and solve a small weighted
least-squares problem per image. Sampling is paired: each coalition comes
with its complement, which cancels the even part of the sampling error.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency.checks import non_negative, positive_int
from gestaltxai.saliency.chunking import auto_chunked_map
from gestaltxai.saliency.core import result_dtype
from gestaltxai.saliency.region import (REGION_CHECKS, coalition_value, count_players,
                                        prepare_players, region_game)
from gestaltxai.saliency.registry import method

Array = jax.Array

#: Coalitions sampled by default: SHAP's KernelExplainer takes 2 R + 2048; 1,024
#: keeps the cost of 19 parsing regions near a 1,000-sample LIME.
DEFAULT_COALITIONS = 1024
#: lime_image's defaults: 1,000 samples, kernel width 0.25 on the cosine
#: distance of the coalition to the whole image, ridge penalty 1.
DEFAULT_LIME_SAMPLES = 1000
LIME_KERNEL_WIDTH = 0.25
LIME_RIDGE = 1.0


def even_when_paired(name: str, value) -> None:
  positive_int(name, value)
  if value % 2:
    raise ValueError(f'{name} must be even with paired=True (each coalition comes with its '
                     f'complement), got {value}; give an even number or paired=False')


def coalition_scores(score, batch, max_batch, memory_budget):
  """present (N, R) bool -> (N, B) target logits with the absent players at the baseline,
  ``max_batch`` images per forward (``score`` from the region game of
  :mod:`~gestaltxai.saliency.region`)."""
  value = coalition_value(score, batch)
  return lambda coalitions: auto_chunked_map(value, coalitions, batch, max_batch, memory_budget)


def shapley_kernel_coalitions(num_players: int) -> tuple[np.ndarray, np.ndarray]:
  """Every coalition but the empty and the full one, with the Shapley kernel weight.

  Returns:
    ((2^R - 2, R) bool, (2^R - 2,) float64 weights (R - 1) / (C(R, |z|) |z| (R - |z|))).
  """
  codes = np.arange(1, 2**num_players - 1)
  present = ((codes[:, None] >> np.arange(num_players)) & 1).astype(bool)
  sizes = present.sum(1)
  weights = (num_players - 1) / (np.array([math.comb(num_players, int(s)) for s in sizes])
                                 * sizes * (num_players - sizes))
  return present, weights


def sampled_kernel_coalitions(key, num_players: int, count: int, paired: bool) -> Array:
  """(count, R) bool coalitions drawn from the Shapley kernel, all of weight 1.

  A size k in 1..R-1 with probability proportional to (R - 1) / (k (R - k)),
  then k players uniformly (the kernel's weight of a coalition, times the
  C(R, k) coalitions of its size); with ``paired`` the second half are the
  complements of the first.
  """
  drawn = count // 2 if paired else count
  sizes = jnp.arange(1, num_players)
  logits = jnp.log((num_players - 1) / (sizes * (num_players - sizes)))
  size_key, order_key = jax.random.split(key)
  size = 1 + jax.random.categorical(size_key, logits, shape=(drawn,))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(order_key, (drawn, num_players)), 1), 1)
  present = ranks < size[:, None]
  return jnp.concatenate([present, ~present]) if paired else present


def constrained_least_squares(present, weights, gains, total):
  """Solves min sum_i w_i (gain_i - z_i . phi)^2 subject to sum(phi) = total, per image.

  Args:
    present: (N, R) coalitions z; weights (N,); gains (N, B) v(z) - v(empty);
    total: (B,) v(full) - v(empty).

  Returns:
    (B, R) phi, from the KKT system of the equality-constrained problem.
  """
  z = present.astype(gains.dtype)
  num_players = z.shape[1]
  gram = jnp.einsum('n,nr,ns->rs', weights, z, z)
  ones = jnp.ones((num_players, 1), gains.dtype)
  kkt = jnp.block([[gram, ones], [ones.T, jnp.zeros((1, 1), gains.dtype)]])
  rhs = jnp.concatenate([jnp.einsum('n,nr,nb->rb', weights, z, gains), total[None]])
  return jnp.linalg.solve(kkt, rhs)[:num_players].T


def kernel_shap_cost(options, height, width) -> tuple[int, int]:
  """Forwards per image: the coalitions (at most 2^R - 2: then all, exactly) + empty + full."""
  del height, width
  players = count_players(options)
  return min(options['coalitions'], 2**players - 2) + 2, 0


@method('region_kernel_shap', 'KernelShap', space='region', cost=kernel_shap_cost,
        traced=('regions', 'baseline'), checks={**REGION_CHECKS, 'coalitions': positive_int},
        prepare=prepare_players)
def region_kernel_shap(model, variables, x, target, *, key, regions, num_regions=None,
                       region_ids=None, background=None, coalitions=DEFAULT_COALITIONS,
                       paired=True, baseline=0.0, max_batch=None, memory_budget=None):
  """KernelSHAP of the regions, (B, num_columns) float32, column k for label k. Cost:
  coalitions + 2 forwards.

  The weighted linear fit of v(S) (the target logit with the regions outside
  S at the baseline) whose values sum to v(all) - v(none) exactly (Lundberg
  and Lee 2017). With ``coalitions`` >= 2^R - 2 every coalition is evaluated
  with the Shapley kernel weight and the result is the exact Shapley value
  (:func:`~gestaltxai.saliency.region_shapley`); with fewer, coalitions are
  drawn from the kernel (see :func:`sampled_kernel_coalitions`), paired. Captum's
  ``KernelShap`` samples the same way but fits without the constraint (a
  weight of 10^6 on the empty and the full coalition instead).

  Args:
    regions, num_regions, region_ids, background: the players, as for
      :func:`~gestaltxai.saliency.region_shapley` (the labels present by default;
      ``background=0`` holds the face study's "none" fixed).
    coalitions: coalitions evaluated besides the empty and the full one.
    paired: sample each coalition with its complement (``coalitions`` even).
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  score, columns, players = region_game('region_kernel_shap', model, variables, x, target, regions,
                                        num_regions, region_ids, background, baseline)
  dtype = result_dtype(x)
  exact = coalitions >= 2**players - 2
  if paired and not exact:
    even_when_paired('region_kernel_shap: coalitions', coalitions)
  scores = coalition_scores(score, x.shape[0], max_batch, memory_budget)
  if exact:
    present, weights = shapley_kernel_coalitions(players)
    present, weights = jnp.asarray(present), jnp.asarray(weights, dtype)
  else:
    present = sampled_kernel_coalitions(key, players, coalitions, paired)
    weights = jnp.ones(coalitions, dtype)
  ends = jnp.stack([jnp.zeros(players, bool), jnp.ones(players, bool)])
  values = scores(jnp.concatenate([ends, present])).astype(dtype)  # (2 + N, B)
  empty, full = values[0], values[1]
  phi = constrained_least_squares(present, weights, values[2:] - empty, full - empty)
  return columns(phi.astype(dtype))


def lime_coalitions(key, num_players: int, count: int, paired: bool) -> Array:
  """(count + 1, R) bool: the whole image first (as lime_image), then players present with
  probability 1/2 each; with ``paired`` the second half complements the first."""
  drawn = count // 2 if paired else count
  present = jax.random.bernoulli(key, 0.5, (drawn, num_players))
  sampled = jnp.concatenate([present, ~present]) if paired else present
  return jnp.concatenate([jnp.ones((1, num_players), bool), sampled])


def lime_weights(present, kernel_width):
  """sqrt(exp(-d^2 / width^2)), d the cosine distance of each coalition to the whole image
  (1 for the empty one, as scikit-learn's cosine distance of a zero vector)."""
  size = present.sum(1).astype(jnp.result_type(float))
  distance = 1.0 - jnp.sqrt(size / present.shape[1])
  return jnp.sqrt(jnp.exp(-jnp.square(distance) / kernel_width**2))


def ridge_with_intercept(present, weights, scores, ridge):
  """(B, R) coefficients of min sum_i w_i (y_i - b - z_i . phi)^2 + ridge |phi|^2 per image
  (the intercept b unpenalised, scikit-learn's ``Ridge`` with ``sample_weight``)."""
  design = jnp.concatenate([jnp.ones((present.shape[0], 1), scores.dtype),
                            present.astype(scores.dtype)], axis=1)
  penalty = ridge * jnp.diag(jnp.ones(design.shape[1], scores.dtype).at[0].set(0.0))
  gram = jnp.einsum('n,nr,ns->rs', weights, design, design) + penalty
  return jnp.linalg.solve(gram, jnp.einsum('n,nr,nb->rb', weights, design, scores))[1:].T


@method('region_lime', 'Lime', space='region',
        cost=lambda options, height, width: (options['coalitions'] + 1, 0),
        traced=('regions', 'baseline'),
        checks={**REGION_CHECKS, 'coalitions': positive_int, 'kernel_width': non_negative,
                'ridge': non_negative}, prepare=prepare_players)
def region_lime(model, variables, x, target, *, key, regions, num_regions=None, region_ids=None,
                background=None, coalitions=DEFAULT_LIME_SAMPLES, paired=True,
                kernel_width=LIME_KERNEL_WIDTH, ridge=LIME_RIDGE, baseline=0.0, max_batch=None,
                memory_budget=None):
  """LIME over the regions, (B, num_columns) float32, column k for label k. Cost:
  coalitions + 1 forwards.

  lime_image's explanation (Ribeiro et al. 2016) with the regions as
  superpixels: the whole image and ``coalitions`` random ones (each region
  kept with probability 1/2, paired), weighted by an exponential kernel of
  width ``kernel_width`` on the cosine distance to the whole image, fitted by
  ridge regression with an intercept (see :func:`ridge_with_intercept`); the
  target logit is the response. Captum's ``Lime`` defaults to a Lasso on a
  kernel of the images' distance; ``Lime(interpretable_model=SkLearnRidge(alpha=1))``
  with this kernel and these coalitions gives the same numbers.

  Args:
    regions, num_regions, region_ids, background: the players, as for
      :func:`~gestaltxai.saliency.region_shapley` (the labels present by default;
      ``background=0`` holds the face study's "none" fixed).
    coalitions: random coalitions evaluated besides the whole image.
    paired: sample each coalition with its complement (``coalitions`` even).
    kernel_width: the width of the similarity kernel.
    ridge: the L2 penalty on the coefficients.
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  score, columns, players = region_game('region_lime', model, variables, x, target, regions,
                                        num_regions, region_ids, background, baseline)
  dtype = result_dtype(x)
  if paired:
    even_when_paired('region_lime: coalitions', coalitions)
  present = lime_coalitions(key, players, coalitions, paired)
  scores = coalition_scores(score, x.shape[0], max_batch, memory_budget)(present).astype(dtype)
  phi = ridge_with_intercept(present, lime_weights(present, kernel_width).astype(dtype), scores,
                             ridge)
  return columns(phi.astype(dtype))
