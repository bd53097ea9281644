"""What a saliency method may ask of a model: the contract, in three levels (the levels and
their adapters side by side, so longer than 400 lines).

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
from gestaltxai.models.taps import needs_input, tapped_linen, tapped_nnx

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
        'pass a Flax linen or NNX module and name a submodule, layer=\'conv1\' (as written, '
        'no change), or give it attributes `layers` and `default_layer` and '
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

  def head(self, variables, activations: Array, layer: str, x: Optional[Array] = None) -> Array:
    """(B, K) logits from the activations at ``layer`` (``x``: the images they came from,
    needed by a submodule tap, which reruns the model with its output replaced)."""
    raise self._missing(Capability.LAYERS, 'head')

  def variables_of(self, variables):
    """The variables the model's functions take (NNX: the state of a module given)."""
    return variables

  @property
  def canonizes(self) -> bool:
    """Whether the model honours the BatchNorm folding fields of its Rules
    (``fold_batchnorm``, ``fold_keeps_eps``, ``batchnorm``): LRP's ``canonize``."""
    return False

  @property
  def taps_submodules(self) -> bool:
    """Whether any submodule path names a layer (Flax modules as the user wrote them)."""
    return False

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
    """``layer``, or the model's default; an unknown name lists the known ones.

    Flax modules also take a submodule path (``'conv1'``, ``'block1/conv'``):
    the output of that submodule's ``__call__`` (checked when traced).
    """
    if layer is not None and not isinstance(layer, str):
      raise ValueError(f'layer must be a str, got {layer!r}')
    if layer is None and self.default_layer is None:
      how = ('name one, e.g. layer="conv1" (a submodule path of the model as written), or give '
             'the module attributes `layers` and `default_layer` and `__call__(x, *, start=..., '
             'stop=...)`' if self.taps_submodules else Capability.LAYERS.how_to_provide())
      raise ModelContractError(f'{self.describe()} has no default layer: {how}')
    layer = self.default_layer if layer is None else layer
    if layer not in self.layers and not self.taps_submodules:
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
    return layer_names(getattr(self.module, 'layers', ()), type(self.module).__name__)

  @property
  def default_layer(self) -> Optional[str]:
    return getattr(self.module, 'default_layer', None)

  @property
  def taps_submodules(self) -> bool:
    return True

  @property
  def capabilities(self):
    caps = {Capability.FORWARD, Capability.LAYERS}  # its submodules, at least
    if getattr(type(self.module), 'routes_rules', False) and _has_field(self.module, 'rules'):
      caps.add(Capability.RULES)
    return frozenset(caps)

  @property
  def canonizes(self) -> bool:
    return bool(getattr(type(self.module), 'canonizes', False))

  def features(self, variables, x, layer):
    if layer not in self.layers:  # a submodule of the model as written
      return tapped_linen(self.module, variables, x, layer)[1]
    return self.module.apply(variables, x, stop=layer)

  def head(self, variables, activations, layer, x=None):
    if layer not in self.layers:
      return tapped_linen(self.module, variables, needs_input(x, layer), layer,
                          replace=activations)[0]
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
  """A Flax NNX module, split once into its graph; ``variables`` is its state
  (``nnx.state(model)``) or the module itself. Level 2 as linen: the protocol
  (``layers``, ``default_layer``, ``__call__(x, *, start=..., stop=...)``) or
  a submodule path (``'conv1'``, ``'blocks/0'``)."""

  graphdef: Any
  layer_names: tuple[str, ...] = ()
  default: Optional[str] = None
  name: str = 'module'

  def logits(self, variables, x):
    return self._merge(variables)(x)

  @property
  def layers(self):
    return self.layer_names

  @property
  def default_layer(self):
    return self.default

  @property
  def taps_submodules(self) -> bool:
    return True

  @property
  def capabilities(self):
    return frozenset({Capability.FORWARD, Capability.LAYERS})  # its submodules, at least

  def variables_of(self, variables):
    from flax import nnx  # pylint: disable=import-outside-toplevel
    if isinstance(variables, nnx.Module):
      return nnx.state(variables)
    if variables is None:
      raise ValueError(f'{self.describe()}: give its state as variables: the module itself or '
                       'nnx.state(module)')
    return variables

  def features(self, variables, x, layer):
    if layer in self.layer_names:
      return self._merge(variables)(x, stop=layer)
    return tapped_nnx(self._merge(variables), x, layer)[1]

  def head(self, variables, activations, layer, x=None):
    if layer in self.layer_names:
      return self._merge(variables)(activations, start=layer)
    return tapped_nnx(self._merge(variables), needs_input(x, layer), layer,
                      replace=activations)[0]

  def _merge(self, variables):
    from flax import nnx  # pylint: disable=import-outside-toplevel
    return nnx.merge(self.graphdef, self.variables_of(variables))

  def describe(self):
    return f'Flax NNX module {self.name}'


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
    layers = layer_names(layers, 'FunctionalModel')
    if features is not None and not layers:
      raise ValueError('give the layer names features and head accept: layers=(...)')
    for name, value in (('logits_fn', logits), ('features_fn', features), ('head_fn', head),
                        ('layer_names', layers),
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

  def head(self, variables, activations, layer, x=None):
    del x  # the functions split the model themselves
    if self.head_fn is None:
      raise self._missing(Capability.LAYERS, 'head')
    return self.head_fn(variables, activations, layer)

  def with_rules(self, rules):
    if self.rules_fn is None:
      raise self._missing(Capability.RULES, 'with_rules')
    return self.rules_fn(rules)

  def describe(self):
    return f'function {getattr(self.logits_fn, "__name__", "model")}'


def layer_names(names, owner: str) -> tuple[str, ...]:
  """A module's ``layers`` as a tuple of names; one string is one name, not its characters."""
  names = (names,) if isinstance(names, str) else tuple(names)
  bad = [n for n in names if not isinstance(n, str)]
  if bad:
    raise TypeError(f'{owner}.layers must be names (str), got {bad}')
  return names


def _has_field(module, name: str) -> bool:
  return name in {f.name for f in dataclasses.fields(module)}


def explainable(model, output=None) -> Explainable:
  """The :class:`Explainable` of a Flax linen or NNX module or a logits function.

  Args:
    model: a linen module, an NNX module (in eval mode: ``model.eval()``), a
      function ``f(variables, x) -> logits`` or an :class:`Explainable`.
    output: for a model whose output is not the (B, K) logits: a key
      (``'logits'``), an index (``0``) or a function of the output (hashable,
      so a method compiles once per model: define it once, not per call).
  """
  adapted = _adapt(model)
  if output is None:
    return adapted
  from gestaltxai.models.outputs import SelectedOutput  # pylint: disable=import-outside-toplevel
  return SelectedOutput(adapted, output)


def _adapt(model) -> Explainable:
  if isinstance(model, Explainable):
    return model
  if isinstance(model, nn.Module):
    return LinenModel(model)
  from flax import nnx  # pylint: disable=import-outside-toplevel
  if isinstance(model, nnx.Module):
    _check_eval_mode(model)
    name = type(model).__name__
    return NnxModel(nnx.split(model)[0],
                    layer_names(getattr(model, 'layers', ()), name),
                    getattr(model, 'default_layer', None), name)
  if callable(model):
    return FunctionalModel(logits=model)
  raise TypeError(f'expected a Flax module or a function f(variables, x) -> logits, got '
                  f'{type(model).__name__}')


#: NNX attributes that say a layer is in training mode (``model.eval()`` sets them).
NNX_TRAINING_FLAGS = {'use_running_average': False, 'deterministic': False}


def _check_eval_mode(model) -> None:
  """Refuses an NNX module with a layer in training mode (BatchNorm on batch statistics,
  dropout on): explanations assume eval mode, where images are independent."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  training = sorted('/'.join(map(str, path)) or type(model).__name__
                    for path, sub in nnx.iter_modules(model)
                    for flag, value in NNX_TRAINING_FLAGS.items()
                    if getattr(sub, flag, None) is value)
  if training:
    raise ModelContractError(
        f'Flax NNX module {type(model).__name__} is in training mode ({training}: batch '
        'statistics or dropout): call model.eval() before explaining it (model.train() '
        'switches back)')
