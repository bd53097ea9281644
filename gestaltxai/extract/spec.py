"""What an extraction computes: methods with their options, region sets, table columns.

Everything here is plain data, so a run's arguments can be written to its
manifest and compared with the next run's.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from gestaltxai.errors import ParameterError
from gestaltxai.regions.hpo import HPO_REGIONS, hpo_region_map
from gestaltxai.regions.landmarks import FINE_REGIONS, fine_region_map
from gestaltxai.regions.maps import REFERENCE_REGIONS
from gestaltxai.saliency.registry import METHODS, Method, get_method
# The table's column names and a complete row's status are its reader's: ``eye_xai``
# (RQ1), ``eye_xai_norm`` (RQ2: relevance min-max normalised per image first),
# ``p_<class>``, ``ok``.
from gestaltxai.artifacts.coefficient_table import columns as table_columns

#: Options the table's regions fill in for region methods (their players).
REGION_OPTIONS = ('regions', 'num_regions', 'background')


@dataclasses.dataclass(frozen=True)
class RegionSet:
  """Region label maps of one kind, from a dataset record.

  Attributes:
    names: label names, id 0 ('none' or 'background') first; columns are
      written for ids 1.. .
    labels: record -> (H, W) int labels; raises ValueError with the reason a
      record has no map.
  """

  names: tuple[str, ...]
  labels: Callable[[Mapping[str, np.ndarray]], np.ndarray]

  @property
  def columns(self) -> tuple[str, ...]:
    return self.names[1:]


def _stored_regions(record):
  return np.asarray(record['regions'], np.int32)


def _fine_regions(record):
  return fine_region_map(record['parsing'], record['points68'])


#: ``--regions``: the reference's RQ1 boxes (stored in the dataset) or the fine regions.
REGION_SETS = {
    'reference': RegionSet(REFERENCE_REGIONS, _stored_regions),
    'fine': RegionSet(FINE_REGIONS, _fine_regions),
}
#: RQ2's regions (the reference's boxes plus forehead, chin and hair), always written
#: with normalised relevance.
RQ2_REGIONS = RegionSet(HPO_REGIONS, lambda record: hpo_region_map(record['parsing'],
                                                                    record['regions']))


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """A method and the options it runs with (static values only, JSON-able)."""

  name: str
  options: tuple[tuple[str, Any], ...] = ()

  @property
  def method(self) -> Method:
    return METHODS[self.name]

  def resolved(self) -> dict[str, Any]:
    """Every option with its value (defaults filled in), for the provenance."""
    # Extraction fills in the region options per batch.
    return {k: v for k, v in self.method.resolve(dict(self.options), later=REGION_OPTIONS).items()
            if k not in REGION_OPTIONS}


def method_specs(names: Sequence[str], options: Optional[Mapping[str, Mapping]] = None
                 ) -> tuple[MethodSpec, ...]:
  """Canonical specs of ``names`` ('all' for every method), options checked now.

  Args:
    names: method names or reference aliases, or ['all'].
    options: {method name or alias: {option: value}} (``--method-options``).
  """
  names = list(METHODS) if list(names) == ['all'] else list(names)
  canonical = [get_method(name).name for name in names]
  repeated = sorted({n for n in canonical if canonical.count(n) > 1})
  if repeated:
    raise ValueError(f'methods named twice: {repeated}')
  by_name = {}
  for name, values in (options or {}).items():
    method = get_method(name)
    if method.name not in canonical:
      raise ValueError(f'--method-options names {name}, which is not among the methods '
                       f'{canonical}')
    if not isinstance(values, Mapping):
      raise ValueError(f'options of {name} must be a JSON object, got {values!r}')
    fixed = set(values) & set(REGION_OPTIONS)
    if fixed:
      raise ParameterError(f'{method.name}: {sorted(fixed)} come from {{regions}}, not options')
    by_name[method.name] = tuple(sorted(values.items()))
  specs = tuple(MethodSpec(name, by_name.get(name, ())) for name in canonical)
  for spec in specs:
    spec.resolved()  # unknown options and bad values are refused before any work
  return specs


def parse_method_options(text: Optional[str], flag: str = '--method-options') -> dict[str, dict]:
  """``flag``'s JSON, {name: {option: value}} (of methods, or of metrics); lists become tuples."""
  if not text:
    return {}
  try:
    value = json.loads(text)
  except json.JSONDecodeError as err:
    raise ValueError(f'{flag} is not valid JSON ({err}): {text!r}') from err
  if not isinstance(value, dict) or not all(isinstance(o, dict) for o in value.values()):
    raise ValueError(f'{flag} must be a JSON object of objects, got {text!r}')

  def frozen(v):
    return tuple(frozen(i) for i in v) if isinstance(v, list) else v

  return {name: {k: frozen(v) for k, v in options.items()} for name, options in value.items()}


def columns(region_set: RegionSet, classes: Sequence[str]) -> list[str]:
  """The table's columns, in order (:func:`gestaltxai.artifacts.coefficient_table.columns`)."""
  return table_columns(region_set.columns, RQ2_REGIONS.columns, classes)
