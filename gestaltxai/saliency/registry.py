"""The table of saliency methods and the one path every call takes (over 400 lines: the
table, its call and its compiled path are one contract; per-call helpers live in calls.py).

A method is declared next to its function with :func:`method`: its name,
the reference names it answers to, what it needs of the model (a
:class:`~gestaltxai.models.contract.Capability`), its cost in passes per image
and the checks on its options. Options and their defaults are the function's
own keyword arguments, written once. The declaration returns a
:class:`Method`: a pure, jit-able callable with one signature::

    method(model, variables, x, target=None, *, key=None, dtype=None, **options)

which adapts the model (:func:`~gestaltxai.models.contract.explainable`),
refuses a model that lacks what the method needs, checks every option before
anything is traced, explains the predicted class when ``target`` is None and
T classes per image for a (B, T) target. :func:`attribute`, :func:`relevance`,
:func:`compiled` and extraction all run a method through that call inside
one jitted function, so options (``dtype`` included) mean the same
everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import re
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.models.contract import Capability, Explainable, ModelContractError, explainable
from gestaltxai.models.outputs import checked_output
from gestaltxai.saliency import calls
from gestaltxai.saliency.chunking import COMPILER_OPTIONS
from gestaltxai.saliency.core import predicted_class, result_dtype

Array = jax.Array
#: (options with defaults filled in, image height, image width) -> (forward, backward) passes
#: per image.
CostFn = Callable[[Mapping[str, Any], int, int], tuple[int, int]]
#: An option check: raises ValueError with the reason, or returns nothing.
Check = Callable[[str, Any], None]

#: Where a method's result lives: 'input' (B, H, W, C), 'layer' (B, H, W) upsampled
#: to the input, 'region' (B, num_regions) coefficients.
SPACES = ('input', 'layer', 'region')
#: Options every method takes, handled by the common call rather than the method.
COMMON_OPTIONS = {'key': 'a jax.random key (noise methods; default PRNGKey(0), the same noise '
                         'on every call, so they warn without one)',
                  'dtype': "compute precision, e.g. 'bfloat16' (parameters keep theirs)"}
_ARGUMENTS = ('model', 'variables', 'x', 'target')


class _Required:
  """The default of an option a method cannot run without (a keyword argument with none)."""

  def __repr__(self):
    return '<required>'


#: Stands for the default of a required option in :attr:`Method.options`.
REQUIRED = _Required()


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: usable as a static argument
class Method:
  """A registered saliency method.

  Attributes:
    name: canonical snake_case name.
    fn: ``fn(model, variables, x, target, *, key, **options)`` with an
      :class:`Explainable` model, checked options and a (B,) target.
    space: one of :data:`SPACES`.
    needs: capabilities of the model the method uses.
    options: {option: default}, from ``fn``'s keyword arguments;
      :data:`REQUIRED` for one without a default (a region method's
      ``regions``).
    traced: options passed as arrays (a new value does not recompile);
      the others are static and compile once per value.
    cost: passes per image for resolved options and an image size.
    checks: {option: check} run before tracing.
    reference_names: the names the reference pipeline and Captum/zennit use.
    random: whether the method draws from ``key`` (a call without one warns).
    prepare: ``(name, options, x) -> options`` run before the method with
      concrete options where they are known (region methods read the labels
      present), so host paths can turn them into static options.
  """

  name: str
  fn: Callable[..., Array]
  space: str
  needs: frozenset[Capability]
  options: Mapping[str, Any]
  traced: frozenset[str]
  cost: CostFn
  checks: Mapping[str, Check] = dataclasses.field(default_factory=dict)
  reference_names: tuple[str, ...] = ()
  random: bool = False
  prepare: Optional[Callable[[str, dict, Array], dict]] = None

  def __post_init__(self):
    # help(saliency.integrated_gradients) shows the method, not this class: its own
    # docstring and signature, then its options.
    object.__setattr__(self, '__doc__', self._help())
    object.__setattr__(self, '__name__', self.name)
    object.__setattr__(self, '__wrapped__', self.fn)

  def __get__(self, instance, owner=None):  # a routine to pydoc (help); never bound
    return self

  def _help(self) -> str:
    options = '\n'.join(f'  {o} = {d!r}{" (per call, traced)" if o in self.traced else ""}'
                         for o, d in self.options.items())
    return (f'{inspect.getdoc(self.fn) or self.name}\n\nCall: {self.name}(model, variables, '
            f'x (B, H, W, C) float, target (B,) int or None, *, key=None, dtype=None, '
            f'output=None, **options); space {self.space!r}, needs contract level '
            f'{int(max(self.needs))}.\nOptions (defaults):\n{options or "  none"}\n'
            f'Also: saliency.attribute({self.name!r}, ...), saliency.compiled({self.name!r}, '
            '...).')

  @property
  def level(self) -> int:
    """The contract level the method needs (1 forward, 2 layers, 3 rules)."""
    return int(max(self.needs))

  @property
  def summary(self) -> str:
    """The first line of the method's docstring."""
    return (inspect.getdoc(self.fn) or self.name).splitlines()[0]

  @property
  def required(self) -> frozenset[str]:
    """Options without a default: every call must give them."""
    return frozenset(o for o, default in self.options.items() if default is REQUIRED)

  def resolve(self, options: Mapping[str, Any], later: Sequence[str] = ()) -> dict[str, Any]:
    """{option: value} with defaults filled in, every name and value checked.

    A required option missing from ``options`` is an error, unless it is
    named in ``later`` (it comes later, e.g. per call of a compiled method);
    it then stays :data:`REQUIRED`.
    """
    for option in options:
      if option not in self.options:
        raise ValueError(self._unknown_option(option))
    missing = sorted(self.required - set(options) - set(later))
    if missing:
      raise ValueError(self._missing_options(missing))
    resolved = {**self.options, **options}
    for option, check in self.checks.items():
      if resolved[option] is not REQUIRED:
        check(f'{self.name}: {option}', resolved[option])
    return resolved

  def passes(self, height: int, width: int, **options) -> tuple[int, int]:
    """(forward, backward) passes per image at this image size (required options unused)."""
    return self.cost(self.resolve(options, later=self.required), height, width)

  def check_model(self, model) -> Explainable:
    """The model's adapter; refuses one that lacks a capability the method needs."""
    model = explainable(model)
    for need in sorted(self.needs - model.capabilities):
      raise ModelContractError(
          f'{self.name} needs level {int(need)} of the model contract, {need.describe()}; '
          f'{model.describe()} provides level {model.level}. To provide it: '
          f'{need.how_to_provide()}.')
    return model

  def __call__(self, model, variables, x: Array, target: Optional[Array] = None, *,
               key: Optional[Array] = None, dtype=None, output=None, **options) -> Array:
    """Attribution of ``target`` (default: the predicted class) for images ``x``.

    Args:
      model: a Flax linen or NNX module, a function ``f(variables, x)``, or
        an :class:`Explainable`.
      variables: the model's variables (an NNX module's state, or the module).
      x: (B, H, W, C) float images; float16 and bfloat16 inputs are computed
        and returned in float32 (float64 stays float64).
      target: (B,) int classes, (B, T) for T classes per image, or None.
      key: randomness for noise methods (default ``PRNGKey(0)``: the same
        noise every call, with a warning; pass a fresh key per call).
      dtype: compute precision of the model (parameters keep theirs).
      output: for a model whose output is not (B, K) logits: a key, an
        index or a function picking them (see :func:`explainable`).
      **options: the method's options (see ``options``).

    Returns:
      float32 (float64 for float64 inputs): (B, H, W, C) for input-space
      methods, (B, H, W) for layer methods, (B, num_regions) for region
      methods; (B, T, ...) for a (B, T) target. Under tracing, an image whose
      target is out of range gives NaN (a concrete one raises; see
      :mod:`~gestaltxai.saliency.calls`).
    """
    model = self.check_model(explainable(model, output))
    variables = model.variables_of(variables)
    options = self.resolve(options)
    if dtype is not None:
      model = model.with_dtype(dtype)
    x = _check_images(x)
    x = x.astype(result_dtype(x))
    if self.prepare is not None:
      options = self.prepare(self.name, options, x)
    key = self._key(key)
    model, num_classes = checked_output(model, variables, x)
    if target is None:
      target = (predicted_class(model, variables, x) if x.shape[0]
                else jnp.zeros((0,), jnp.int32))
    target = calls.check_target(self.name, target, x.shape[0], num_classes)
    if x.shape[0] == 0:
      return self._empty(model, variables, x, target, key, options)
    max_batch = options.get('max_batch')

    def explain(t):
      valid = calls.valid_targets(t, num_classes)
      run = lambda xs, ts, k, **o: self.fn(model, variables, xs, ts, key=k, **o)
      safe = jnp.clip(t, 0, num_classes - 1)
      if max_batch is not None and max_batch < x.shape[0]:
        result = calls.in_passes(run, x, safe, key, options, max_batch)
      else:
        result = run(x, safe, key, **options)
      return calls.nan_where_invalid(result.astype(result_dtype(x)), valid)

    if target.ndim == 1:
      return explain(target)
    # One class at a time: memory stays that of one target, in one computation.
    return jnp.moveaxis(jax.lax.map(explain, target.T), 0, 1)

  def _key(self, key):
    if key is None:
      if self.random:
        warnings.warn(f'{self.name}: key=None draws the same noise on every call '
                      '(PRNGKey(0)); pass key=jax.random.key(seed), a new one per call',
                      stacklevel=3)
      return jax.random.PRNGKey(0)
    return key

  def _empty(self, model, variables, x, target, key, options) -> Array:
    """The result of an empty batch: (0, ...) of the shape one image would give."""
    if self.space == 'region' and options.get('region_ids') == ():
      return jnp.zeros((0, 0), result_dtype(x))  # no label to name a column
    one = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    shape = jax.eval_shape(
        lambda xs, ts: self.fn(model, variables, xs, jnp.clip(ts, 0, None), key=key,
                               **calls.one_image(options, x)), one,
        jax.ShapeDtypeStruct((1,), target.dtype))
    rest = shape.shape[1:] if target.ndim == 1 else (target.shape[1], *shape.shape[1:])
    return jnp.zeros((0, *rest), result_dtype(x))

  def _missing_options(self, missing: Sequence[str]) -> str:
    described = '; '.join(f'{o}: {_option_doc(self.fn, o)}' for o in missing)
    return (f'{self.name} needs {", ".join(f"{o}=" for o in missing)} (no default): '
            f'{described}')

  def _unknown_option(self, option: str) -> str:
    known = sorted(self.options)
    close = difflib.get_close_matches(option, [*known, *COMMON_OPTIONS], n=1)
    hint = f'; did you mean {close[0]!r}?' if close else ''
    return (f'{self.name} has no option {option!r}{hint} Its options: '
            f'{", ".join(known) or "none"} (and {", ".join(COMMON_OPTIONS)} for every method)')


