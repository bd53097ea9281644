"""The self-contained HTML report: its inputs read (:mod:`gestaltxai.viz.inputs`), its sections
built (:mod:`gestaltxai.viz.sections`) and laid out as one page (:mod:`gestaltxai.viz.blocks`).

One file, every figure embedded as a base64 PNG, no script and nothing
fetched from the network: it opens from disk anywhere. An optional input
that cannot be read becomes a note in its section and a warning, so the rest
of the report is still written.
"""

from __future__ import annotations

import pathlib

from gestaltxai import __version__
from gestaltxai.viz.blocks import render_page
from gestaltxai.viz.inputs import ReportInputs, read_study
from gestaltxai.viz.sections import build_sections

__all__ = ['ReportInputs', 'build_report', 'write_report']


def build_report(report_inputs: ReportInputs) -> tuple[str, list[str]]:
  """(the HTML page, warnings about optional inputs that could not be used).

  Raises:
    FileNotFoundError, ValueError: the table (or the stats folder or HPO
      files) cannot be read.
  """
  study = read_study(report_inputs)
  sections = build_sections(study)
  table = study.table
  html = render_page(
      sections, title='gestaltxai report', version=__version__,
      subtitle=f'{pathlib.Path(report_inputs.table).name}: {len(table.methods)} methods, '
               f'{len(table.classes)} classes · control {study.config.control}')
  return html, study.warnings


def write_report(report_inputs: ReportInputs, out: str | pathlib.Path) -> tuple[pathlib.Path,
                                                                             list[str]]:
  """Builds the report and writes it to ``out``; returns (path, warnings)."""
  html, warnings = build_report(report_inputs)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  from gestaltxai.files import atomic_write  # pylint: disable=import-outside-toplevel
  atomic_write(out, lambda path: path.write_text(html, encoding='utf-8'))  # whole or absent
  return out, warnings
