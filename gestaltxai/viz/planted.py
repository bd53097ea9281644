"""The planted strip: one person unaffected and with each trait, the warp drawn as arrows."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

#: Arrows are drawn this many times their length: the warps move a few pixels.
ARROW_GAIN = 3.0
ARROW_COLOUR = '#ffd23f'
#: A landmark counts as moved when the warp shifted it by more than this many pixels.
MOVED_PX = 0.25


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def planted_strip(records: Sequence[dict], *, title: Optional[str] = None) -> Figure:
  """One identity's images side by side, each trait's landmark moves drawn as arrows.

  Args:
    records: dataset records of one identity (``image`` (S, S, 3) uint8,
      ``points68`` (68, 2), ``trait``, ``strength``, ``measured_change``), the
      unaffected one among them: arrows start at its landmarks.
  """
  by_trait = {_text(r['trait']): r for r in records}
  if 'unaffected' not in by_trait:
    raise ValueError('the planted strip needs the unaffected image of the identity, got '
                     f'{sorted(by_trait)}')
  base = np.asarray(by_trait['unaffected']['points68'], np.float64)
  fig = Figure(figsize=(2.2 * len(records), 2.6))
  axes = fig.subplots(1, len(records), squeeze=False)[0]
  for ax, (trait, record) in zip(axes, by_trait.items()):
    ax.imshow(record['image'])
    moved = np.asarray(record['points68'], np.float64)
    shift = moved - base
    on = np.linalg.norm(shift, axis=1) > MOVED_PX
    if on.any():
      ax.quiver(base[on, 0], base[on, 1], ARROW_GAIN * shift[on, 0], ARROW_GAIN * shift[on, 1],
                angles='xy', scale_units='xy', scale=1, color=ARROW_COLOUR, width=0.012)
    label = trait if trait == 'unaffected' else (
        f'{trait}\nstrength {float(record["strength"]):.2f}, '
        f'dlib {float(record["measured_change"]):+.3f}')
    ax.set_title(label, fontsize=7)
    ax.set_axis_off()
  fig.suptitle(title or f'{_text(records[0]["identity"])}: arrows {ARROW_GAIN:g}x the warp',
               fontsize=8)
  fig.tight_layout(rect=(0, 0, 1, 0.92))
  return fig


def identity_records(dataset, identity: Optional[str] = None) -> list[dict]:
  """The records of one identity of a planted dataset (the first with every trait when
  ``identity`` is None), in class order."""
  groups: dict[str, dict[str, dict]] = {}
  for index in range(len(dataset)):
    record = dataset[index]
    groups.setdefault(_text(record['identity']), {})[_text(record['trait'])] = record
  if identity is None:
    complete = [i for i, g in sorted(groups.items()) if len(g) == len(dataset.classes)]
    identity = complete[0] if complete else max(sorted(groups), key=lambda i: len(groups[i]))
  if identity not in groups:
    raise ValueError(f'no identity {identity!r} in {dataset.directory}')
  return [groups[identity][c] for c in dataset.classes if c in groups[identity]]
