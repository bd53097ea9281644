"""Guided IG, Blur IG and expected gradients against float64 NumPy loops and closed forms.

The toy models have closed-form gradients (tests/toy_models.py), so each
reference needs no autodiff: Guided IG by a plain loop over steps and
selections (the published algorithm, feature by feature in NumPy), Blur IG
with scipy.ndimage's Gaussian filter, expected gradients with the same draws.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from gestaltxai import saliency
from gestaltxai.saliency import paths
from tests.toy_models import Linear, Quadratic

SHAPE = (2, 5, 6, 3)
TARGET = np.array([0, 2])


@pytest.fixture(scope='module')
def quadratic():
  """(model, float64 variables, float64 images, w[target] (B, H, W, C)): grad = 2 w x."""
  x = np.random.default_rng(0).normal(size=SHAPE)
  model = Quadratic(3)
  variables = model.init(jax.random.PRNGKey(1), jnp.zeros(SHAPE))
  variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
  return model, variables, x, variables['params']['w'][TARGET]


def quadratic_gradient(w, point):
  return 2 * w * point


def numpy_guided_ig(x, baseline, gradient_fn, steps, fraction, max_dist):
  """Guided IG of one image as the paper's Algorithm 1, one selection at a time, float64."""
  x, baseline = np.asarray(x, np.float64), np.asarray(baseline, np.float64)
  point, attribution = baseline.copy(), np.zeros_like(x)
  l1_total = np.abs(x - baseline).sum()
  for step in range(steps):
    gradient = gradient_fn(point)
    alpha = (step + 1) / steps
    low, high = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    x_low, x_high = baseline + (x - baseline) * low, baseline + (x - baseline) * high
    l1_target = l1_total * (1 - alpha)
    blocked = np.zeros(x.shape, bool)
    while True:
      old = point.copy()
      with np.errstate(divide='ignore', invalid='ignore'):
        position = np.where(x != baseline, (point - baseline) / (x - baseline), high)
      point[position < low] = x_low[position < low]
      l1_now = np.abs(point - x).sum()
      if np.isclose(l1_now, l1_target, rtol=1e-9, atol=1e-9):
        attribution += (point - old) * gradient
        break
      blocked |= point == x_high
      magnitude = np.where(blocked, np.inf, np.abs(gradient))
      threshold = np.sort(magnitude.ravel())[int(np.floor(fraction * (magnitude.size - 1)))]
      chosen = (magnitude <= threshold) & ~blocked
      room = np.abs(point - x_high)[chosen].sum()
      gamma = (l1_now - l1_target) / room if room > 0 else np.inf
      point[chosen] = x_high[chosen] if gamma > 1 else (point + (x_high - point) * gamma)[chosen]
      attribution += (point - old) * gradient
      if gamma <= 1:
        break
  return attribution


def test_guided_ig_follows_the_algorithm_step_by_step(quadratic):
  model, variables, x, w = quadratic
  options = dict(steps=8, fraction=0.3, max_dist=0.1)
  baseline = np.linspace(-0.5, 0.5, 3)
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('guided_integrated_gradients', model, variables, x,
                                        TARGET, baseline=baseline, **options))
  for b in range(SHAPE[0]):
    expected = numpy_guided_ig(x[b], np.broadcast_to(baseline, x[b].shape),
                               lambda p, b=b: quadratic_gradient(w[b], p), **options)
    np.testing.assert_allclose(got[b], expected, rtol=1e-9, atol=1e-12)


def test_guided_ig_without_deviation_is_left_riemann_ig(quadratic):
  """max_dist = 0 keeps the path straight: sum_k (x / n) 2 (k / n) w x, k = 0..n-1."""
  model, variables, x, w = quadratic
  steps = 6
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('guided_integrated_gradients', model, variables, x,
                                        TARGET, steps=steps, max_dist=0.0))
  expected = sum((x / steps) * quadratic_gradient(w, (k / steps) * x) for k in range(steps))
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_guided_ig_is_complete_on_a_linear_model():
  """Any path from b to x gives a linear model's attribution the sum w . (x - b), in float32."""
  x = np.random.default_rng(2).normal(size=SHAPE).astype(np.float32) * 50
  model = Linear(3)
  variables = model.init(jax.random.PRNGKey(3), jnp.zeros(SHAPE))
  got = np.asarray(saliency.attribute('guided_integrated_gradients', model, variables, x,
                                      TARGET, steps=20))
  w = np.asarray(variables['params']['w'], np.float64)[TARGET]
  expected = (w * x).sum(axis=(1, 2, 3))
  # float32 sums of ~90 terms of size ~50: rounding near 1e-5 of the total.
  np.testing.assert_allclose(got.sum(axis=(1, 2, 3)), expected, rtol=1e-4, atol=1e-3)


def numpy_blur_ig(x, gradient_fn, max_sigma, steps, grad_step):
  """Blur IG of one (H, W, C) image with scipy's Gaussian filter (zero padding), float64."""
  blur = lambda s: x if s == 0 else ndimage.gaussian_filter(x, [s, s, 0], mode='constant')
  sigmas = [i * max_sigma / steps for i in range(steps + 1)]
  total = np.zeros_like(x)
  for i in range(steps):
    derivative = (blur(sigmas[i] + grad_step) - blur(sigmas[i])) / grad_step
    total += (sigmas[i + 1] - sigmas[i]) * derivative * gradient_fn(blur(sigmas[i]))
  return -total


@pytest.mark.parametrize('max_sigma', [1.5, 4.0])  # a kernel inside the image, one past it
def test_blur_ig_matches_scipy_gaussian_path(quadratic, max_sigma):
  model, variables, x, w = quadratic
  options = dict(max_sigma=max_sigma, steps=7, grad_step=0.01)
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('blur_integrated_gradients', model, variables, x,
                                        TARGET, max_batch=4, **options))
  for b in range(SHAPE[0]):
    expected = numpy_blur_ig(x[b], lambda p, b=b: quadratic_gradient(w[b], p), **options)
    np.testing.assert_allclose(got[b], expected, rtol=1e-8, atol=1e-10)


def test_expected_gradients_uses_its_draws(quadratic):
  """With a distribution of 3 references and noise, against a loop over the same draws."""
  model, variables, x, w = quadratic
  references = np.random.default_rng(4).normal(size=(3, *SHAPE[1:]))
  samples, sigma, key = 5, 0.3, jax.random.PRNGKey(7)
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('expected_gradients', model, variables, x, TARGET,
                                        key=key, samples=samples, baselines=references,
                                        sigma=sigma, max_batch=4))
    chosen, alphas, noise_keys = paths.expected_gradients_draws(key, samples, SHAPE[0], 3)
    noises = np.asarray(jax.vmap(lambda k: jax.random.normal(k, SHAPE, jnp.float64))(noise_keys))
    chosen, alphas = np.asarray(chosen), np.asarray(alphas)
  expected = np.zeros(SHAPE)
  for s in range(samples):
    for b in range(SHAPE[0]):
      noisy = x[b] + sigma * noises[s][b]
      reference = references[chosen[s, b]]
      point = reference + alphas[s, b] * (noisy - reference)
      expected[b] += (noisy - reference) * quadratic_gradient(w[b], point) / samples
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
  assert len(set(chosen.ravel())) > 1  # the draws do pick different references