METHODS: dict[str, Method] = {}


def register(entry: Method) -> Method:
  """Adds a method to :data:`METHODS`, reachable by its reference names too."""
  if entry.name in METHODS:
    raise ValueError(f'method {entry.name!r} is registered already')
  taken = aliases()
  for alias in entry.reference_names:
    if alias in taken or alias in METHODS:
      raise ValueError(f'reference name {alias!r} of {entry.name} is taken')
  if entry.space not in SPACES:
    raise ValueError(f'space must be one of {SPACES}, got {entry.space!r}')
  METHODS[entry.name] = entry
  return entry


def declare(fn: Callable, *, name: str, space: str = 'input',
            needs: Sequence[Capability] = (), cost: Union[CostFn, tuple[int, int]],
            traced: Sequence[str] = (), checks: Optional[Mapping[str, Check]] = None,
            reference_names: Sequence[str] = (), random: bool = False,
            prepare: Optional[Callable] = None) -> Method:
  """A :class:`Method` of ``fn``, its options read from ``fn``'s signature (not registered)."""
  options = keyword_options(fn)
  unknown = (set(traced) | set(checks or {})) - set(options)
  if unknown:
    raise ValueError(f'{name}: {sorted(unknown)} are not options of {fn.__name__}')
  fixed = cost if callable(cost) else (lambda o, h, w: tuple(cost))
  return Method(name, fn, space, frozenset({Capability.FORWARD, *needs}),
                dict(options), frozenset(traced), fixed, dict(checks or {}),
                tuple(reference_names), random, prepare)


