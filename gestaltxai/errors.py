"""Errors about a caller's arguments that name the parameters, so that the command line can
name its flags instead (``out_format`` in Python, ``--format`` on the command line)."""

from __future__ import annotations

import string
from typing import Any, Mapping


class ParameterError(ValueError):
  """A bad argument. ``template`` names parameters as ``{parameter}`` fields and may hold
  ``{value}`` fields given in ``values``; ``str()`` names the parameters as Python does.

  Example::

    raise ParameterError('{out_format} {given!r} does not match {out} {table}',
                         given='csv', table='t.parquet')
  """

  def __init__(self, template: str, **values: Any):
    self.template = template
    self.values = values
    super().__init__(self.naming({}))

  @property
  def parameters(self) -> list[str]:
    """The parameters the message names, in order."""
    fields = [field for _, field, _, _ in string.Formatter().parse(self.template) if field]
    return [field for field in dict.fromkeys(fields) if field not in self.values]

  def naming(self, names: Mapping[str, str]) -> str:
    """The message with each parameter called what ``names`` calls it (else its own name)."""
    return self.template.format(**{p: names.get(p, p) for p in self.parameters}, **self.values)
