"""Split roles: which stored split of a fold does which job in the study.

A dataset stores per fold one split name per image (``train``, ``val`` or
``test``, see :mod:`gestaltxai.data.schema`). What each split is *for*
differs between datasets, so the study asks for roles, never names:

============  ==============================================================
role          what it does
============  ==============================================================
train         fits the model
select        chooses the epoch (the best accuracy on it), unless a fixed
              epoch is asked for (``gestaltxai train --select last``)
held_out      accuracy, F1 and confusion (``evaluate``), RQ1
annotated     RQ2: the images with clinicians' HPO annotations
============  ==============================================================

NIH-Faces follows the reference code (``train.py``, ``test.py``,
``extract_region_coefficients.py``, the RQ notebooks): the cross-validation
part of a fold is its ``val`` split, which both selects the epoch and is
reported on; ``test`` is the same HPO-annotated images in every fold (no
control). Our own builders keep a clean three-way split: select on ``val``,
hold out ``test`` (their annotations, where they have any, cover it).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

from gestaltxai.errors import ParameterError

ROLES = ('train', 'select', 'held_out', 'annotated')
#: The roles ``gestaltxai extract`` explains by default: what RQ1 and RQ2 read.
STUDY_ROLES = ('held_out', 'annotated')
#: How the ``role`` column of a table joins the roles of an image that has several.
JOIN = '+'
#: The ``role`` of rows with no role split (one model explaining every image).
EVERY_ROLE = 'all'


@dataclasses.dataclass(frozen=True)
class SplitRoles:
  """The stored split name that plays each role (the same in every fold)."""

  train: str = 'train'
  select: str = 'val'
  held_out: str = 'test'
  annotated: str = 'test'

  def split(self, role: str) -> str:
    """The split name of ``role`` (one of :data:`ROLES`)."""
    if role not in ROLES:
      raise ValueError(f'unknown role {role!r}; the roles are {", ".join(ROLES)}')
    return getattr(self, role)

  def roles_of(self, split: str) -> tuple[str, ...]:
    """The roles a split plays, in :data:`ROLES` order."""
    return tuple(role for role in ROLES if getattr(self, role) == split)

  def to_dict(self) -> dict[str, str]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, str]) -> 'SplitRoles':
    unknown = sorted(set(values) - set(ROLES))
    if unknown:
      raise ValueError(f'unknown split roles {unknown}; the roles are {", ".join(ROLES)}')
    return cls(**values)

  def describe(self) -> str:
    """'train=train, select=val, held_out=val, annotated=test'."""
    return ', '.join(f'{role}={getattr(self, role)}' for role in ROLES)


#: Our builders (synthetic, folder): select on val, hold out test.
CLEAN = SplitRoles()
#: NIH-Faces as the reference runs it: the epoch is chosen on the images it is scored on.
REFERENCE = SplitRoles(train='train', select='val', held_out='val', annotated='test')


def row_role(roles: tuple[str, ...]) -> str:
  """The ``role`` cell of an image with ``roles`` ('held_out', 'held_out+annotated')."""
  return JOIN.join(role for role in ROLES if role in roles)


def has_role(cell: str, role: str) -> bool:
  """Whether a table's ``role`` cell includes ``role`` (:data:`EVERY_ROLE` includes all)."""
  return cell == EVERY_ROLE or role in cell.split(JOIN)


def check_roles(roles: Optional[Sequence[str]]) -> tuple[str, ...]:
  """``roles`` (default :data:`STUDY_ROLES`) in :data:`ROLES` order; unknown ones refused."""
  roles = tuple(roles or STUDY_ROLES)
  unknown = [r for r in roles if r not in ROLES]
  if unknown:
    raise ParameterError('{roles}: unknown {unknown}; choose from {choices}', unknown=unknown,
                         choices=', '.join(ROLES))
  return tuple(r for r in ROLES if r in roles)


def images_by_role(dataset, fold: int,
                   roles: Sequence[str]) -> dict[int, tuple[str, str]]:
  """{record index: (its split, its ``role`` cell)} of the fold's images of ``roles``: an
  image of several asked roles (held-out and annotated on our builders) appears once."""
  found: dict[int, list[str]] = {}
  for role in roles:
    for index in dataset.role_indices(fold, role):
      found.setdefault(int(index), []).append(role)
  return {index: (dataset.roles.split(played[0]), row_role(tuple(played)))
          for index, played in found.items()}