def method(name: str, *reference_names: str, **declaration) -> Callable[[Callable], Method]:
  """Decorator: declares ``fn`` as a method (see :func:`declare`) and registers it."""
  return lambda fn: register(declare(fn, name=name, reference_names=reference_names,
                                     **declaration))


def keyword_options(fn: Callable) -> dict[str, Any]:
  """{name: default} of ``fn``'s keyword-only options (``key`` excluded)."""
  parameters = inspect.signature(fn).parameters
  positional = [p for p in parameters if parameters[p].kind is not inspect.Parameter.KEYWORD_ONLY]
  if tuple(positional) != _ARGUMENTS:
    raise TypeError(f'{fn.__name__} must take {_ARGUMENTS} then keyword options, takes '
                    f'{tuple(positional)}')
  return {n: REQUIRED if p.default is inspect.Parameter.empty else p.default
          for n, p in parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY and n != 'key'}


def _option_doc(fn: Callable, option: str) -> str:
  """The description of ``option`` in the Args section of ``fn``'s docstring."""
  doc = inspect.getdoc(fn) or ''
  found = re.search(rf'^\s+(?:[\w, ]*\b)?{re.escape(option)}\b[\w, ]*:\s*(.+)$', doc, re.M)
  return found.group(1).rstrip('.') if found else f'see help({fn.__module__}.{fn.__name__})'


