"""The checks on what a saliency call is given: option values, images, targets, baselines.

The option checks (:func:`positive_int`, :func:`one_of`, ...) are named in the
methods' declarations and run by :meth:`~gestaltxai.saliency.registry.Method.resolve`
before anything is traced. :func:`images` and :func:`targets` are the one
place images and targets are checked: every call path (the pure function,
:func:`~gestaltxai.saliency.attribute` and :func:`~gestaltxai.saliency.relevance`,
:func:`~gestaltxai.saliency.compiled`, :func:`~gestaltxai.saliency.predict`)
calls each of them once. Shapes and dtypes are checked always; values (a
target's range) when they are concrete; under tracing the call gives NaN for
an image whose target is out of range (see :mod:`~gestaltxai.saliency.calls`).
:func:`broadcast_baseline` checks a method's reference input against the
images, in the method (its shape is all it reads, so it raises under tracing too).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
#: An option check: raises ValueError with the reason, or returns nothing.
Check = Callable[[str, Any], None]


# Option checks, shared by the methods' declarations.

def positive_int(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f'{name} must be a positive int, got {value!r}')


def positive_ints(name: str, value) -> None:
  """An int or a pair of ints (height, width), each positive."""
  if np.ndim(value) > 0 and len(value) != 2:
    captum = (f'; Captum\'s (channels, height, width) {tuple(value)} is {tuple(value)[-2:]} '
              'here (windows span every channel)' if len(value) == 3 else '')
    raise ValueError(f'{name} must be an int or (height, width) in pixels, got '
                     f'{tuple(value)}{captum}')
  for v in (value,) if np.ndim(value) == 0 else tuple(value):
    positive_int(name, v)


def boolean(name: str, value) -> None:
  """A real bool: a string such as 'no' would read as True."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f'{name} must be True or False, got {value!r}')


def optional(check: Check) -> Check:
  return lambda name, value: None if value is None else check(name, value)


def non_negative(name: str, value) -> None:
  if isinstance(value, (jax.Array, np.ndarray)) and not isinstance(value, jax.core.Tracer):
    value = np.asarray(value)
    if (value < 0).any():
      raise ValueError(f'{name} must be non-negative')
  elif isinstance(value, (int, float)) and not value >= 0:
    raise ValueError(f'{name} must be non-negative, got {value!r}')


def one_of(choices: Sequence[Any]) -> Check:
  def check(name, value):
    if value not in tuple(choices):
      raise ValueError(f'{name} must be one of {tuple(choices)}, got {value!r}')
  return check


# Input checks: the images and targets of every call, the baseline of a method.

def images(x) -> Array:
  """(B, H, W, C) floating-point images as an array; anything else raises."""
  if not hasattr(x, 'shape') or np.ndim(x) != 4:
    raise ValueError(f'expected images (B, H, W, C) NHWC, BGR minus the channel mean; got shape '
                     f'{getattr(x, "shape", type(x).__name__)}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'expected floating-point images, got dtype {x.dtype}')
  return jnp.asarray(x)


def finite_images(x: Array) -> None:
  """Refuses concrete images with NaN or infinite values, naming them (host paths only)."""
  finite = np.asarray(jnp.isfinite(x).all(axis=(1, 2, 3)))
  if not finite.all():
    raise ValueError(f'images {np.flatnonzero(~finite).tolist()} of the batch contain NaN '
                     'or infinite values')


def targets(name: str, target, batch: int, num_classes: int) -> Array:
  """(B,) or (B, T) int targets; out-of-range values raise when they are concrete.

  Under tracing they cannot raise: :func:`~gestaltxai.saliency.calls.valid_targets`
  marks them and the call gives NaN for those images.
  """
  target = jnp.asarray(target)
  if target.ndim not in (1, 2) or target.shape[0] != batch or not jnp.issubdtype(
      target.dtype, jnp.integer):
    raise ValueError(f'{name}: target must be (B,) or (B, T) int with B = {batch}, got shape '
                     f'{target.shape} dtype {target.dtype}')
  if not isinstance(target, jax.core.Tracer) and target.size:
    values = np.asarray(target)
    bad = sorted({int(t) for t in values[(values < 0) | (values >= num_classes)]})
    if bad:
      raise ValueError(f'{name}: target classes must lie in [0, {num_classes}) (0-based); got '
                       f'{bad}{binary_hint(num_classes)}')
  return target


def binary_hint(num_classes: int) -> str:
  return ('; the model gives one logit: class 1 is the positive logit, class 0 its negation'
          if num_classes == 2 else '')


def broadcast_baseline(value, x: Array, name: str = 'baseline') -> Array:
  """A reference input broadcast to x's shape (B, H, W, C), by NumPy's rules alone.

  A scalar fills everything; (C,) is one value per channel; (H, W, C) one
  image for all; (B, 1, 1, 1) one value per image; (B, H, W, C) one image
  each. Nothing is guessed from sizes: a (B,) vector is refused, and so is
  any 1-D vector when B = C > 1 (per channel or per image? write (1, 1, 1, C)
  or (B, 1, 1, 1)).
  """
  shape = tuple(np.shape(value))
  if len(shape) == 1 and shape[0] == x.shape[0] == x.shape[-1] and shape[0] > 1:
    raise ValueError(f'{name} of shape {shape} is ambiguous with {x.shape[0]} images of '
                     f'{x.shape[-1]} channels: give (1, 1, 1, {shape[0]}) for one value per '
                     f'channel or ({shape[0]}, 1, 1, 1) for one value per image')
  try:
    broadcast = np.broadcast_shapes(shape, x.shape)
  except ValueError:
    broadcast = None
  if broadcast != tuple(x.shape):
    raise ValueError(f'{name} of shape {shape} does not broadcast to the images {x.shape}; give '
                     'a scalar, (C,) per channel, (B, 1, 1, 1) per image, or an image-shaped '
                     'array')
  return jnp.broadcast_to(jnp.asarray(value, x.dtype), x.shape)
