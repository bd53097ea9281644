"""The gradient family: gradient, input x gradient, integrated gradients."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency.checks import broadcast_baseline, one_of, optional, positive_int
from gestaltxai.saliency.chunking import chunk_size, chunked_sum
from gestaltxai.saliency.core import input_gradient, result_dtype
from gestaltxai.saliency.registry import method

#: Integrated-gradients quadrature rules (Captum's names): rule -> (alphas, weights).
INTEGRATION_RULES = {
    'riemann_right': lambda n: (np.arange(1, n + 1) / n, np.full(n, 1 / n)),
    'riemann_left': lambda n: (np.arange(n) / n, np.full(n, 1 / n)),
    'riemann_middle': lambda n: ((np.arange(n) + 0.5) / n, np.full(n, 1 / n)),
    # Captum's trapezoid: alphas on [0, 1] inclusive, steps of 1/n halved at
    # both ends (so the weights sum to (n - 1) / n, as Captum computes it).
    'riemann_trapezoid': lambda n: (np.linspace(0, 1, n),
                                    np.r_[0.5, np.ones(n - 2), 0.5] / n),
    'gausslegendre': lambda n: tuple(
        0.5 * a for a in (1 + np.polynomial.legendre.leggauss(n)[0],
                          np.polynomial.legendre.leggauss(n)[1])),
}


def integration_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
  """(alphas, weights), each (steps,) float64, of an IG quadrature rule."""
  if rule not in INTEGRATION_RULES:
    raise ValueError(f'unknown integration rule {rule!r}; choose from {sorted(INTEGRATION_RULES)}')
  if steps < (2 if rule == 'riemann_trapezoid' else 1):
    raise ValueError(f'{rule} needs more steps than {steps}')
  return INTEGRATION_RULES[rule](steps)


@method('gradient', 'Gradient', cost=(1, 1))
def gradient(model, variables, x, target, *, key=None):
  """d logit[target] / d x, (B, H, W, 3) float32. Cost: 1 forward + 1 backward.

  zennit's ``Gradient`` with a one-hot output gradient (the reference's
  "Gradient"); no absolute value (Captum's ``Saliency`` takes one).
  """
  del key
  return input_gradient(model, variables, x, target)


@method('input_x_gradient', 'InputXGradient', cost=(1, 1))
def input_x_gradient(model, variables, x, target, *, key=None):
  """x * d logit[target] / d x, (B, H, W, 3) float32 (Captum ``InputXGradient``)."""
  del key
  return x.astype(result_dtype(x)) * input_gradient(model, variables, x, target)


@method('integrated_gradients', 'IntegratedGradients',
        cost=lambda options, height, width: (options['steps'], options['steps']),
        traced=('baseline',),
        checks={'steps': positive_int, 'rule': one_of(INTEGRATION_RULES),
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def integrated_gradients(model, variables, x, target, *, key=None, steps=20,
                         rule='riemann_right', baseline=0.0, max_batch=None,
                         memory_budget=None):
  """Integrated gradients, (B, H, W, 3) float32. Cost: ``steps`` x (forward + backward).

  ``(x - baseline) * sum_k w_k grad(baseline + alpha_k (x - baseline))``. The
  default (20 steps, right Riemann, alpha_k = k / n, zero baseline) is zennit's
  ``IntegratedGradients(n_iter=20)``, the reference's; ``rule`` takes Captum's
  ``riemann_left``, ``riemann_middle``, ``riemann_trapezoid`` and
  ``gausslegendre`` (Captum's default) as well.

  Args:
    baseline: in the model's input space; a scalar, (C,), (B, 1, 1, 1) or
      image-shaped (see :func:`~gestaltxai.saliency.checks.broadcast_baseline`).
    max_batch: the most images per pass; steps run in chunks of
      ``max_batch // B``, one after another. Default: what is fastest on the
      backend and fits ``memory_budget`` (see :mod:`~gestaltxai.saliency.chunking`).
    memory_budget: bytes the passes may take when ``max_batch`` is None
      (default: a share of the device's memory).
  """
  del key
  alphas, weights = integration_points(rule, steps)
  baseline = broadcast_baseline(baseline, x)
  delta = x - baseline

  def weighted_gradient(point):
    alpha, weight = point
    return weight * input_gradient(model, variables, baseline + alpha.astype(x.dtype) * delta,
                                   target)

  dtype = result_dtype(x)
  points = (jnp.asarray(alphas, dtype), jnp.asarray(weights, dtype))
  chunk = chunk_size(weighted_gradient, points, x.shape[0], max_batch, memory_budget)
  return delta.astype(dtype) * chunked_sum(weighted_gradient, points, chunk)
