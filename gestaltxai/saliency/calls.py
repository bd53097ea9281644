"""The one call of a method: its inputs checked once, then targets, empty batches, passes.

:func:`call` is what ``method(model, variables, x, target, ...)`` does: it
checks the model, options, images and targets (:mod:`~gestaltxai.saliency.checks`)
and hands them to :func:`run`, which checks nothing. The compiled path
(:mod:`~gestaltxai.saliency.execution`) checks on the host and traces :func:`run`
alone, so nothing is checked twice.

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

import warnings
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.models.contract import explainable
from gestaltxai.models.outputs import checked_output
from gestaltxai.saliency import checks
from gestaltxai.saliency.chunking import chunked_map
from gestaltxai.saliency.core import predicted_class, result_dtype

Array = jax.Array


def is_traced(tree) -> bool:
  """Whether any leaf of ``tree`` is a tracer (inside jit, vmap or grad)."""
  return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def call(entry, model, variables, x, target=None, *, key: Optional[Array] = None, dtype=None,
         output=None, options: Mapping[str, Any]) -> Array:
  """``entry(model, variables, x, target, ...)``: the model, options, images and target
  checked once, then :func:`run` (see :meth:`~gestaltxai.saliency.registry.Method.__call__`)."""
  model = entry.check_model(explainable(model, output))
  variables = model.variables_of(variables)
  options = entry.resolve(options)
  if dtype is not None:
    model = model.with_dtype(dtype)
  x = checks.images(x)
  x = x.astype(result_dtype(x))
  if entry.prepare is not None:
    options = entry.prepare(entry.name, options, x)
  key = default_key(entry, key, stacklevel=4)  # warn -> call -> Method.__call__ -> caller
  model, num_classes = checked_output(model, variables, x)
  if target is not None:
    target = checks.targets(entry.name, target, x.shape[0], num_classes)
  return run(entry, model, variables, x, target, key, options, num_classes)


def run(entry, model, variables, x: Array, target: Optional[Array], key: Optional[Array],
        options: Mapping[str, Any], num_classes: int) -> Array:
  """The method on checked inputs; checks nothing.

  ``model`` is as :func:`~gestaltxai.models.outputs.checked_output` gives it
  (``num_classes`` its classes), ``x`` cast to the result dtype, ``options``
  resolved and ``target`` checked, or None for the predicted class. A (B, T)
  target runs one class at a time; an out-of-range target (possible only
  under tracing) gives NaN for its image.
  """
  if key is None:
    key = default_key(entry, key, stacklevel=3)
  if target is None:
    target = (predicted_class(model, variables, x) if x.shape[0]
              else jnp.zeros((0,), jnp.int32))
  if x.shape[0] == 0:
    return empty(entry, model, variables, x, target, key, options)
  max_batch = options.get('max_batch')

  def explain(t):
    valid = valid_targets(t, num_classes)
    one = lambda xs, ts, k, **o: entry.fn(model, variables, xs, ts, key=k, **o)
    safe = jnp.clip(t, 0, num_classes - 1)
    if max_batch is not None and max_batch < x.shape[0]:
      result = in_passes(one, x, safe, key, options, max_batch)
    else:
      result = one(x, safe, key, **options)
    return nan_where_invalid(result.astype(result_dtype(x)), valid)

  if target.ndim == 1:
    return explain(target)
  # One class at a time: memory stays that of one target, in one computation.
  return jnp.moveaxis(jax.lax.map(explain, target.T), 0, 1)


def default_key(entry, key: Optional[Array], stacklevel: int) -> Array:
  """``key``, or ``PRNGKey(0)`` for None (a method that draws noise warns: the same noise
  on every call)."""
  if key is None:
    if entry.random:
      warnings.warn(f'{entry.name}: key=None draws the same noise on every call '
                    '(PRNGKey(0)); pass key=jax.random.key(seed), a new one per call',
                    stacklevel=stacklevel)
    return jax.random.PRNGKey(0)
  return key


def empty(entry, model, variables, x: Array, target: Array, key: Array,
          options: Mapping[str, Any]) -> Array:
  """The result of an empty batch: (0, ...) of the shape one image would give."""
  if entry.space == 'region' and options.get('region_ids') == ():
    return jnp.zeros((0, 0), result_dtype(x))  # no label to name a column
  one = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
  shape = jax.eval_shape(
      lambda xs, ts: entry.fn(model, variables, xs, jnp.clip(ts, 0, None), key=key,
                              **one_image(options, x)), one,
      jax.ShapeDtypeStruct((1,), target.dtype))
  rest = shape.shape[1:] if target.ndim == 1 else (target.shape[1], *shape.shape[1:])
  return jnp.zeros((0, *rest), result_dtype(x))


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
