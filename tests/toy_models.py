"""Toy Flax models with the project's model interface and closed-form gradients."""

import flax.linen as nn
import jax.numpy as jnp


class Linear(nn.Module):
  """logits = <w_k, x> + b_k: the gradient is w_k everywhere."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, start='input', stop='logits'):
    w = self.param('w', nn.initializers.normal(1.0), (self.num_classes, *x.shape[1:]))
    b = self.param('b', nn.initializers.normal(1.0), (self.num_classes,))
    return jnp.einsum('bhwc,khwc->bk', x, w) + b


class Quadratic(nn.Module):
  """logits = <w_k, x^2>: the gradient at alpha x is 2 alpha w_k x."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, start='input', stop='logits'):
    w = self.param('w', nn.initializers.normal(1.0), (self.num_classes, *x.shape[1:]))
    return jnp.einsum('bhwc,khwc->bk', jnp.square(x), w)