def aliases() -> dict[str, str]:
  """Reference (zennit/Captum) names -> canonical names."""
  return {alias: name for name, m in METHODS.items() for alias in m.reference_names}


def get_method(name: Union[str, Method]) -> Method:
  """The :class:`Method` of a canonical or reference name (a Method is returned as is)."""
  if isinstance(name, Method):
    return name
  canonical = name if name in METHODS else aliases().get(name)
  if canonical is None:
    close = difflib.get_close_matches(name, [*METHODS, *aliases()], n=1)
    hint = f'; did you mean {close[0]!r}?' if close else ''
    raise ValueError(f'unknown saliency method {name!r}{hint} Known: {sorted(METHODS)}')
  return METHODS[canonical]


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


# The one compiled path.

def predict(model, variables, x: Array, output=None) -> Array:
  """The predicted class, (B,) int32: what the reference explains by default (a binary
  (B, 1) model: 1 where its logit is positive)."""
  model = explainable(model, output)
  variables = model.variables_of(variables)
  model, _ = checked_output(model, variables, _check_images(x))
  return _predict(model, variables, x)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model, variables, x):
  return predicted_class(model, variables, x)


def _check_images(x) -> Array:
  if not hasattr(x, 'shape') or np.ndim(x) != 4:
    raise ValueError(f'expected images (B, H, W, C) NHWC, BGR minus the channel mean; got shape '
                     f'{getattr(x, "shape", type(x).__name__)}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'expected floating-point images, got dtype {x.dtype}')
  return jnp.asarray(x)


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
                output):
  result = entry(model, variables, x, target, key=key, dtype=dtype, **traced_options,
                 **dict(static_options))
  return OUTPUTS[output](entry, result)


