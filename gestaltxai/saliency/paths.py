"""Path methods beyond the straight line: Guided IG, Blur IG and expected gradients.

Each integrates gradients along a path from a reference to the image:

* Guided IG (Kapishnikov et al. 2021) moves, at each step, the features whose
  gradient is smallest, so the path avoids the regions where the model's
  output changes fast (PAIR saliency's ``GuidedIG``);
* Blur IG (Xu et al. 2020) walks from a heavily blurred image to the image
  along a scale-space path, no black baseline (PAIR saliency's ``BlurIG``);
* expected gradients (Erion et al. 2021; Captum's ``GradientShap``) averages
  (x - b) * grad(b + alpha (x - b)) over references b drawn from a
  distribution and random points alpha on the path.

Option names follow PAIR saliency and Captum where they have them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency.checks import broadcast_baseline, non_negative, optional, positive_int
from gestaltxai.saliency.chunking import chunk_size, chunked_sum
from gestaltxai.saliency.core import input_gradient, result_dtype
from gestaltxai.saliency.registry import method

#: PAIR's closeness of the L1 distance to its target for a step (math.isclose tolerances).
GUIDED_IG_EPSILON = 1e-9
#: In float32 the L1 sums over ~10^5 features carry rounding far above 1e-9 of
#: the total; a step also ends within this many float epsilons of its target.
GUIDED_IG_ROUNDING_EPS = 64


def _guided_step(x, attribution, gradient, x_input, x_baseline, step, steps, fraction,
                 max_dist):
  """One Guided IG step of one image (PAIR's ``guided_ig_impl`` loop body), vectorised.

  Moves the features with the smallest |gradient| toward the input, a
  ``fraction`` of them at a time, until the L1 distance to the input is
  ``1 - (step + 1) / steps`` of the total, no feature straying more than
  ``max_dist`` (in alpha) from the straight line.

  Returns:
    (x, attribution) after the step, in x's dtype.
  """
  dtype = x.dtype
  l1_total = jnp.abs(x_input - x_baseline).sum()
  difference = x_input - x_baseline
  alpha = (step + 1.0) / steps
  alpha_min, alpha_max = jnp.maximum(alpha - max_dist, 0.0), jnp.minimum(alpha + max_dist, 1.0)
  x_min, x_max = x_baseline + difference * alpha_min, x_baseline + difference * alpha_max
  l1_target = l1_total * (1.0 - (step + 1.0) / steps)
  tolerance = jnp.maximum(GUIDED_IG_EPSILON, GUIDED_IG_ROUNDING_EPS * jnp.finfo(dtype).eps)
  safe_difference = jnp.where(difference != 0, difference, 1.0)

  def moving(state):
    return state[2]

  def move(state):
    x, attribution, _ = state
    x_old = x
    x_alpha = jnp.where(difference != 0, (x - x_baseline) / safe_difference, alpha_max)
    x = jnp.where(x_alpha < alpha_min, x_min, x)  # features left behind catch up
    l1_current = jnp.abs(x - x_input).sum()
    close = jnp.abs(l1_target - l1_current) <= tolerance * jnp.maximum(
        jnp.maximum(jnp.abs(l1_target), jnp.abs(l1_current)), 1.0)
    # Features at x_max cannot move further this step; the rest compete by |gradient|.
    free = x != x_max
    magnitude = jnp.where(free, jnp.abs(gradient), jnp.inf)
    threshold = jnp.quantile(magnitude.reshape(-1), fraction, method='lower')
    selected = (magnitude <= threshold) & free
    l1_selected = (jnp.abs(x - x_max) * selected).sum()
    gamma = jnp.where(l1_selected > 0,
                      (l1_current - l1_target) / jnp.where(l1_selected > 0, l1_selected, 1.0),
                      jnp.inf)
    moved = jnp.where(gamma > 1, x_max, x + (x_max - x) * jnp.minimum(gamma, 1.0))
    x = jnp.where(selected & ~close, moved, x)
    attribution = attribution + (x - x_old) * gradient
    # PAIR loops while gamma > 1; nothing left to move (l1_selected = 0) ends it too.
    return x, attribution, (gamma > 1) & ~close & (l1_selected > 0)

  x, attribution, _ = jax.lax.while_loop(moving, move, (x, attribution, jnp.array(True)))
  return x.astype(dtype), attribution


@method('guided_integrated_gradients', 'GuidedIG',
        cost=lambda options, height, width: (options['steps'], options['steps']),
        traced=('baseline',),
        checks={'steps': positive_int, 'fraction': non_negative, 'max_dist': non_negative})
def guided_integrated_gradients(model, variables, x, target, *, key=None, steps=200,
                                fraction=0.25, max_dist=0.02, baseline=0.0):
  """Guided integrated gradients, (B, H, W, 3) float32. Cost: ``steps`` x (forward + backward).

  PAIR saliency's ``GuidedIG`` (defaults ``x_steps=200, fraction=0.25,
  max_dist=0.02``, zero baseline): each step takes the gradient at the
  current point, then moves the ``fraction`` of features with the smallest
  |gradient| toward the input until the step's share of the L1 distance is
  covered, no feature more than ``max_dist`` (in alpha) off the straight
  line; the attribution sums (change of x) * gradient. ``max_dist=0`` is
  left-Riemann IG. Steps follow one another (each starts where the last
  ended), so a pass is the B images of the batch.

  Args:
    steps: gradient evaluations along the path (PAIR's ``x_steps``).
    fraction: the share of features, in [0, 1], moved at a time.
    max_dist: how far, in [0, 1] of the path, a feature may lead or lag.
    baseline: where the path starts: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
  """
  del key
  dtype = result_dtype(x)
  x = x.astype(dtype)
  start = broadcast_baseline(baseline, x).astype(dtype)
  guided = jax.vmap(_guided_step, in_axes=(0, 0, 0, 0, 0, None, None, None, None))

  def one_step(step, state):
    point, attribution = state
    gradient = input_gradient(model, variables, point, target).astype(dtype)
    return guided(point, attribution, gradient, x, start, step.astype(dtype), steps, fraction,
                  max_dist)

  _, attribution = jax.lax.fori_loop(0, steps, one_step, (start, jnp.zeros_like(x)))
  return attribution


def gaussian_blur_matrix(size: int, sigma, truncate: float, max_radius: int):
  """(size, size) matrix of a 1-D Gaussian blur with zeros beyond the border.

  scipy.ndimage's ``gaussian_filter1d(mode='constant')``: kernel radius
  ``int(truncate * sigma + 0.5)``, normalised over the whole kernel (the part
  beyond the border multiplies the zero padding); sigma = 0 is the identity.
  ``sigma`` may be traced; ``max_radius`` bounds the radius statically.
  """
  sigma = jnp.asarray(sigma)
  radius = jnp.floor(truncate * sigma + 0.5)
  safe_sigma = jnp.where(sigma > 0, sigma, 1.0)

  def kernel(offset):
    return jnp.where(jnp.abs(offset) <= radius, jnp.exp(-0.5 * (offset / safe_sigma)**2), 0.0)

  norm = kernel(jnp.arange(-max_radius, max_radius + 1, dtype=sigma.dtype)).sum()
  distance = (jnp.arange(size)[:, None] - jnp.arange(size)[None, :]).astype(sigma.dtype)
  blur = kernel(distance) / norm
  return jnp.where(sigma > 0, blur, jnp.eye(size, dtype=sigma.dtype))


#: scipy.ndimage.gaussian_filter's default kernel extent, in sigmas (PAIR's blur uses it).
BLUR_TRUNCATE = 4.0
#: Matrix products along one image axis per Blur IG step: the blurred point and
#: the sigma derivative (2 FLOPs x H x W x C x the axis length each). At 224 px
#: they add ~0.4 GFLOP an image a step to a ~12 GFLOP ResNet-50 gradient.
BLUR_PRODUCTS = 6


def blur_path_sigmas(max_sigma: float, steps: int, sqrt: bool = False) -> np.ndarray:
  """(steps + 1,) float64: the blur of each point, 0 (the image) to ``max_sigma`` (PAIR)."""
  fractions = np.arange(steps + 1) / steps
  return np.sqrt(fractions * max_sigma) if sqrt else fractions * max_sigma


@method('blur_integrated_gradients', 'BlurIG',
        cost=lambda options, height, width: (options['steps'], options['steps']),
        checks={'steps': positive_int, 'max_sigma': non_negative, 'grad_step': non_negative,
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def blur_integrated_gradients(model, variables, x, target, *, key=None, max_sigma=50.0,
                              steps=100, grad_step=0.01, sqrt=False, max_batch=None,
                              memory_budget=None):
  """Blur IG, (B, H, W, 3) float32. Cost: ``steps`` x (forward + backward).

  PAIR saliency's ``BlurIG`` (defaults ``max_sigma=50, steps=100,
  grad_step=0.01``): the path runs from x blurred with sigma = ``max_sigma``
  to x; point i is x blurred with sigma_i = i ``max_sigma`` / steps (Gaussian,
  zero padding, scipy's kernel); the attribution is
  -sum_i (sigma_(i+1) - sigma_i) d blur(x, sigma) / d sigma * grad(blur(x, sigma_i)),
  the derivative a forward difference of ``grad_step``. Blurring is over
  height and width, each channel alone, on the model's input (BGR minus the
  mean: the padding is the mean colour).

  Args:
    max_sigma: the blur of the path's start, in pixels.
    steps: points on the path.
    grad_step: the sigma step of the derivative's forward difference.
    sqrt: space the sigmas as sqrt(i max_sigma / steps) (PAIR's ``sqrt``).
    max_batch, memory_budget: the most images per pass, or the bytes the
      passes may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  dtype = result_dtype(x)
  x = x.astype(dtype)
  sigmas = blur_path_sigmas(max_sigma, steps, sqrt)
  max_radius = int(BLUR_TRUNCATE * (sigmas.max() + grad_step) + 0.5) + 1
  height, width = x.shape[1:3]

  def blur_matrices(sigma):
    return (gaussian_blur_matrix(height, sigma, BLUR_TRUNCATE, max_radius),
            gaussian_blur_matrix(width, sigma, BLUR_TRUNCATE, max_radius))

  def path_term(point):
    sigma, step_size = point
    rows, cols = blur_matrices(sigma)
    rows_next, cols_next = blur_matrices(sigma + grad_step)
    # d blur / d sigma as a difference of blur matrices, not of blurred images (the
    # images' large values would cancel in float32): (R' - R) x C' + R x (C' - C).
    # Six products of one axis each (BLUR_PRODUCTS).
    along_cols = lambda matrix: jnp.einsum('bhwc,Ww->bhWc', x, matrix)
    along_rows = lambda matrix, images: jnp.einsum('Hh,bhwc->bHwc', matrix, images)
    blurred = along_rows(rows, along_cols(cols))
    derivative = (along_rows((rows_next - rows) / grad_step, along_cols(cols_next))
                  + along_rows(rows, along_cols((cols_next - cols) / grad_step)))
    gradient = input_gradient(model, variables, blurred, target).astype(dtype)
    return step_size * derivative * gradient

  points = (jnp.asarray(sigmas[:-1], dtype), jnp.asarray(np.diff(sigmas), dtype))
  chunk = chunk_size(path_term, points, x.shape[0], max_batch, memory_budget)
  return -chunked_sum(path_term, points, chunk)


def reference_distribution(baselines, x) -> jax.Array:
  """(K, B, H, W, C): K references for every image.

  (K, H, W, C) is a distribution of K reference images (Captum's
  ``baselines`` for GradientShap); anything else is one reference broadcast
  as :func:`~gestaltxai.saliency.checks.broadcast_baseline` does (K = 1).
  """
  if np.ndim(baselines) == 4 and tuple(np.shape(baselines)[1:]) == tuple(x.shape[1:]):
    return jnp.broadcast_to(jnp.asarray(baselines, x.dtype)[:, None],
                            (np.shape(baselines)[0], *x.shape))
  return broadcast_baseline(baselines, x, 'baselines')[None]


def expected_gradients_draws(key, samples: int, batch: int, num_references: int):
  """The randomness of expected gradients, from ``key``.

  Returns:
    (references (samples, B) int32 indices into the distribution, alphas
    (samples, B) uniform in [0, 1), noise keys (samples,)): sample s of
    image b takes reference ``references[s, b]``, the point
    ``alphas[s, b]`` of the way, and noise from ``noise_keys[s]``.
  """
  reference_key, alpha_key, noise_key = jax.random.split(key, 3)
  references = jax.random.randint(reference_key, (samples, batch), 0, num_references)
  alphas = jax.random.uniform(alpha_key, (samples, batch))
  return references, alphas, jax.random.split(noise_key, samples)


@method('expected_gradients', 'GradientShap',
        cost=lambda options, height, width: (options['samples'], options['samples']),
        traced=('baselines', 'sigma'),
        checks={'samples': positive_int, 'sigma': non_negative,
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def expected_gradients(model, variables, x, target, *, key, samples=5, baselines=0.0, sigma=0.0,
                       max_batch=None, memory_budget=None):
  """Expected gradients, (B, H, W, 3) float32. Cost: ``samples`` x (forward + backward).

  Captum's ``GradientShap`` (defaults ``n_samples=5, stdevs=0``): the mean
  over samples of (x' - b) * grad(b + alpha (x' - b)), with b drawn
  uniformly from ``baselines``, alpha uniform in [0, 1) and x' = x + N(0,
  ``sigma``^2), each image its own draws (see :func:`expected_gradients_draws`).
  The mean attribution sums to E[f(x') - f(b)] in expectation.

  Args:
    samples: draws per image (Captum's ``n_samples``).
    baselines: a distribution of references (K, H, W, C), or one reference
      (a scalar, (C,), (B, 1, 1, 1) or image-shaped).
    sigma: the standard deviation of the noise added to x (Captum's ``stdevs``).
    max_batch, memory_budget: the most images per pass, or the bytes the
      passes may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  dtype = result_dtype(x)
  x = x.astype(dtype)
  references = reference_distribution(baselines, x).astype(dtype)
  chosen, alphas, noise_keys = expected_gradients_draws(key, samples, x.shape[0],
                                                        references.shape[0])
  images = jnp.arange(x.shape[0])

  def one_sample(draw):
    index, alpha, noise_key = draw
    reference = references[index, images]
    noisy = x + sigma * jax.random.normal(noise_key, x.shape, dtype)
    delta = noisy - reference
    point = reference + alpha.astype(dtype)[:, None, None, None] * delta
    return delta * input_gradient(model, variables, point, target).astype(dtype)

  draws = (chosen, alphas, noise_keys)
  chunk = chunk_size(one_sample, draws, x.shape[0], max_batch, memory_budget)
  return chunked_sum(one_sample, draws, chunk) / samples
