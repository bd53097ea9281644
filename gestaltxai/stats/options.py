"""RQ1's options checked against the table at the boundary, and the default control."""

from __future__ import annotations

import difflib
import pathlib
from typing import Optional, Sequence

from gestaltxai.errors import ParameterError

#: The control's name where neither --control nor the table's provenance gives one (any case).
DEFAULT_CONTROL = 'unaffected'


def _closest(name: str, choices: Sequence[str]) -> str:
  close = difflib.get_close_matches(name, list(choices), n=1)
  return f' (did you mean {close[0]!r}?)' if close else ''


def check_probability(name: str, value: float) -> None:
  """A significance level must lie in (0, 1) (NaN fails every comparison, so it is caught)."""
  if not 0 < value < 1:
    raise ValueError(f'{name} must be a probability between 0 and 1 (exclusive), got {value}')


def resolve_control(given: Optional[str], table_path: pathlib.Path, classes: Sequence[str]
                    ) -> str:
  """--control, else the dataset's control recorded in ``TABLE.json``, else the class named
  'unaffected' in any case; refuses when none is found."""
  if given:
    return given
  from gestaltxai.provenance import read_table_provenance  # pylint: disable=import-outside-toplevel
  recorded = (read_table_provenance(table_path) or {}).get('control')
  if recorded:
    return recorded
  found = [c for c in classes if c.lower() == DEFAULT_CONTROL]
  if len(found) == 1:
    return found[0]
  raise ValueError(f'{table_path} names no control class and none is called '
                   f'{DEFAULT_CONTROL!r}: give --control (one of {list(classes)})')


def check_rq1_options(config, classes: Sequence[str], regions: Sequence[str],
                      table_path) -> None:
  """Refuses levels outside (0, 1), an unknown control, syndrome or region, and the control
  among the syndromes (it would be tested against itself and counted by Bonferroni)."""
  check_probability('--alpha', config.alpha)
  check_probability('--alpha-assumptions', config.alpha_assumptions)
  if config.control not in classes:
    raise ValueError(f'--control {config.control!r} is not a class of {table_path}'
                     f'{_closest(config.control, classes)}; its classes: {list(classes)}')
  for syndrome in config.syndromes or ():
    if syndrome == config.control:
      raise ValueError(f'--syndromes lists the control {syndrome!r}: it cannot be tested '
                       'against itself')
    if syndrome not in classes:
      raise ValueError(f'--syndromes {syndrome!r} is not a class of {table_path}'
                       f'{_closest(syndrome, classes)}; its classes: {list(classes)}')
  for region in config.regions or ():
    if region not in regions:
      raise ParameterError('{regions} {given!r} has no column in {table}{closest}; its '
                           'regions: {known}', given=region, table=table_path,
                           closest=_closest(region, regions), known=list(regions))