_STATIC = ('entry', 'model', 'static_options', 'dtype', 'output')
# Called at the top level it owns the compiler options (XLA:CPU's memory-optimised
# scheduler keeps chunked passes at one pass's memory, see chunking.COMPILER_OPTIONS);
# inside a caller's jit those are the caller's to give, and JAX refuses them there.
_run_top = jax.jit(_run_method, static_argnames=_STATIC, compiler_options=COMPILER_OPTIONS)
_run_nested = jax.jit(_run_method, static_argnames=_STATIC)


def _run(*args, **kwargs):
  traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
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
    if calls.is_traced((variables, x, target, key, traced_options)):
      return _run(*self._arguments(variables, x, target, key, traced_options))
    # Concrete arrays: their values are checked here, as attribute does (a few bytes).
    x = _check_images(x)
    if target is not None:
      model, num_classes = checked_output(self.model, self.model.variables_of(variables), x)
      calls.check_target(self.method.name, target, x.shape[0], num_classes)
    return _run(*self._arguments(variables, x, target, key, traced_options))

  def lower(self, variables, x, target=None, key=None, **traced_options):
    """``jax.jit(...).lower`` of the same call: for XLA's cost and memory analysis."""
    return _run_top.lower(*self._arguments(variables, x, target, key, traced_options))

  def _arguments(self, variables, x, target, key, traced_options) -> tuple:
    """The compiled path's arguments; a static option given per call is refused."""
    unknown = set(traced_options) - self.method.traced
    if unknown:
      raise ValueError(f'{self.method.name}: per-call options are {sorted(self.method.traced)}; '
                       f'{sorted(unknown)} must be given to compiled()')
    traced, _ = _split_options(self.method, traced_options, x, self._static_required)
    static = self.static_options
    if self.method.prepare is not None and not calls.is_traced(traced):
      # What the method reads from concrete options (a region map's labels) compiles in.
      given = {**dict(static), **traced}
      prepared = self.method.prepare(self.method.name, self.method.resolve(given), x)
      static = tuple(sorted({**dict(static), **{k: v for k, v in prepared.items()
                                                 if k not in self.method.traced}}.items()))
    return (self.method, self.model, self.model.variables_of(variables), x, target, key,
            traced, static, self.dtype, self.output)


def compiled(method_name: str, model, *, output: str = 'attribution', dtype=None,
             **options) -> CompiledMethod:
  """The method as a compiled function ``f(variables, x, target=None, key=None, **traced)``.

  Args:
    method_name: a name in :data:`METHODS` or a reference alias.
    model: the model (any form :func:`explainable` takes).
    output: 'attribution' or 'relevance' (sum over channels of |attribution|).
    dtype: compute precision.
    **options: the method's options, fixed for this function; traced
      options (a per-batch ``baseline``, ``noise_level``) may be given per call
      instead.

  No value checks and no host round trip: the hot path for benchmarks and
  pipelines that validate their data once.
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
  x = _check_images(x)
  x = x.astype(result_dtype(x))
  finite = np.asarray(jnp.isfinite(x).all(axis=(1, 2, 3)))
  if not finite.all():
    raise ValueError(f'images {np.flatnonzero(~finite).tolist()} of the batch contain NaN '
                     'or infinite values')
  _, num_classes = checked_output(model, variables, x)
  if target is not None:
    calls.check_target(entry.name, target, x.shape[0], num_classes)
  if entry.prepare is not None:
    options = entry.prepare(entry.name, {**options}, x)
  if x.shape[0] == 0:  # nothing to compile: the shape of the result, no value
    return OUTPUTS[output](entry, entry(model, variables, x, target, key=key, dtype=dtype,
                                        **options))
  traced, static = _split_options(entry, options, x)
  result = _run(entry, model, variables, x, target, key, traced, static, dtype, output)
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


def shape_structure(tree):
  """A hashable stand-in for a pytree of arrays: its structure and leaf shapes and dtypes."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  return treedef, tuple(jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves)


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
    method_name: a name in :data:`METHODS` or a reference alias.
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
