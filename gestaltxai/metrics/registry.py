"""The table of explanation metrics and the one way each is declared.

A metric is a pure, batched function declared next to itself with
:func:`metric`, as saliency methods are with
:func:`~gestaltxai.saliency.registry.method`::

    @metric('relevance_mass_accuracy', direction='higher')
    def relevance_mass_accuracy(relevance, mask):
      ...  # -> (B,) float

What a metric needs is its positional arguments, named from :data:`INPUTS`
(the model, relevance maps, region coefficients, a ground-truth mask, the
saliency method...); its options are its keyword-only arguments with their
defaults, checked before anything is compiled (a misspelt option names the
closest). ``direction`` says whether higher or lower scores are better, and
``cost`` counts the work per image beyond the explanation being judged:
(forward passes, re-explanations by the method). Every metric returns a (B,)
float score per image; NaN where it is undefined (an empty mask).

Adding a metric is one function and one decorator; ``gestaltxai metrics``
lists the table, and ``gestaltxai evaluate-methods`` runs any of them over a
study.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from gestaltxai.saliency.checks import Check
from gestaltxai.saliency.registry import REQUIRED, _option_doc

#: What a metric may take, by argument name, and what each one is. A metric's
#: positional arguments must come from here; the evaluation fills them in by name.
INPUTS = {
    'method': 'the saliency method being judged (a registered Method), to explain again',
    'model': 'the model (any form saliency.explainable takes)',
    'variables': "the model's variables",
    'x': 'images (B, H, W, C) float',
    'target': 'the explained classes (B,) int',
    'relevance': 'relevance maps (B, H, W) float (a region method: its coefficients painted '
                 'on its regions)',
    'coefficients': 'region coefficients (B, R) float, column 0 for label 0 (none)',
    'regions': 'region label maps (B, H, W) int, 0 for no region',
    'mask': 'a ground-truth mask (B, H, W) bool (a planted region)',
    'region_mask': 'the ground-truth regions (B, R) bool, column 0 for label 0 (none)',
    'key': 'a jax.random key',
}
#: Inputs that come with any evaluation (or with the model): not listed as needs.
_IMPLIED = frozenset({'variables', 'x', 'target', 'key'})
#: What ``direction`` may be.
DIRECTIONS = ('higher', 'lower')
#: (resolved options) -> (forward passes, re-explanations) per image.
CostFn = Callable[[Mapping[str, Any]], tuple[int, int]]


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: usable as a static argument
class Metric:
  """A registered metric.

  Attributes:
    name: canonical snake_case name.
    fn: ``fn(*inputs, **options) -> (B,) float``.
    inputs: the names (from :data:`INPUTS`) of ``fn``'s positional arguments.
    options: {option: default} from ``fn``'s keyword-only arguments.
    direction: 'higher' or 'lower': which scores are better.
    cost: (forward passes, re-explanations) per image for resolved options.
    checks: {option: check} run before anything is traced.
    static: options that shape the computation (compiled in); the rest are traced.
  """

  name: str
  fn: Callable[..., Any]
  inputs: tuple[str, ...]
  options: Mapping[str, Any]
  direction: str
  cost: CostFn
  checks: Mapping[str, Check] = dataclasses.field(default_factory=dict)

  @property
  def summary(self) -> str:
    """The first line of the metric's docstring."""
    return (inspect.getdoc(self.fn) or self.name).splitlines()[0]

  @property
  def needs(self) -> tuple[str, ...]:
    """What the metric needs beyond the images and their targets: the model, maps,
    coefficients, a ground truth, the method."""
    return tuple(i for i in self.inputs if i not in _IMPLIED)

  @property
  def higher_is_better(self) -> bool:
    return self.direction == 'higher'

  def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
    """{option: value} with defaults filled in, every name and value checked."""
    for option in options:
      if option not in self.options:
        close = difflib.get_close_matches(option, list(self.options), n=1)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        raise ValueError(f'metric {self.name} has no option {option!r}{hint} Its options: '
                         f'{", ".join(sorted(self.options)) or "none"}')
    missing = sorted(o for o, d in self.options.items() if d is REQUIRED and o not in options)
    if missing:
      raise ValueError(f'metric {self.name} needs {", ".join(f"{o}=" for o in missing)}: '
                       + '; '.join(f'{o}: {_option_doc(self.fn, o)}' for o in missing))
    resolved = {**self.options, **options}
    for option, check in self.checks.items():
      check(f'{self.name}: {option}', resolved[option])
    return resolved

  def passes(self, **options) -> tuple[int, int]:
    """(forward passes, re-explanations) per image."""
    return self.cost(self.resolve(options))

  def __call__(self, *args, **kwargs):
    """``fn`` with its options checked first: positional inputs, or inputs by name."""
    options = {k: v for k, v in kwargs.items() if k not in INPUTS}
    named = {k: v for k, v in kwargs.items() if k in INPUTS}
    return self.fn(*args, **named, **self.resolve(options))


METRICS: dict[str, Metric] = {}


def declare(fn: Callable, *, name: str, direction: str,
            cost: Union[CostFn, tuple[int, int]] = (0, 0),
            checks: Optional[Mapping[str, Check]] = None) -> Metric:
  """A :class:`Metric` of ``fn`` (not registered); inputs and options from its signature."""
  if direction not in DIRECTIONS:
    raise ValueError(f'{name}: direction must be one of {DIRECTIONS}, got {direction!r}')
  parameters = inspect.signature(fn).parameters
  inputs = tuple(n for n, p in parameters.items()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
  unknown = [n for n in inputs if n not in INPUTS]
  if unknown:
    raise TypeError(f'{name}: positional arguments {unknown} of {fn.__name__} are not '
                    f'metric inputs; use names from {sorted(INPUTS)} or make them '
                    'keyword-only options')
  options = {n: REQUIRED if p.default is p.empty else p.default
             for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
  bad_checks = set(checks or {}) - set(options)
  if bad_checks:
    raise ValueError(f'{name}: checks name {sorted(bad_checks)}, not options of {fn.__name__}')
  fixed = cost if callable(cost) else (lambda o: tuple(cost))
  return Metric(name, fn, inputs, dict(options), direction, fixed, dict(checks or {}))


def register(entry: Metric) -> Metric:
  if entry.name in METRICS:
    raise ValueError(f'metric {entry.name!r} is registered already')
  METRICS[entry.name] = entry
  return entry


def metric(name: str, **declaration) -> Callable[[Callable], Metric]:
  """Decorator: declares ``fn`` as a metric (see :func:`declare`) and registers it."""
  return lambda fn: register(declare(fn, name=name, **declaration))


def get_metric(name: Union[str, Metric]) -> Metric:
  """The :class:`Metric` of a name (a Metric is returned as is); a typo names the closest."""
  if isinstance(name, Metric):
    return name
  if name not in METRICS:
    close = difflib.get_close_matches(name, list(METRICS), n=1)
    hint = f'; did you mean {close[0]!r}?' if close else ''
    raise ValueError(f'unknown metric {name!r}{hint} Known: {sorted(METRICS)}')
  return METRICS[name]


def metric_names(names: Sequence[str]) -> tuple[str, ...]:
  """Canonical names of ``names`` (['all'] for every metric), each checked."""
  names = list(METRICS) if list(names) == ['all'] else list(names)
  return tuple(get_metric(n).name for n in names)
