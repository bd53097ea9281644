"""Models whose output is not (B, K) logits: a selector picks them, and a binary model's
(B, 1) logit becomes two classes. :func:`checked_output` decides from the output's shape."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from gestaltxai.models.contract import Explainable, ModelContractError


class _OutputMap(Explainable):
  """A model whose logits are a function of another's output; everything else is the inner
  model's (subclasses: frozen dataclasses with an ``inner`` field)."""

  inner: Explainable

  def _map(self, output):
    raise NotImplementedError

  def logits(self, variables, x):
    return self._map(self.inner.logits(variables, x))

  def head(self, variables, activations, layer, x=None):
    return self._map(self.inner.head(variables, activations, layer, x))

  def features(self, variables, x, layer):
    return self.inner.features(variables, x, layer)

  def with_rules(self, rules):
    return dataclasses.replace(self, inner=self.inner.with_rules(rules))

  def with_dtype(self, dtype):
    return dataclasses.replace(self, inner=self.inner.with_dtype(dtype))

  def variables_of(self, variables):
    return self.inner.variables_of(variables)

  layers = property(lambda self: self.inner.layers)
  default_layer = property(lambda self: self.inner.default_layer)
  capabilities = property(lambda self: self.inner.capabilities)
  canonizes = property(lambda self: self.inner.canonizes)
  taps_submodules = property(lambda self: self.inner.taps_submodules)

  def check_layer(self, layer):
    return self.inner.check_layer(layer)


@dataclasses.dataclass(frozen=True)
class SelectedOutput(_OutputMap):
  """The logits picked from a model's output: a dict key, a tuple index or a function."""

  inner: Explainable
  select: Any

  def _map(self, output):
    return self.select(output) if callable(self.select) else output[self.select]

  def describe(self):
    return f'{self.inner.describe()} (output {self.select!r})'


@dataclasses.dataclass(frozen=True)
class BinaryLogits(_OutputMap):
  """A binary model's (B, 1) logit z as two classes (-z, z): class 1 is the positive logit,
  class 0 its negation, so the predicted class is the sign of z (1 when z > 0) and
  explaining class 0 explains what makes the model say negative."""

  inner: Explainable

  def _map(self, output):
    return jnp.concatenate([-output, output], axis=-1)

  def describe(self):
    return f'{self.inner.describe()} (binary: one logit)'


#: What the error for a model output that is not (B, K) logits suggests.
OUTPUT_HINT = ("pick the (B, K) logits with output=: a key (output='logits'), an index "
               "(output=0) or a function (output=lambda out: out['logits'])")


def checked_output(model: Explainable, variables, x) -> tuple[Explainable, int]:
  """(the model as the methods see it, number of classes K), from its output's shape.

  (B, K) logits pass as they are; a binary (B, 1) logit becomes two classes
  (:class:`BinaryLogits`). Any other output (a tuple, a dict, (B,), (B, h, w, K))
  is refused, naming ``output=``. Traced once per shapes (``jax.eval_shape``), never run.
  """
  batch = max(x.shape[0], 1)  # an empty batch: the shapes of one image's
  output = _output_shape(model, _structure(variables),
                         jax.ShapeDtypeStruct((batch, *x.shape[1:]), x.dtype))
  if not isinstance(output, jax.ShapeDtypeStruct):
    kind = type(output).__name__
    keys = f' with keys {sorted(output)}' if isinstance(output, dict) else ''
    raise ModelContractError(f'{model.describe()} returns a {kind}{keys}, not (B, K) logits: '
                             f'{OUTPUT_HINT}')
  if output.ndim == 1:
    raise ModelContractError(
        f'{model.describe()} returns shape {output.shape}, one score per image, not (B, K) '
        'logits: a binary model should give (B, 1) (output=lambda z: z[:, None]), then class '
        '1 is the positive logit and class 0 the negative')
  if output.ndim != 2 or output.shape[0] != batch:
    raise ModelContractError(
        f'{model.describe()} returns shape {output.shape} for {batch} images, not (B, K) '
        f'logits: {OUTPUT_HINT}; e.g. output=lambda y: y.mean(axis=(1, 2)) for per-pixel scores')
  if output.shape[1] == 1:
    return BinaryLogits(model), 2
  return model, output.shape[1]


def _structure(tree):
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  return treedef, tuple(jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in leaves)


@functools.lru_cache(maxsize=128)
def _output_shape(model: Explainable, variables, images: jax.ShapeDtypeStruct):
  treedef, leaves = variables
  return jax.eval_shape(model.logits, jax.tree_util.tree_unflatten(treedef, leaves), images)


