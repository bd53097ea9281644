"""What a saliency method may ask of a model: the contract, in three levels.

=======  ==========  ====================================================  ==========================
level    capability  what the model provides                               methods that need it
=======  ==========  ====================================================  ==========================
1        forward     ``logits(variables, x) -> (B, K)``                    gradient and noise families,
                                                                           occlusion, region methods,
                                                                           the metrics
2        layers      a split at a named layer: ``features(variables, x,    CAMs, guided Grad-CAM,
                     layer)`` and ``head(variables, activations, layer)``,  layer DeepLIFT
                     the names ``layers`` and a ``default_layer``
3        rules       ``with_rules(rules)``: the same model with every      guided backprop, DeconvNet,
                     activation, linear map, residual sum and pool routed  LRP, excitation backprop,
                     through :class:`~gestaltxai.models.rules.Rules`        DeepLIFT, FullGrad
=======  ==========  ====================================================  ==========================

:func:`explainable` turns what a user has into an :class:`Explainable`:

* a Flax linen module: ``module.apply(variables, x)`` gives the logits. It
  reaches level 2 by following the protocol (attributes ``layers`` and
  ``default_layer``, and ``__call__(x, *, start=..., stop=...)`` running the
  span between two of them) and level 3 by declaring
  ``routes_rules = True`` (a class attribute) and taking its rules as a
  ``rules`` field. :class:`gestaltxai.models.ResNet` does both.
* a Flax NNX module: ``variables`` is its state (``nnx.state(model)``).
* any callable ``f(variables, x) -> logits``; with more functions,
  :class:`FunctionalModel` gives level 2 (and level 3 with ``with_rules``).

Every adapter is hashable and compares by what it wraps, so a method compiles
once per model. Nothing falls back: a method that needs more than the model
declares is refused with :class:`ModelContractError`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gestaltxai.models.rules import Rules

Array = jax.Array


class Capability(enum.IntEnum):
  """The contract's levels; a method declares the capabilities it needs."""

  FORWARD = 1
  LAYERS = 2
  RULES = 3

  def describe(self) -> str:
    return _CAPABILITY_TEXT[self][0]

  def how_to_provide(self) -> str:
    return _CAPABILITY_TEXT[self][1]


_CAPABILITY_TEXT = {
    Capability.FORWARD: ('logits(variables, x)',
                         'pass a Flax module or a callable f(variables, x) -> logits'),
    Capability.LAYERS: (
        'a split at a named layer (features and head)',
        'give the Flax module attributes `layers` and `default_layer` and '
        '`__call__(x, *, start=..., stop=...)`, or wrap your functions: '
        'FunctionalModel(logits=..., features=..., head=..., layers=(...), default_layer=...)'),
    Capability.RULES: (
        'rule support (every activation and linear map routed through Rules)',
        'route each activation, convolution, dense layer, residual sum and pool of the module '
        'through its `rules` field (gestaltxai.models.Rules) and declare `routes_rules = True` '
        'on the class, or give FunctionalModel a `with_rules` function'),
}


class ModelContractError(TypeError):
  """A method needs more of the model than the model provides."""


class Explainable:
  """A model as saliency methods see it. Subclasses are hashable frozen dataclasses.

  Attributes:
    layers: names a level-2 model can be split at, input side first.
    default_layer: the layer methods use when none is given.
  """

  layers: tuple[str, ...] = ()
  default_layer: Optional[str] = None

  def logits(self, variables, x: Array) -> Array:
    """(B, K) logits of images x (B, H, W, C)."""
    raise NotImplementedError

  def features(self, variables, x: Array, layer: str) -> Array:
    """The activations at ``layer``: (B, h, w, C) for a convolutional layer."""
    raise self._missing(Capability.LAYERS, 'features')

  def head(self, variables, activations: Array, layer: str) -> Array:
    """(B, K) logits from the activations at ``layer``."""
    raise self._missing(Capability.LAYERS, 'head')

  def with_rules(self, rules: Rules) -> 'Explainable':
    """The same model with the backward rules ``rules``."""
    raise self._missing(Capability.RULES, 'with_rules')

  def with_dtype(self, dtype) -> 'Explainable':
    """The same model computing in ``dtype`` (parameters keep theirs)."""
    raise ModelContractError(
        f'{self.describe()} has no compute dtype to set; give a Flax module with a `dtype` '
        'field, or cast the inputs and parameters yourself')

  @property
  def capabilities(self) -> frozenset[Capability]:
    return frozenset({Capability.FORWARD})

  @property
  def level(self) -> int:
    """The highest level of the contract the model provides in full."""
    caps = self.capabilities
    return 3 if Capability.RULES in caps and Capability.LAYERS in caps else (
        2 if Capability.LAYERS in caps else 1)

  def describe(self) -> str:
    return type(self).__name__

  def check_layer(self, layer: Optional[str]) -> str:
    """``layer``, or the model's default; an unknown name lists the known ones."""
    layer = self.default_layer if layer is None else layer
    if layer not in self.layers:
      raise ValueError(f'{self.describe()} has no layer {layer!r}; its layers: {self.layers}')
    return layer

  def _missing(self, capability: Capability, what: str) -> ModelContractError:
    return ModelContractError(f'{self.describe()} does not provide {what}: '
                              f'level {int(capability)}, {capability.describe()}')


