"""The table of saliency methods: how a method is declared, registered and looked up.

A method is declared next to its function with :func:`method`: its name,
the reference names it answers to, what it needs of the model (a
:class:`~gestaltxai.models.contract.Capability`), its cost in passes per image
and the checks on its options (:mod:`~gestaltxai.saliency.checks`). Options and
their defaults are the function's own keyword arguments, written once. The
declaration returns a :class:`Method`: a pure, jit-able callable with one
signature::

    method(model, variables, x, target=None, *, key=None, dtype=None, output=None, **options)

which adapts the model (:func:`~gestaltxai.models.contract.explainable`),
refuses a model that lacks what the method needs, checks every option before
anything is traced, explains the predicted class when ``target`` is None and
T classes per image for a (B, T) target (:func:`~gestaltxai.saliency.calls.call`).
:func:`~gestaltxai.saliency.attribute`, :func:`~gestaltxai.saliency.relevance`
and :func:`~gestaltxai.saliency.compiled` (:mod:`~gestaltxai.saliency.execution`)
check the same on the host and run the same method body inside one jitted
function, so options (``dtype`` included) mean the same everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax

from gestaltxai.models.contract import Capability, Explainable, ModelContractError, explainable
from gestaltxai.saliency import calls
from gestaltxai.saliency.checks import Check

Array = jax.Array
#: (options with defaults filled in, image height, image width) -> (forward, backward) passes
#: per image.
CostFn = Callable[[Mapping[str, Any], int, int], tuple[int, int]]

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
    return calls.call(self, model, variables, x, target, key=key, dtype=dtype, output=output,
                      options=options)

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
