"""Running a registered method: attribute, relevance, compiled and predict, on one jitted path.

Every path checks the model, options, images and targets once on the host
(images and targets by :mod:`~gestaltxai.saliency.checks`; under a caller's
``jit`` the shapes alone), then traces :func:`~gestaltxai.saliency.calls.run`,
which checks nothing, inside one jitted function (:func:`_run`) shared by
:func:`attribute`, :func:`relevance` and :func:`compiled`: the same shapes and
options compile once for all three.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.models.contract import explainable
from gestaltxai.models.outputs import checked_output
from gestaltxai.saliency import calls, checks
from gestaltxai.saliency.chunking import COMPILER_OPTIONS
from gestaltxai.saliency.core import predicted_class, result_dtype
from gestaltxai.saliency.registry import REQUIRED, Method, get_method

Array = jax.Array


def predict(model, variables, x: Array, output=None) -> Array:
  """The predicted class, (B,) int32: what the reference explains by default (a binary
  (B, 1) model: 1 where its logit is positive)."""
  model = explainable(model, output)
  variables = model.variables_of(variables)
  x = checks.images(x)
  model, _ = checked_output(model, variables, x)
  return _predict(model, variables, x)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model, variables, x):
  return predicted_class(model, variables, x)


def relevance_of(attribution: Array, space: str = 'input') -> Array:
  """Relevance maps of a method's result: (B, [T,] H, W) float.

  Input-space attributions (B, [T,] H, W, C) give the sum over channels of
  |a| (the reference's ``normalize_relevance`` without its commented-out
  min-max); layer maps give |a|. Region methods give coefficients, not maps.
  """
  if space == 'region':
    raise ValueError('region methods give (B, num_regions) coefficients, not relevance maps')
  attribution = jnp.abs(attribution)
  return attribution.sum(-1) if space == 'input' else attribution


#: What a compiled call returns, from the method and its result.
OUTPUTS: dict[str, Callable[[Method, Array], Array]] = {
    'attribution': lambda entry, result: result,
    'relevance': lambda entry, result: relevance_of(result, entry.space),
}


def _split_options(entry: Method, options: Mapping[str, Any], like: Array,
                   later: Sequence[str] = ()):
  """(traced {option: array}, static ((option, value), ...)): what varies per call vs compiles.

  Every traced option is passed, its default when not given, so giving one
  never changes the structure of the call (and never recompiles). Required
  options named in ``later`` may be missing (see :meth:`Method.resolve`).
  """
  entry.resolve(options, later)  # names and values checked before anything is traced
  traced, static = {}, []
  dtype = result_dtype(like)
  defaults = {option: entry.options[option] for option in entry.traced
              if entry.options[option] is not REQUIRED}
  for option, value in {**defaults, **options}.items():
    if option in entry.traced:
      traced[option] = value if value is None else _traced_value(value, dtype)
    else:
      try:
        hash(value)
      except TypeError:
        raise ValueError(f'{entry.name}: option {option} compiles in (it shapes the '
                         f'computation) and must be a Python value, got '
                         f'{type(value).__name__}') from None
      static.append((option, value))
  return traced, tuple(sorted(static))


def _traced_value(value, dtype) -> Array:
  """An array option as traced: integer arrays (label maps) stay integers, the rest take
  the images' float dtype."""
  array = jnp.asarray(value)
  if np.ndim(value) > 0 and jnp.issubdtype(array.dtype, jnp.integer):
    return array
  return array.astype(dtype)


def _run_method(entry, model, variables, x, target, key, traced_options, static_options, dtype,
                num_classes, output):
  """The method on inputs checked by the caller (``model`` as ``checked_output`` gives it,
  with ``num_classes`` classes), then what ``output`` asks for."""
  if dtype is not None:
    model = model.with_dtype(dtype)
  options = {**entry.options, **traced_options, **dict(static_options)}
  result = calls.run(entry, model, variables, x.astype(result_dtype(x)), target, key, options,
                     num_classes)
  return OUTPUTS[output](entry, result)


