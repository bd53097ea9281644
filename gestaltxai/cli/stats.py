"""gestaltxai stats: RQ1 and RQ2 of a coefficient table -> CSV files and a printed summary."""

from __future__ import annotations

import pathlib
import sys

#: Skipped tests printed before pointing at skipped.csv.
SHOWN_SKIPPED = 8


def add_rq1_arguments(parser) -> None:
  """The RQ1 options (shared with ``gestaltxai report``)."""
  parser.add_argument('--control', default='Unaffected', help='the control class')
  parser.add_argument('--syndromes', nargs='+', help='classes to test (default: all others)')
  parser.add_argument('--regions', nargs='+', help='regions to test (default: every '
                      '<region>_xai column)')
  parser.add_argument('--alpha', type=float, default=0.001,
                      help='significance after Bonferroni (default 0.001)')
  parser.add_argument('--alpha-assumptions', type=float, default=0.05,
                      help='Levene and Shapiro-Wilk level (default 0.05)')
  # No --control: the dataset's control, recorded in TABLE.json, else the class named
  # 'unaffected' in any case (gestaltxai.stats.options.resolve_control).
  parser.set_defaults(control=None)


def rq1_config(args):
  from gestaltxai.stats import Rq1Config
  return Rq1Config(control=args.control, alpha=args.alpha,
                   alpha_assumptions=args.alpha_assumptions,
                   syndromes=tuple(args.syndromes) if args.syndromes else None,
                   regions=tuple(args.regions) if args.regions else None)


def _grid(header, rows) -> list[str]:
  widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
  return ['  ' + '  '.join(f'{str(v):>{w}s}' if i else f'{str(v):<{w}s}'
                           for i, (v, w) in enumerate(zip(row, widths)))
          for row in [header, *rows]]


def summary_lines(results) -> list[str]:
  """The printed summary: RQ1 counts in the paper's layout, per-method totals, RQ2 table."""
  config = results.rq1_config
  summary = results.rq1_summary
  lines = [f'RQ1: {len(results.rq1)} tests, control {config.control}, significant at '
           f'Bonferroni p < {config.alpha:g}']
  if results.rq1:
    regions, syndromes, grid = summary.by_region()
    lines.append('significant tests over all methods (region x syndrome):')
    lines += _grid(['region', *syndromes], [[r, *row] for r, row in zip(regions, grid.tolist())])
    lines.append('per method (significant / tests):')
    lines += _grid(['method', 'significant', 'tests'], [[row[0], row[-2], row[-1]]
                                                        for row in summary.rows()[:-1]])
  if results.rq2 is not None:
    rq2 = results.rq2_summary
    regions = list(dict.fromkeys(s.region for s in rq2))
    methods = list(dict.fromkeys(s.method for s in rq2))
    cells = {(s.method, s.region): f'{s.r_mean:.3f} +/- {s.r_std:.3f}' for s in rq2}
    lines.append(f'RQ2: Spearman r over folds (mean +/- std), {len(results.rq2)} correlations:')
    lines += _grid(['method', *regions], [[m, *(cells.get((m, r), '-') for r in regions)]
                                          for m in methods])
  return lines


def checked_rq1_config(args, table):
  """RQ1's settings with the control resolved and every option checked against ``table``."""
  from gestaltxai.stats import options
  args.control = options.resolve_control(args.control, args.table, table.classes)
  config = rq1_config(args)
  options.check_rq1_options(config, table.classes, table.regions(config.suffix), args.table)
  return config


def run(args) -> None:
  from gestaltxai import outputs, provenance, stats
  from gestaltxai.stats import results as results_lib
  table = stats.read_table(args.table)
  checked_rq1_config(args, table)  # resolves --control, refuses impossible options
  owned = [args.out / name for name in (
      results_lib.RQ1_FILE, results_lib.RQ1_SUMMARY_FILE, results_lib.RQ2_FILE,
      results_lib.RQ2_SUMMARY_FILE, results_lib.SKIPPED_FILE, results_lib.SETTINGS_FILE,
      provenance.STATS_FILE)]
  outputs.claim(owned, args.overwrite, 'finished statistics')
  hpo = stats.read_hpo(args.hpo) if args.hpo else None
  results = stats.compute(table, hpo, rq1_config(args))
  written = stats.write_results(results, args.out)
  print('\n'.join(summary_lines(results)))
  if results.skipped:
    print(f'\n{len(results.skipped)} tests or inputs skipped (all in {args.out / "skipped.csv"}):',
          file=sys.stderr)
    for skipped in results.skipped[:SHOWN_SKIPPED]:
      where = ' '.join(v for v in (skipped.method, skipped.group, skipped.region) if v)
      print(f'  {skipped.analysis} {where}: {skipped.reason}', file=sys.stderr)
    if len(results.skipped) > SHOWN_SKIPPED:
      print(f'  ... and {len(results.skipped) - SHOWN_SKIPPED} more', file=sys.stderr)
  written.insert(-2, provenance.write_stats_provenance(args.out, args.table, args.hpo))
  print('\nwrote ' + ', '.join(str(p) for p in written))
  if not results.rq1 and not results.rq2:
    raise ValueError(f'no test could be computed from {args.table}; see {written[-2]}')


def add_parser(commands) -> None:
  parser = commands.add_parser('stats', help='RQ1 (syndrome vs control) and RQ2 (HPO agreement)')
  parser.add_argument('--table', type=pathlib.Path, required=True,
                      help='coefficient table (Parquet or CSV) from gestaltxai extract')
  parser.add_argument('--hpo', type=pathlib.Path,
                      help='folder of per-syndrome HPO annotation CSVs (enables RQ2)')
  parser.add_argument('--out', type=pathlib.Path, required=True, help='output folder')
  add_rq1_arguments(parser)
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the statistics in --out (every file stats writes there)')
  parser.set_defaults(run=run)
