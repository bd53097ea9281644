"""Regenerates the tables of benchmarks/RESULTS.md from the JSON records.

    python -m benchmarks.tables [--records benchmarks/results.jsonl] [--results RESULTS.md]
        [--check]

RESULTS.md marks each generated table with a pair of comments::

    <!-- table benchmark=method_cost size=full device~=cpu -->
    ... (generated) ...
    <!-- end table -->

The opening comment selects records: ``key=value`` must be equal, ``key~=text``
must contain the text. Of the selected records the newest run counts (the
records of the latest date and command); each row is one record, with the
run's device, date, command and versions above the table. Prose outside the
markers is kept as written. ``--check`` fails when a table is out of date.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
from typing import Any, Callable, Iterable, Optional

from benchmarks import records

RESULTS = pathlib.Path(__file__).resolve().parent / 'RESULTS.md'
_BLOCK = re.compile(r'(<!-- table (?P<query>[^>]*?) -->\n)(?P<body>.*?)(<!-- end table -->)',
                    re.S)

Column = tuple[str, Callable[[dict[str, Any]], str]]


def _number(key: str, fmt: str, scale: float = 1.0) -> Callable[[dict[str, Any]], str]:
  def cell(record):
    value = record.get(key)
    return '' if value is None else format(value if scale == 1 else value * scale, fmt)
  return cell


def _passes(record) -> str:
  forwards, backwards = record['passes']
  return f'{forwards}F+{backwards}B'


COMMON_COLUMNS: list[Column] = [
    ('name', lambda r: str(r['name'])), ('batch', _number('batch_size', 'd')),
    ('img/s', _number('images_per_s', '.3g')), ('ms/img', _number('ms_per_image', '.1f'))]
#: benchmark -> the columns of its table.
COLUMNS: dict[str, list[Column]] = {
    'method_cost': COMMON_COLUMNS + [
        ('passes', _passes), ('time / passes', _number('time_over_passes', '.2f')),
        ('GFLOP/img', _number('flops_per_image', '.1f', 1e-9)),
        ('TFLOP/s', _number('flops_per_s', '.3f', 1e-12)),
        ('of peak', _number('peak_fraction', '.2f')),
        ('temp MiB', _number('temp_bytes', '.0f', 2**-20)),
        ('Captum img/s', _number('captum_images_per_s', '.3g')),
        ('ours / Captum', _number('speedup_vs_captum', '.2f'))],
    'matmul_peak': [('dtype', lambda r: r['dtype']), ('side', _number('side', 'd')),
                    ('TFLOP/s', _number('flops_per_s', '.3f', 1e-12))],
    'pass_size': COMMON_COLUMNS + [('images per pass', _number('images_per_pass', 'd')),
                                   ('temp MiB', _number('temp_bytes', '.0f', 2**-20))],
    'extract': [('methods', lambda r: ', '.join(r['methods'])), ('size', lambda r: r['size']),
                ('batch', _number('batch_size', 'd')), ('images', _number('images', 'd')),
                ('end to end img/s', _number('end_to_end_images_per_s', '.3g')),
                ('compute only img/s', _number('compute_images_per_s', '.3g')),
                ('devices busy', _number('busy', '.0%')),
                ('decoding workers', _number('workers', 'd'))],
    'extract_method': COMMON_COLUMNS,
    'xla_options': [('option', lambda r: str(r['name'])),
                    ('XLA options', lambda r: ', '.join(
                        f'`{k}={v}`' for k, v in r.get('compiler_options', {}).items())),
                    ('img/s', _number('images_per_s', '.3g')),
                    ('defaults img/s', _number('default_images_per_s', '.2f')),
                    ('speedup', _number('speedup', '.3f')),
                    ('temp MiB', _number('temp_bytes', '.0f', 2**-20))],
}


def parse_query(query: str) -> list[tuple[str, str, str]]:
  """'a=b c~=d' -> [('a', '=', 'b'), ('c', '~=', 'd')]."""
  terms = []
  for term in query.split():
    match = re.fullmatch(r'(\w+)(~?=)(.*)', term)
    if not match:
      raise ValueError(f'bad table selector {term!r}: expected key=value or key~=text')
    terms.append(match.groups())
  return terms


def select(all_records: Iterable[dict[str, Any]], query: str) -> list[dict[str, Any]]:
  """The records of the newest run (date, then command) that match ``query``."""
  terms = parse_query(query)
  matching = [r for r in all_records
              if all((str(r.get(k)) == v) if op == '=' else (v in str(r.get(k, '')))
                     for k, op, v in terms)]
  if not matching:
    return []
  newest = max(matching, key=lambda r: r.get('date', ''))
  run = (newest.get('date'), newest.get('command'))
  return [r for r in matching if (r.get('date'), r.get('command')) == run]


def render(selected: list[dict[str, Any]]) -> str:
  """A markdown table with the run's provenance above it."""
  if not selected:
    return '(no records yet)\n'
  first = selected[0]
  columns = COLUMNS.get(first['benchmark'], COMMON_COLUMNS)
  versions = ', '.join(f'{k} {v}' for k, v in sorted(first.get('versions', {}).items()))
  lines = [f'{first["device"]}, {first["dtype"]}, {first["date"]}: `{first["command"]}` '
           f'({versions})', '',
           '| ' + ' | '.join(title for title, _ in columns) + ' |',
           '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(cell(r) for _, cell in columns) + ' |' for r in selected]
  return '\n'.join(lines) + '\n'


def regenerate(text: str, all_records: list[dict[str, Any]]) -> str:
  """``text`` with every marked table rebuilt from ``all_records``."""
  return _BLOCK.sub(lambda m: m.group(1) + render(select(all_records, m.group('query')))
                    + m.group(4), text)


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--records', type=pathlib.Path, default=records.DEFAULT_PATH)
  parser.add_argument('--results', type=pathlib.Path, default=RESULTS)
  parser.add_argument('--check', action='store_true', help='exit 1 if a table is out of date')
  args = parser.parse_args(argv)
  all_records = list(records.read_records(args.records)) if args.records.exists() else []
  text = args.results.read_text(encoding='utf-8')
  updated = regenerate(text, all_records)
  if args.check:
    if updated != text:
      print(f'{args.results}: tables differ from {args.records}; run python -m benchmarks.tables')
      return 1
    return 0
  args.results.write_text(updated, encoding='utf-8')
  print(f'{args.results}: {len(_BLOCK.findall(text))} tables from {len(all_records)} records')
  return 0


if __name__ == '__main__':
  sys.exit(main())
