"""gestaltxai stats: RQ1 (held-out rows) and RQ2 (annotated rows) of a coefficient table -> CSV
files and a printed summary; fails (status 1) when either computes nothing it was asked for."""

from __future__ import annotations

import difflib
import pathlib
import sys

from gestaltxai.cli import flags

#: Skipped tests printed before pointing at skipped.csv.
SHOWN_SKIPPED = 8


def add_rq1_arguments(parser) -> None:
  """The RQ1 options (shared with ``gestaltxai report``)."""
  parser.add_argument('--control', default='Unaffected', help='the control class')
  parser.add_argument('--syndromes', nargs='+',
                      help='classes to test, or "all" for every class but the control '
                           '(default: the paper\'s five, 22q11DS Angelman KS NS WS, on '
                           'NIH-Faces\' classes; every other class elsewhere)')
  parser.add_argument('--methods', nargs='+',
                      help='methods to test, or "paper" for the 14 of the paper\'s RQ1 grid '
                           '(the 15 extracted but grad_cam); default: every method of the table')
  flags.add_region_names(parser)
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
                   regions=tuple(args.region_names) if args.region_names else None,
                   methods=tuple(args.methods) if args.methods else None)


def rq2_config(args):
  from gestaltxai.stats import Rq2Config
  return Rq2Config(methods=tuple(args.methods) if args.methods else None,
                   hpo_scale=args.hpo_scale)


def _grid(header, rows) -> list[str]:
  widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
  return ['  ' + '  '.join(f'{str(v):>{w}s}' if i else f'{str(v):<{w}s}'
                           for i, (v, w) in enumerate(zip(row, widths)))
          for row in [header, *rows]]


def summary_lines(results, notebook_grid: bool = False) -> list[str]:
  """The printed summary: RQ1 counts in the paper's layout (and, asked for, the notebook's
  version of it), per-method totals, RQ2 table."""
  config = results.rq1_config
  summary = results.rq1_summary
  m = sorted({t.m for t in results.rq1})
  lines = [f'RQ1: {len(results.rq1)} tests on the {config.role} rows, control {config.control}, '
           f'significant at Bonferroni p < {config.alpha:g} (m = {"/".join(map(str, m)) or 0} '
           'tests per method)']
  if results.rq1:
    regions, syndromes, grid = summary.by_region()
    lines.append('significant tests over all methods (region x syndrome):')
    lines += _grid(['region', *syndromes], [[r, *row] for r, row in zip(regions, grid.tolist())])
    if notebook_grid and not summary.has_notebook_columns():
      lines.append('(--notebook-grid: the notebook\'s grid copies Angelman into KS; these tests '
                   'lack one of them, so it is not shown)')
    elif notebook_grid:
      _, _, copied = summary.by_region(notebook_bug=True)
      lines.append('the same grid as the reference\'s RQ1 notebook printed it, REPRODUCING ITS '
                   'BUG (the KS column repeats Angelman\'s counts); only for comparison with '
                   'the paper\'s table:')
      lines += _grid(['region', *syndromes],
                     [[r, *row] for r, row in zip(regions, copied.tolist())])
    lines.append('per method (significant / tests):')
    lines += _grid(['method', 'significant', 'tests'], [[row[0], row[-2], row[-1]]
                                                        for row in summary.rows()[:-1]])
  if results.rq2 is not None:
    rq2 = results.rq2_summary
    regions = list(dict.fromkeys(s.region for s in rq2))
    methods = list(dict.fromkeys(s.method for s in rq2))
    cells = {(s.method, s.region): f'{s.r_mean:.3f} +/- {s.r_std:.3f}' for s in rq2}
    lines.append(f'RQ2: Spearman r over folds (mean +/- std), {len(results.rq2)} correlations '
                 f'on the {results.rq2_config.role} rows, HPO scale '
                 f'{results.rq2_config.hpo_scale}:')
    lines += _grid(['method', *regions], [[m, *(cells.get((m, r), '-') for r in regions)]
                                          for m in methods])
  return lines


def checked_rq1_config(args, table):
  """RQ1's settings with the control resolved and every option checked against ``table``."""
  from gestaltxai.stats import options
  args.control = options.resolve_control(args.control, args.table, table.classes)
  config = rq1_config(args)
  regions = table.regions(config.suffix)
  for name in args.region_names or ():  # before the library's check, which names no flag
    if name not in regions:
      close = difflib.get_close_matches(name, list(regions), n=1)
      raise ValueError(f'--region-names {name!r} has no column in {args.table}'
                       + (f' (did you mean {close[0]!r}?)' if close else '')
                       + f'; its regions: {list(regions)}')
  options.check_rq1_options(config, table.classes, regions, args.table)
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
  results = stats.compute(table, hpo, rq1_config(args), rq2_config(args))
  written = stats.write_results(results, args.out)
  if args.notebook_grid and results.rq1_summary.has_notebook_columns():
    written.insert(-2, _write_notebook_grid(results, args.out))
  print('\n'.join(summary_lines(results, args.notebook_grid)))
  if results.skipped:
    print(f'\n{len(results.skipped)} tests or inputs skipped (all in '
          f'{args.out / results_lib.SKIPPED_FILE}):', file=sys.stderr)
    for skipped in results.skipped[:SHOWN_SKIPPED]:
      where = ' '.join(v for v in (skipped.method, skipped.group, skipped.region) if v)
      print(f'  {skipped.analysis} {where}: {skipped.reason}', file=sys.stderr)
    if len(results.skipped) > SHOWN_SKIPPED:
      print(f'  ... and {len(results.skipped) - SHOWN_SKIPPED} more', file=sys.stderr)
  written.insert(-2, provenance.write_stats_provenance(args.out, args.table, args.hpo))
  print('\nwrote ' + ', '.join(str(p) for p in written))
  stats.check_computed(results, table)


#: ``--notebook-grid``'s file: the region x syndrome counts with the notebook's KS column.
NOTEBOOK_GRID_FILE = 'rq1_grid_notebook_bug.csv'


def _write_notebook_grid(results, directory: pathlib.Path) -> pathlib.Path:
  from gestaltxai.stats.records import write_table
  regions, syndromes, grid = results.rq1_summary.by_region(notebook_bug=True)
  path = directory / NOTEBOOK_GRID_FILE
  write_table(path, ['region (KS repeats Angelman: the reference notebook\'s bug)', *syndromes],
              [[r, *row] for r, row in zip(regions, grid.tolist())])
  return path


def add_parser(commands) -> None:
  parser = commands.add_parser('stats', help='RQ1 (syndrome vs control) and RQ2 (HPO agreement)')
  parser.add_argument('--table', type=pathlib.Path, required=True,
                      help='coefficient table (Parquet or CSV) from gestaltxai extract')
  parser.add_argument('--hpo', type=pathlib.Path,
                      help='folder of per-syndrome HPO annotation CSVs (enables RQ2)')
  parser.add_argument('--hpo-scale', choices=('exact', 'reference'), default='exact',
                      help='HPO region scores: exact thirds (default) or the reference '
                           'notebook\'s float32 0.333/0.666/1.0 sums (1X + 2X < 3X)')
  parser.add_argument('--notebook-grid', action='store_true',
                      help='also print (and write) the RQ1 grid as the reference notebook did, '
                           'its KS column repeating Angelman\'s: a labelled reproduction of '
                           'its bug, beside ours')
  parser.add_argument('--out', type=pathlib.Path, required=True, help='output folder')
  add_rq1_arguments(parser)
  parser.add_argument('--overwrite', action='store_true',
                      help='replace the statistics in --out (every file stats writes there)')
  parser.set_defaults(run=run)
