"""The noise family: SmoothGrad, SquareGrad and VarGrad as one wrapper over any method.

:func:`noise_tunnel` turns a method into its noisy average; it composes over
functions (``noise_tunnel(integrated_gradients, 'mean')`` works as well) and
never looks at method names.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from gestaltxai.saliency.chunking import chunk_size, chunked_sum
from gestaltxai.saliency.core import result_dtype
from gestaltxai.saliency.gradients import gradient

# Statistic of the per-sample attributions a: (sum a, sum a^2, n) -> result.
REDUCTIONS = {
    'mean': lambda s1, s2, n: s1 / n,
    'mean_square': lambda s1, s2, n: s2 / n,
    'variance': lambda s1, s2, n: s2 / n - jnp.square(s1 / n),
}


def noise_sigma(x, noise_level=0.1, sigma=None):
  """Noise standard deviation per image, (B, 1, 1, 1), at least float32.

  ``sigma`` (absolute, Captum's ``stdevs``) wins; otherwise ``noise_level``
  times each image's (max - min), as zennit and the SmoothGrad paper.
  """
  if sigma is not None:
    return jnp.broadcast_to(jnp.asarray(sigma, result_dtype(x)), (x.shape[0],)).reshape(-1, 1, 1, 1)
  axes = tuple(range(1, x.ndim))
  span = x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True)
  return (noise_level * span).astype(result_dtype(x))


def noise_tunnel(base, reduction: str, clean_last_default: bool = False):
  """A method that averages ``base`` over noisy copies of the input.

  Args:
    base: any method ``fn(model, variables, x, target, *, key, **options)``.
    reduction: 'mean' (SmoothGrad), 'mean_square' (SquareGrad, Captum's
      smoothgrad_sq) or 'variance' (VarGrad).
    clean_last_default: whether the last of the samples is the clean input
      when the caller does not say (zennit's SmoothGrad does this, so that
      one sample equals the gradient; Captum's NoiseTunnel does not).

  Returns:
    ``fn(model, variables, x, target, *, key, samples=20, noise_level=0.1,
    sigma=None, clean_last=None, max_batch=None, memory_budget=None,
    **base_options)``; cost:
    ``samples`` x the cost of ``base``.
  """
  reduce = REDUCTIONS[reduction]

  def method(model, variables, x, target, *, key=None, samples=20, noise_level=0.1,
             sigma=None, clean_last=None, max_batch=None, memory_budget=None, **base_options):
    if key is None:
      raise ValueError('noise methods need a key: pass key=jax.random.PRNGKey(...)')
    clean_last = clean_last_default if clean_last is None else clean_last
    std = noise_sigma(x, noise_level, sigma)
    keys = jax.random.split(key, samples)
    # Sample i is clean when it is the last and clean_last is set.
    scales = jnp.ones((samples,), result_dtype(x)).at[-1].set(0.0 if clean_last else 1.0)

    def one_sample(sample):
      sample_key, scale = sample
      noise = jax.random.normal(sample_key, x.shape, result_dtype(x)) * std * scale
      attribution = base(model, variables, x + noise.astype(x.dtype), target, key=sample_key,
                         **base_options)
      return attribution, jnp.square(attribution)

    chunk = chunk_size(one_sample, (keys, scales), x.shape[0], max_batch, memory_budget)
    total, total_sq = chunked_sum(one_sample, (keys, scales), chunk)
    return reduce(total, total_sq, samples)

  method.__name__ = f'noise_tunnel_{reduction}_{getattr(base, "__name__", "method")}'
  method.__doc__ = (f'{reduction} of ``{getattr(base, "__name__", "base")}`` over noisy inputs; '
                    'see :func:`noise_tunnel`.')
  return method


smoothgrad = noise_tunnel(gradient, 'mean', clean_last_default=True)
smoothgrad.__doc__ = """SmoothGrad, (B, H, W, 3) float32. Cost: ``samples`` x (forward + backward).

The mean gradient over ``samples`` inputs x + N(0, sigma^2), sigma =
``noise_level`` x (max - min) of each image, the last sample noise-free:
zennit's ``SmoothGrad(noise_level=0.1, n_iter=20)``, the reference's. With an
absolute ``sigma`` every sample is noisy (Captum ``NoiseTunnel(Saliency)``
without abs, ``stdevs=sigma``); ``clean_last`` overrides either way.
"""
squaregrad = noise_tunnel(gradient, 'mean_square')
squaregrad.__doc__ = """SquareGrad: the mean squared gradient over noisy inputs (Captum smoothgrad_sq)."""
vargrad = noise_tunnel(gradient, 'variance')
vargrad.__doc__ = """VarGrad: the variance of the gradient over noisy inputs (Captum vargrad)."""

