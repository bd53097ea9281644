"""Toy Flax models with the project's model interface and closed-form gradients."""

from typing import ClassVar

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


class TwoLayer(nn.Module):
  """Dense -> ReLU -> Dense on flattened images, from the project's rule-aware layers."""

  hidden: int = 7
  num_classes: int = 3
  rules: object = None
  routes_rules: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x, start='input', stop='logits'):
    from gestaltxai.models import GRADIENT
    from gestaltxai.models.resnet import Dense
    rules = self.rules or GRADIENT
    h = Dense(self.hidden, rules=rules, name='dense1')(x.reshape(x.shape[0], -1))
    return Dense(self.num_classes, rules=rules, name='dense2')(rules.activation(h))


class ConvNoPool(nn.Module):
  """ConvBN -> ReLU -> ConvBN (stride 2) -> ReLU -> mean -> Dense: no max pool."""

  num_classes: int = 4
  rules: object = None
  routes_rules: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x, start='input', stop='logits'):
    from gestaltxai.models import GRADIENT
    from gestaltxai.models.resnet import ConvBN, Dense
    rules = self.rules or GRADIENT
    h = rules.activation(ConvBN(6, 3, 1, 1, is_first=True, rules=rules, name='conv1')(x))
    h = rules.activation(ConvBN(8, 3, 2, 1, rules=rules, name='conv2')(h))
    h = rules.average_pool(lambda a: a.mean(axis=(1, 2)), h)
    return Dense(self.num_classes, rules=rules, name='fc')(h)
