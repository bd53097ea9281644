"""The noise family: SmoothGrad, SquareGrad and VarGrad as one wrapper over any method.

:func:`noise_tunnel` turns a method into its noisy average; it composes over
registered methods (``noise_tunnel(integrated_gradients, 'mean')`` works as
well) and never looks at method names.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from gestaltxai.saliency.checks import boolean, non_negative, optional, positive_int
from gestaltxai.saliency.chunking import chunk_size, chunked_sum
from gestaltxai.saliency.core import result_dtype
from gestaltxai.saliency.gradients import gradient
from gestaltxai.saliency.registry import Method, get_method, register

# Statistic of the per-sample attributions a: (sum a, sum a^2, n) -> result.
REDUCTIONS = {
    'mean': lambda s1, s2, n: s1 / n,
    'mean_square': lambda s1, s2, n: s2 / n,
    'variance': lambda s1, s2, n: s2 / n - jnp.square(s1 / n),
}


#: The options a noise tunnel adds to the method it wraps, with their defaults.
NOISE_OPTIONS = {'samples': 20, 'noise_level': 0.1, 'sigma': None, 'clean_last': None,
                 'max_batch': None, 'memory_budget': None}
#: Options a wrapped method that chunks its own passes shares with the tunnel.
CHUNKING_OPTIONS = ('max_batch', 'memory_budget')


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


def noise_tunnel(base, reduction: str, *, name: Optional[str] = None,
                 clean_last_default: bool = False, reference_names: Sequence[str] = ()) -> Method:
  """A method that reduces ``base`` over noisy copies of the input.

  Args:
    base: any :class:`~gestaltxai.saliency.registry.Method` (or its name);
      the result takes its options too, needs what it needs and costs
      ``samples`` times what it costs.
    reduction: 'mean' (SmoothGrad), 'mean_square' (SquareGrad, Captum's
      smoothgrad_sq) or 'variance' (VarGrad).
    name: the new method's name (default ``<reduction>_noise_<base>``).
    clean_last_default: whether the last of the samples is the clean input
      when the caller does not say (zennit's SmoothGrad does this, so that
      one sample equals the gradient; Captum's NoiseTunnel does not).

  Returns:
    a Method (not registered: :func:`~gestaltxai.saliency.registry.register`
    adds it to the table) with options ``samples=20, noise_level=0.1,
    sigma=None, clean_last=None, max_batch=None, memory_budget=None`` and
    those of ``base``.
  """
  base = get_method(base)
  if reduction not in REDUCTIONS:
    raise ValueError(f'reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}')
  reduce = REDUCTIONS[reduction]
  clashing = (set(NOISE_OPTIONS) - set(CHUNKING_OPTIONS)) & set(base.options)
  if clashing:
    raise ValueError(f'{base.name} has options {sorted(clashing)} of its own; it cannot be '
                     'wrapped in a noise tunnel')
  # A base that chunks its own passes (integrated gradients) gets the chunking options
  # and sees one noisy sample at a time, so they still bound the images per pass.
  base_chunks = 'max_batch' in base.options

  def noisy(model, variables, x, target, *, key, samples, noise_level, sigma, clean_last,
            max_batch, memory_budget, **base_options):
    if base_chunks:
      base_options.update(max_batch=max_batch, memory_budget=memory_budget)
    clean_last = clean_last_default if clean_last is None else clean_last
    std = noise_sigma(x, noise_level, sigma)
    keys = jax.random.split(key, samples)
    # Sample i is clean when it is the last and clean_last is set.
    scales = jnp.ones((samples,), result_dtype(x)).at[-1].set(0.0 if clean_last else 1.0)

    def one_sample(sample):
      sample_key, scale = sample
      noise = jax.random.normal(sample_key, x.shape, result_dtype(x)) * std * scale
      attribution = base.fn(model, variables, x + noise.astype(x.dtype), target, key=sample_key,
                            **base_options)
      return attribution, jnp.square(attribution)

    chunk = 1 if base_chunks else chunk_size(one_sample, (keys, scales), x.shape[0], max_batch,
                                             memory_budget)
    total, total_sq = chunked_sum(one_sample, (keys, scales), chunk)
    return reduce(total, total_sq, samples)

  noisy.__name__ = name or f'{reduction}_noise_{base.name}'
  noisy.__doc__ = (f'The {reduction} of ``{base.name}`` over noisy inputs (see '
                   ':func:`noise_tunnel`).')
  return Method(
      name=noisy.__name__, fn=noisy, space=base.space, needs=base.needs,
      options={**base.options, **NOISE_OPTIONS},
      traced=frozenset({'noise_level', 'sigma'}) | base.traced,
      cost=lambda o, h, w: tuple(o['samples'] * n for n in base.cost(o, h, w)),
      checks={'samples': positive_int, 'noise_level': non_negative,
              'sigma': optional(non_negative), 'clean_last': optional(boolean), 'max_batch': optional(positive_int),
              'memory_budget': optional(positive_int), **base.checks},
      reference_names=tuple(reference_names), random=True, prepare=base.prepare)


def _documented(entry: Method, doc: str) -> Method:
  entry.fn.__doc__ = doc
  return entry


smoothgrad = register(_documented(noise_tunnel(
    gradient, 'mean', name='smoothgrad', clean_last_default=True, reference_names=('SmoothGrad',)),
    """SmoothGrad, (B, H, W, 3) float32. Cost: ``samples`` x (forward + backward).

The mean gradient over ``samples`` inputs x + N(0, sigma^2), sigma =
``noise_level`` x (max - min) of each image, the last sample noise-free:
zennit's ``SmoothGrad(noise_level=0.1, n_iter=20)``, the reference's. With an
absolute ``sigma`` every sample is noisy (Captum ``NoiseTunnel(Saliency)``
without abs, ``stdevs=sigma``); ``clean_last`` overrides either way.
"""))
squaregrad = register(_documented(
    noise_tunnel(gradient, 'mean_square', name='squaregrad', reference_names=('SquareGrad',)),
    """SquareGrad: the mean squared gradient over noisy inputs (Captum smoothgrad_sq)."""))
vargrad = register(_documented(
    noise_tunnel(gradient, 'variance', name='vargrad', reference_names=('VarGrad',)),
    """VarGrad: the variance of the gradient over noisy inputs (Captum vargrad)."""))
