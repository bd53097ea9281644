"""What every saliency method shares: scores and gradients.

A method's function is pure and jit-able::

    fn(model, variables, x, target, *, key, **options) -> attribution

``model`` is an :class:`~gestaltxai.models.contract.Explainable` (the registry
adapts what the user gives and checks it provides what the method needs);
``x`` is (B, H, W, C) float; ``target`` is (B,) int; ``key`` a ``jax.random``
key (unused by deterministic methods). Input-space methods return
(B, H, W, C), layer methods (B, H, W), region methods (B, num_regions),
float32 (float64 for float64 inputs).

Images are independent in eval mode, so the gradient of the *sum* over the
batch of each image's target logit is every image's own gradient: one
backward pass serves the whole batch.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

Array = jax.Array


def result_dtype(x: Array):
  """Attributions are at least float32, and float64 for a float64 input."""
  return jnp.promote_types(x.dtype, jnp.float32)


def gather_targets(logits: Array, target: Array) -> Array:
  """(B, K) logits, (B,) classes -> (B,) the target logit of each image."""
  return jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]


def predicted_class(model, variables, x: Array) -> Array:
  """(B,) int32: the class each image is predicted as (what the reference explains)."""
  return jnp.argmax(model.logits(variables, x), axis=-1).astype(jnp.int32)


def target_score(model, variables, target: Array, layer: Optional[str] = None,
                 x: Optional[Array] = None) -> Callable[[Array], Array]:
  """h -> sum over the batch of each image's target logit.

  ``h`` is images, or the activations at ``layer`` of images ``x`` (then the
  model's head runs from there). Only the first ``len(target)`` rows of ``h`` are
  explained; rows after them (DeepLIFT's references) take part in the
  forward pass but not the score.
  """

  def score(h):
    logits = model.logits(variables, h) if layer is None else model.head(variables, h, layer, x)
    return gather_targets(logits[:target.shape[0]], target).sum()

  return score


def input_gradient(model, variables, x: Array, target: Array) -> Array:
  """d logit[target] / d x, (B, H, W, C) in x's dtype: one forward, one backward."""
  return jax.grad(target_score(model, variables, target))(x)


def layer_activations_and_gradients(model, variables, x: Array, target: Array,
                                    layer: str) -> tuple[Array, Array]:
  """Activations A at ``layer`` and d logit[target] / d A, both (B, h, w, C), at least float32."""
  activations = model.features(variables, x, layer)
  gradients = jax.grad(target_score(model, variables, target, layer, x))(activations)
  dtype = result_dtype(activations)
  return activations.astype(dtype), gradients.astype(dtype)