_STATIC = ('entry', 'model', 'static_options', 'dtype', 'num_classes', 'output')
# Called at the top level it owns the compiler options (XLA:CPU's memory-optimised
# scheduler keeps chunked passes at one pass's memory, see chunking.COMPILER_OPTIONS);
# inside a caller's jit those are the caller's to give, and JAX refuses them there.
_run_top = jax.jit(_run_method, static_argnames=_STATIC, compiler_options=COMPILER_OPTIONS)
_run_nested = jax.jit(_run_method, static_argnames=_STATIC)


def _run(*args, **kwargs):
  traced = calls.is_traced((args, kwargs))
  return (_run_nested if traced else _run_top)(*args, **kwargs)


class CompiledMethod:
  """A method with its static options bound, jitted once: ``f(variables, x, target=None,
  key=None, **traced_options)``. Calls with the same shapes never trace again.
  """

  def __init__(self, entry: Method, model, output: str, dtype, static_options):
    self.method, self.model, self.output = entry, entry.check_model(model), output
    self.dtype, self.static_options = dtype, static_options
    # Required static options were given to compiled(); per call, only traced ones are due.
    self._static_required = tuple(entry.required - entry.traced)

  def __call__(self, variables, x, target=None, key=None, **traced_options):
    return _run(*self._arguments(variables, x, target, key, traced_options))

  def lower(self, variables, x, target=None, key=None, **traced_options):
    """``jax.jit(...).lower`` of the same call: for XLA's cost and memory analysis."""
    return _run_top.lower(*self._arguments(variables, x, target, key, traced_options))

  def _arguments(self, variables, x, target, key, traced_options) -> tuple:
    """The compiled path's arguments, images and target checked (their values when they are
    concrete: a few bytes, as attribute does); a static option given per call is refused."""
    unknown = set(traced_options) - self.method.traced
    if unknown:
      raise ValueError(f'{self.method.name}: per-call options are {sorted(self.method.traced)}; '
                       f'{sorted(unknown)} must be given to compiled()')
    x = checks.images(x)
    variables = self.model.variables_of(variables)
    model, num_classes = checked_output(self.model, variables,
                                        jax.ShapeDtypeStruct(x.shape, result_dtype(x)))
    if target is not None:
      target = checks.targets(self.method.name, target, x.shape[0], num_classes)
    traced, _ = _split_options(self.method, traced_options, x, self._static_required)
    static = self.static_options
    if self.method.prepare is not None and not calls.is_traced(traced):
      # What the method reads from concrete options (a region map's labels) compiles in.
      given = {**dict(static), **traced}
      prepared = self.method.prepare(self.method.name, self.method.resolve(given), x)
      static = tuple(sorted({**dict(static), **{k: v for k, v in prepared.items()
                                                 if k not in self.method.traced}}.items()))
    return (self.method, model, variables, x, target, key, traced, static, self.dtype,
            num_classes, self.output)


def compiled(method_name: str, model, *, output: str = 'attribution', dtype=None,
             **options) -> CompiledMethod:
  """The method as a compiled function ``f(variables, x, target=None, key=None, **traced)``.

  Args:
    method_name: a name in :data:`~gestaltxai.saliency.registry.METHODS` or a
      reference alias.
    model: the model (any form :func:`explainable` takes).
    output: 'attribution' or 'relevance' (sum over channels of |attribution|).
    dtype: compute precision.
    **options: the method's options, fixed for this function; traced
      options (a per-batch ``baseline``, ``noise_level``) may be given per call
      instead.

  Options are checked here, once. Per call the images' shape and dtype, the
  target and the traced options are checked, the target's values only when
  they are concrete (a few bytes; unlike :func:`attribute`, no pass over the
  images for NaN and no check of the result): the hot path for benchmarks
  and pipelines that validate their data once, inside their own ``jit`` too.
  """
  entry = get_method(method_name)
  if not isinstance(output, str) or output not in OUTPUTS:
    raise ValueError(f'compiled(output=...) chooses what it returns, one of {sorted(OUTPUTS)}; '
                     f'got {output!r}. To pick the logits from a model output that is not '
                     '(B, K), give the model as explainable(model, output=...)')
  # A required traced option (a region map) may come per call instead.
  _, static = _split_options(entry, options, jnp.zeros((), jnp.float32),
                             later=entry.required & entry.traced)
  function = CompiledMethod(entry, model, output, _dtype_name(dtype), static)
  per_call = {k: v for k, v in options.items() if k in entry.traced}
  return functools.partial(function, **per_call) if per_call else function


