"""The registry listings of `gestaltxai methods` and `gestaltxai metrics`: one table form."""

from __future__ import annotations

from typing import Sequence

Row = Sequence[str]


def markdown(header: Row, rows: Sequence[Row], code_columns: Sequence[int]) -> str:
  """A Markdown table; cells of ``code_columns`` (other than '-') in backticks."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(f'`{c}`' if i in code_columns and c != '-' else c
                              for i, c in enumerate(row)) + ' |' for row in rows]
  return '\n'.join(lines)


def print_table(header: Row, rows: Sequence[Row], legend: str) -> None:
  """Aligned columns (the last one left ragged: it is the longest), then ``legend``."""
  table = [header, *rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
  for row in table:
    print('  '.join(c.ljust(w) for c, w in zip(row, widths)) + '  ' + row[-1])
  print('\n' + legend)
