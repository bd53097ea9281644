"""What the one method call does around a method: targets, empty batches, passes of images.

The policy for values that cannot be checked before tracing (the pure
functions under a caller's ``jax.jit``, ``vmap`` or ``grad``): the image's
result is NaN. NaN is loud where a wrong number is not: a regulariser, a
mean or a gradient with it is NaN, never a plausible 0. Everything that can
be checked without the values (shapes, dtypes, options, the model's output)
raises before tracing, and every host path (``attribute``, ``relevance``,
``compiled()`` called with concrete arrays, a pure function called eagerly)
raises for bad values too. ``jax.experimental.checkify`` would turn the NaN
into an error, but only for callers who wrap their own function in
``checkify`` and call ``.throw()``; it cannot raise from inside their ``jit``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency.chunking import chunked_map

Array = jax.Array


def is_traced(tree) -> bool:
  """Whether any leaf of ``tree`` is a tracer (inside jit, vmap or grad)."""
  return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def check_target(name: str, target, batch: int, num_classes: int) -> Array:
  """(B,) or (B, T) int targets; out-of-range values raise when they are concrete.

  Under tracing they cannot raise: :func:`valid_targets` marks them and the
  call gives NaN for those images.
  """
  target = jnp.asarray(target)
  if target.ndim not in (1, 2) or target.shape[0] != batch or not jnp.issubdtype(
      target.dtype, jnp.integer):
    raise ValueError(f'{name}: target must be (B,) or (B, T) int with B = {batch}, got shape '
                     f'{target.shape} dtype {target.dtype}')
  if not is_traced(target) and target.size:
    values = np.asarray(target)
    bad = sorted({int(t) for t in values[(values < 0) | (values >= num_classes)]})
    if bad:
      raise ValueError(f'{name}: target classes must lie in [0, {num_classes}) (0-based); got '
                       f'{bad}{binary_hint(num_classes)}')
  return target


def binary_hint(num_classes: int) -> str:
  return ('; the model gives one logit: class 1 is the positive logit, class 0 its negation'
          if num_classes == 2 else '')


def valid_targets(target: Array, num_classes: int) -> Array:
  return (target >= 0) & (target < num_classes)


def nan_where_invalid(result: Array, valid: Array) -> Array:
  """``result`` (B, ...) with the rows of invalid images NaN.

  Multiplied, not selected: a gradient through a loss of the result is NaN too (a select
  would pass a zero gradient back, and training would go on silently)."""
  valid = valid.reshape(valid.shape + (1,) * (result.ndim - valid.ndim))
  return result * jnp.where(valid, 1.0, jnp.nan).astype(result.dtype)


def per_image(value, x) -> bool:
  """Whether an option array has one entry per image: (B, H, W, ...) like the images (a
  region map, an image-shaped baseline) or (B, 1, 1, 1)."""
  shape = np.shape(value)
  batch = x.shape[0]
  return len(shape) >= 3 and (shape[:3] == tuple(x.shape[:3]) or (
      len(shape) == 4 and shape[0] == batch and shape[1:3] == (1, 1)))


def in_passes(fn: Callable[..., Array], x: Array, target: Array, key, options: Mapping[str, Any],
              size: int) -> Array:
  """``fn(x, target, key, **options)`` over groups of at most ``size`` images, one after
  another, so no pass holds more than ``size`` images (``max_batch`` below the batch size).

  Options with one entry per image (:func:`per_image`) are split with the images; the
  last group is padded with copies of the last image, whose results are dropped. Each
  group gets its own key (noise differs from one unsplit call).
  """
  batch = x.shape[0]
  groups = -(-batch // size)
  padded = groups * size

  def grouped(a):
    if padded != batch:
      a = jnp.concatenate([a, jnp.broadcast_to(a[-1:], (padded - batch, *a.shape[1:]))])
    return a.reshape(groups, size, *a.shape[1:])

  split = {k: grouped(jnp.asarray(v)) for k, v in options.items() if per_image(v, x)}
  shared = {k: v for k, v in options.items() if k not in split}
  keys = jax.random.split(key, groups)
  result = chunked_map(lambda item: fn(item[0], item[1], item[2], **shared, **item[3]),
                       (grouped(x), grouped(target), keys, split), 1)
  return result.reshape(padded, *result.shape[2:])[:batch]


def one_image(options: Mapping[str, Any], x) -> dict:
  """Options of a one-image stand-in for an empty batch (per-image arrays take one entry)."""
  return {k: jnp.zeros((1, *np.shape(v)[1:]), jnp.result_type(v)) if per_image(v, x) else v
          for k, v in options.items()}
