"""Backward rules: how a saliency method lets relevance flow through each layer.

Every rule-based method (guided backprop, DeconvNet, LRP composites,
excitation backprop, DeepLIFT) keeps the network's forward values and changes
only what its backward pass computes. The model takes a :class:`Rules` value
as a field and routes each of its operations through it, so a method swaps
rules with ``model.clone(rules=...)``: no hooks, no global state.

A linear rule is called as ``rule(apply_fn, x, kernel, bias)`` where
``apply_fn(x, kernel)`` is linear in both arguments (a convolution or a
matrix product) and ``bias`` is ``None`` or broadcastable to the output. Its
forward value must be ``apply_fn(x, kernel) + bias``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
LinearRule = Callable[[Callable[[Array, Array], Array], Array, Array, Optional[Array]], Array]


def plain_linear(apply_fn, x, kernel, bias):
  """The ordinary linear layer: its backward pass is the true gradient."""
  y = apply_fn(x, kernel)
  return y if bias is None else y + bias


def plain_pool(pool_fn, x):
  """An ordinary pooling: its backward pass is the true gradient."""
  return pool_fn(x)


def plain_batchnorm(y, gain, shift):
  """Eval-mode BatchNorm as the affine map it is: the true gradient."""
  return y * gain + shift


@dataclasses.dataclass(frozen=True)
class Rules:
  """The backward rule of each kind of layer; defaults give the true gradient.

  Attributes:
    activation: elementwise non-linearity, ``x -> y`` (ReLU by default).
    conv: rule of every convolution except the first.
    dense: rule of every dense layer.
    first: rule of the layer that sees the input (``None``: as ``conv``);
      zennit's "special first layer" composites put Flat or ZBox here.
    residual_sum: ``(a, b) -> a + b`` at the end of a residual block.
    average_pool: rule of the linear average pool, ``(pool_fn, x) -> y``.
    max_pool: rule of the max pool, ``(pool_fn, x) -> y``.
    batchnorm: rule of an eval-mode BatchNorm that is not folded,
      ``(y, gain, shift) -> y * gain + shift``.
    fold_batchnorm: merge eval-mode BatchNorm into the convolution before
      it, so the linear rule sees one affine layer (zennit's canonizers).
    probe_biases: expose each biased layer's output and effective bias
      (FullGrad; see :func:`gestaltxai.models.resnet.probe_bias_output`).
    fold_keeps_eps: what zennit 0.5's merge leaves of a folded BatchNorm:
      mean 0, variance 1, gain 1, shift 0 but its eps kept, so it still
      divides by sqrt(1 + eps), through the ``batchnorm`` rule. Off, the
      fold is exact (zennit 1.0).
  """

  activation: Callable[[Array], Array] = jax.nn.relu
  conv: LinearRule = plain_linear
  dense: LinearRule = plain_linear
  first: Optional[LinearRule] = None
  residual_sum: Callable[[Array, Array], Array] = jnp.add
  average_pool: Callable = plain_pool
  max_pool: Callable = plain_pool
  batchnorm: Callable[[Array, Array, Array], Array] = plain_batchnorm
  fold_batchnorm: bool = False
  probe_biases: bool = False
  fold_keeps_eps: bool = False

  @property
  def first_layer(self) -> LinearRule:
    return self.conv if self.first is None else self.first


GRADIENT = Rules()


@functools.lru_cache(maxsize=None)
def softplus(beta: float = 10.0) -> Callable[[Array], Array]:
  """A smooth stand-in for ReLU, softplus(beta x) / beta, for ``Rules(activation=...)``.

  For studies that differentiate through saliency maps (attacks on
  explanations, second-order analyses): through ReLU the gradient of a
  gradient map with respect to the input is zero almost everywhere, through
  softplus it is not. It changes the forward values too (a different,
  smoother network that approaches ReLU as ``beta`` grows), so use it to
  study maps, not to report them. Cached per ``beta`` so models that use it
  compare equal and compile once.
  """
  if beta <= 0:
    raise ValueError(f'softplus needs beta > 0, got {beta}')

  def activation(x):
    return jax.nn.softplus(beta * x) / beta

  activation.__name__ = f'softplus_{beta:g}'
  return activation