@dataclasses.dataclass(frozen=True)
class LinenModel(Explainable):
  """A Flax linen module; levels 2 and 3 when it follows the protocol (module docstring)."""

  module: nn.Module

  def logits(self, variables, x):
    return self.module.apply(variables, x)

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(getattr(self.module, 'layers', ()))

  @property
  def default_layer(self) -> Optional[str]:
    return getattr(self.module, 'default_layer', None)

  @property
  def capabilities(self):
    caps = {Capability.FORWARD}
    if self.layers and self.default_layer is not None:
      caps.add(Capability.LAYERS)
    if getattr(type(self.module), 'routes_rules', False) and _has_field(self.module, 'rules'):
      caps.add(Capability.RULES)
    return frozenset(caps)

  def features(self, variables, x, layer):
    if Capability.LAYERS not in self.capabilities:
      raise self._missing(Capability.LAYERS, 'features')
    return self.module.apply(variables, x, stop=layer)

  def head(self, variables, activations, layer):
    if Capability.LAYERS not in self.capabilities:
      raise self._missing(Capability.LAYERS, 'head')
    return self.module.apply(variables, activations, start=layer)

  def with_rules(self, rules):
    if Capability.RULES not in self.capabilities:
      raise self._missing(Capability.RULES, 'with_rules')
    return LinenModel(self.module.clone(rules=rules))

  def with_dtype(self, dtype):
    if not _has_field(self.module, 'dtype'):
      return super().with_dtype(dtype)
    return LinenModel(self.module.clone(dtype=jnp.dtype(dtype)))

  def describe(self):
    return f'Flax module {type(self.module).__name__}'


@dataclasses.dataclass(frozen=True)
class NnxModel(Explainable):
  """A Flax NNX module, split once into its graph; ``variables`` is its state."""

  graphdef: Any

  def logits(self, variables, x):
    from flax import nnx  # pylint: disable=import-outside-toplevel
    return nnx.merge(self.graphdef, variables)(x)

  def describe(self):
    return 'Flax NNX module'


@dataclasses.dataclass(frozen=True, init=False)
class FunctionalModel(Explainable):
  """A model given as functions (each pure and jit-able).

  Attributes:
    logits: ``(variables, x) -> (B, K)``.
    features: ``(variables, x, layer) -> activations`` (level 2).
    head: ``(variables, activations, layer) -> (B, K)`` (level 2).
    layers: the names ``features`` and ``head`` accept, input side first.
    default_layer: the layer methods use by default (default: the last one).
    with_rules: ``rules -> FunctionalModel`` routing every activation and
      linear map through ``rules`` (level 3).
  """

  logits_fn: Callable[[Any, Array], Array]
  features_fn: Optional[Callable[[Any, Array, str], Array]] = None
  head_fn: Optional[Callable[[Any, Array, str], Array]] = None
  layer_names: tuple[str, ...] = ()
  default: Optional[str] = None
  rules_fn: Optional[Callable[[Rules], 'FunctionalModel']] = None

  def __init__(self, logits, features=None, head=None, layers=(), default_layer=None,
               with_rules=None):
    if (features is None) != (head is None):
      raise ValueError('a layer split needs both features and head')
    if features is not None and not layers:
      raise ValueError('give the layer names features and head accept: layers=(...)')
    for name, value in (('logits_fn', logits), ('features_fn', features), ('head_fn', head),
                        ('layer_names', tuple(layers)),
                        ('default', default_layer or (layers[-1] if layers else None)),
                        ('rules_fn', with_rules)):
      object.__setattr__(self, name, value)

  def logits(self, variables, x):
    return self.logits_fn(variables, x)

  @property
  def layers(self):
    return self.layer_names

  @property
  def default_layer(self):
    return self.default

  @property
  def capabilities(self):
    caps = {Capability.FORWARD}
    if self.features_fn is not None:
      caps.add(Capability.LAYERS)
    if self.rules_fn is not None:
      caps.add(Capability.RULES)
    return frozenset(caps)

  def features(self, variables, x, layer):
    if self.features_fn is None:
      raise self._missing(Capability.LAYERS, 'features')
    return self.features_fn(variables, x, layer)

  def head(self, variables, activations, layer):
    if self.head_fn is None:
      raise self._missing(Capability.LAYERS, 'head')
    return self.head_fn(variables, activations, layer)

  def with_rules(self, rules):
    if self.rules_fn is None:
      raise self._missing(Capability.RULES, 'with_rules')
    return self.rules_fn(rules)

  def describe(self):
    return f'function {getattr(self.logits_fn, "__name__", "model")}'


def _has_field(module, name: str) -> bool:
  return name in {f.name for f in dataclasses.fields(module)}


def explainable(model) -> Explainable:
  """The :class:`Explainable` of a Flax linen or NNX module or a logits function."""
  if isinstance(model, Explainable):
    return model
  if isinstance(model, nn.Module):
    return LinenModel(model)
  try:
    from flax import nnx  # pylint: disable=import-outside-toplevel
  except ImportError:  # pragma: no cover - flax always ships nnx from 0.10
    nnx = None
  if nnx is not None and isinstance(model, nnx.Module):
    return NnxModel(nnx.split(model)[0])
  if callable(model):
    return FunctionalModel(logits=model)
  raise TypeError(f'expected a Flax module or a function f(variables, x) -> logits, got '
                  f'{type(model).__name__}')
