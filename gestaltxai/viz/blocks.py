"""The report's block language (text, notes, cards, tables, details, figures) and the page that
lays sections of blocks out.

A block is a plain dict with a ``kind`` that ``templates/report.html`` (one Jinja template,
autoescaped, so text is escaped there and nowhere else) lays out; figures are embedded as
base64 PNGs, so the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import io
import pathlib
from typing import Sequence

import jinja2
import numpy as np

FIGURE_DPI = 100
#: Methods per overlay grid (columns) and per face grid (rows), so panels stay legible.
METHODS_PER_FIGURE = 7
_TEMPLATE = pathlib.Path(__file__).parent / 'templates' / 'report.html'


@dataclasses.dataclass
class Section:
  """One ``<section>`` of the page: its anchor, its heading (also its entry in the page's
  navigation) and its blocks in order."""
  id: str
  title: str
  blocks: list = dataclasses.field(default_factory=list)


def text(value: str) -> dict:
  return {'kind': 'text', 'text': value}


def note(value: str) -> dict:
  """A remark set apart: what is missing or could not be read."""
  return {'kind': 'note', 'text': value}


def heading(value: str, anchor: str) -> dict:
  return {'kind': 'heading', 'text': value, 'id': anchor}


def pre(value: str) -> dict:
  """Preformatted text (JSON, fingerprints)."""
  return {'kind': 'pre', 'text': value}


def cards(entries: Sequence[tuple]) -> dict:
  """A row of (value, label) figures at a glance."""
  return {'kind': 'cards', 'entries': list(entries)}


def cell(value, cls: str = '', title: str = '') -> dict:
  """A table cell with a class (``text``, ``yes``, ``no``, ``na``) and a tooltip."""
  return {'text': value, 'cls': cls, 'title': title}


def table(header: Sequence[str], rows: Sequence[Sequence], caption: str = '',
          groups: Sequence[tuple[str, int]] = ()) -> dict:
  """A table; cells are :func:`cell` dicts or values (text left-aligned in the first column)."""
  def as_cell(value, first):
    if isinstance(value, dict):
      return value
    return cell(format_value(value), 'text' if first or isinstance(value, str) else '')
  return {'kind': 'table', 'header': list(header), 'caption': caption, 'groups': list(groups),
          'rows': [[as_cell(v, i == 0) for i, v in enumerate(row)] for row in rows]}


def rows_table(rows, row_type) -> dict:
  """A table of dataclass rows, one column per field."""
  names = [f.name for f in dataclasses.fields(row_type)]
  return table(names, [[getattr(row, n) for n in names] for row in rows])


def details(summary: str, blocks: list[dict]) -> dict:
  """Blocks folded away under a one-line summary."""
  return {'kind': 'details', 'summary': summary, 'blocks': blocks}


def figure(fig, anchor: str, caption: str) -> dict:
  """A matplotlib figure, embedded as a PNG."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=FIGURE_DPI)
  return {'kind': 'figure', 'id': anchor, 'caption': caption,
          'png': base64.b64encode(buffer.getvalue()).decode('ascii')}


def mean_std(mean: float, std: float) -> str:
  """'0.512 ± 0.031'; the mean alone where one fold gives no standard deviation."""
  return f'{mean:.3f}' if np.isnan(std) else f'{mean:.3f} ± {std:.3f}'


def format_value(value) -> str:
  """Numbers for tables: 4 significant digits, p values in scientific notation when small."""
  if isinstance(value, (bool, np.bool_)):
    return 'yes' if value else 'no'
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    if not np.isfinite(value):
      return '–'
    return f'{value:.3e}' if value != 0 and abs(value) < 1e-3 else f'{value:.4g}'
  return str(value)


def slug(value: str) -> str:
  """An anchor from a name: lower case, anything but letters and digits a hyphen."""
  return ''.join(c if c.isalnum() else '-' for c in value.lower()).strip('-')


def chunks(items: Sequence, size: int = METHODS_PER_FIGURE) -> list[list]:
  """``items`` in runs of ``size`` (one run, empty, for no items): one figure each."""
  return [list(items[i:i + size]) for i in range(0, len(items), size)] or [[]]


def render_page(sections: Sequence[Section], *, title: str, subtitle: str,
                version: str) -> str:
  """The whole page: header, navigation, the sections in order, footer with the time now."""
  environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
  template = environment.from_string(_TEMPLATE.read_text(encoding='utf-8'))
  now = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
  return template.render(title=title, version=version, generated=now, sections=sections,
                         subtitle=subtitle)