def _dtype_name(dtype) -> Optional[str]:
  return None if dtype is None else jnp.dtype(dtype).name


def _explain(method_name, output, model, variables, x, target, key, options) -> Array:
  """The eager path: validates values on the host, runs the compiled method, checks the result."""
  entry = get_method(method_name)
  if calls.is_traced((variables, x, target, key, options)):
    raise TypeError(
        f'attribute() and relevance() check values on the host and cannot run inside jax.jit, '
        f'vmap or grad. There, call the pure function saliency.{entry.name}(model, variables, '
        f'x, target, **options) (or saliency.get_method({entry.name!r})), or build '
        f'f = saliency.compiled({entry.name!r}, model, **options) once and call f(variables, '
        'x, target)')
  dtype = _dtype_name(options.pop('dtype', None))
  model = entry.check_model(explainable(model, options.pop('output', None)))
  variables = model.variables_of(variables)
  x = checks.images(x)
  x = x.astype(result_dtype(x))
  checks.finite_images(x)
  model, num_classes = checked_output(model, variables, x)
  if target is not None:
    target = checks.targets(entry.name, target, x.shape[0], num_classes)
  if entry.prepare is not None:
    options = entry.prepare(entry.name, {**options}, x)
  if x.shape[0] == 0:  # nothing to compile: the shape of the result, no value
    return _run_method(entry, model, variables, x, target, key, entry.resolve(options), (),
                       dtype, num_classes, output)
  traced, static = _split_options(entry, options, x)
  result = _run(entry, model, variables, x, target, key, traced, static, dtype, num_classes,
                output)
  bad = ~np.asarray(_expected_finite(entry, result, traced))
  if bad.any():
    raise FloatingPointError(
        f'{entry.name} gave NaN or infinite values for images {np.flatnonzero(bad).tolist()}'
        f'{_non_finite_variables(variables)}')
  return result


def _expected_finite(entry: Method, result: Array, traced) -> Array:
  """(B,) whether each image's result is as it should be: finite, except a region method's
  NaN for a region with no pixel in the image (as ``regions.coefficients``)."""
  values = result.reshape(result.shape[0], -1)
  if entry.space != 'region':
    return jnp.isfinite(values).all(axis=1)
  labels = jnp.asarray(traced['regions'])
  columns = jnp.arange(values.shape[1])
  present = jax.vmap(lambda image: jnp.isin(columns, image))(labels.reshape(len(labels), -1))
  return (jnp.isfinite(values) | (jnp.isnan(values) & ~present)).all(axis=1)


def _non_finite_variables(variables) -> str:
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  bad = [jax.tree_util.keystr(path) for path, leaf in leaves
         if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)
         and not bool(jnp.isfinite(leaf).all())]
  return f'; the model has non-finite variables: {bad[:5]}' if bad else ''


def attribute(method_name: str, model, variables, x, target=None, *, key=None,
              **options) -> Array:
  """Raw attribution of a method for images ``x``, validated and compiled once.

  Args:
    method_name: a name in :data:`~gestaltxai.saliency.registry.METHODS` or a
      reference alias.
    model: a Flax linen or NNX module, a function ``f(variables, x) -> logits``,
      or an :class:`~gestaltxai.models.contract.Explainable`.
    variables: its variables.
    x: (B, H, W, C) float images, BGR minus the channel mean.
    target: (B,) or (B, T) int classes; the predicted class by default.
    key: randomness for noise methods (default ``PRNGKey(0)``).
    **options: the method's options (``gestaltxai methods`` lists them) and
      ``dtype``.

  Returns:
    float32: (B, H, W, C) input-space, (B, H, W) layer, (B, num_regions)
    region methods; (B, T, ...) for a (B, T) target.

  Raises:
    ValueError: bad images, targets or options, naming what is wrong.
    ModelContractError: the model lacks what the method needs.
    FloatingPointError: the result is not finite, naming the images.
  """
  return _explain(method_name, 'attribution', model, variables, x, target, key, dict(options))


def relevance(method_name: str, model, variables, x, target=None, *, key=None,
              **options) -> Array:
  """(B, [T,] H, W) float32: sum over channels of |attribution|, computed on the device."""
  return _explain(method_name, 'relevance', model, variables, x, target, key, dict(options))
