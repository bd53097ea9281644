"""What every saliency method shares: the signature, scores, gradients, chunking.

A method is a pure, jit-able function::

    fn(model, variables, x, target, *, key, **options) -> attribution

``model`` is a Flax module whose ``apply(variables, h, start=..., stop=...)``
runs a span of its stages (:class:`gestaltxai.models.ResNet`); ``x`` is
(B, H, W, 3) float; ``target`` is (B,) int; ``key`` a ``jax.random`` key
(unused by deterministic methods). Input-space methods return (B, H, W, 3),
layer methods (B, H, W), float32 (float64 for float64 inputs).

Images are independent in eval mode, so the gradient of the *sum* over the
batch of each image's target logit is every image's own gradient: one
backward pass serves the whole batch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

def result_dtype(x: Array):
  """Attributions are at least float32, and float64 for a float64 input."""
  return jnp.promote_types(x.dtype, jnp.float32)


def target_score(model, variables, target: Array, start: str = 'input') -> Callable[[Array], Array]:
  """h -> sum over the batch of each image's target logit, from stage ``start``.

  Only the first ``len(target)`` rows of ``h`` are explained; rows after them
  (DeepLIFT's references) take part in the forward pass but not the score.
  """

  def score(h):
    logits = model.apply(variables, h, start=start)[:target.shape[0]]
    return jnp.take_along_axis(logits, target[:, None], axis=1).sum()

  return score


def input_gradient(model, variables, x: Array, target: Array) -> Array:
  """d logit[target] / d x, (B, H, W, 3) in x's dtype: one forward, one backward."""
  return jax.grad(target_score(model, variables, target))(x)


def layer_activations_and_gradients(model, variables, x: Array, target: Array,
                                    layer: str) -> tuple[Array, Array]:
  """Activations A at ``layer`` and d logit[target] / d A, both (B, h, w, C), at least float32."""
  activations = model.apply(variables, x, stop=layer)
  gradients = jax.grad(target_score(model, variables, target, start=layer))(activations)
  dtype = result_dtype(activations)
  return activations.astype(dtype), gradients.astype(dtype)


def per_image(value, x: Array) -> Array:
  """A scalar, (B,) or image-shaped value broadcast to x's shape (B, H, W, C)."""
  value = jnp.asarray(value, x.dtype)
  if value.ndim == 1 and value.shape[0] == x.shape[0]:
    value = value[:, None, None, None]
  return jnp.broadcast_to(value, x.shape)


