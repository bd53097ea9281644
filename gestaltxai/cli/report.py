"""gestaltxai report: one self-contained HTML page of data, training, RQ1, RQ2 and figures."""

from __future__ import annotations

import pathlib
import sys

from gestaltxai.cli.stats import add_rq1_arguments, checked_rq1_config, rq1_config


def run(args) -> None:
  from gestaltxai import outputs, provenance
  from gestaltxai.stats import read_table
  from gestaltxai.viz import inputs as report_inputs
  from gestaltxai.viz.report import ReportInputs, write_report
  outputs.claim([args.out], args.overwrite, 'a finished report')
  table = read_table(args.table)
  checked_rq1_config(args, table)  # resolves --control, refuses impossible options
  # Every input given must exist and come from this table (its dataset, runs, maps).
  chain = provenance.check_report_inputs(
      args.table, table.classes, runs=args.runs, stats=args.stats, maps=args.maps,
      default_maps=report_inputs.find_maps(args.table), data_dir=args.data_dir,
      table_provenance_path=args.provenance)
  if args.bench is not None:
    report_inputs.read_records(args.bench)  # missing or malformed: an error, not a warning
  print('made from:\n' + '\n'.join(f'  {line}' for line in chain))
  inputs = ReportInputs(chain=tuple(chain),
                        table=args.table, runs=args.runs, stats=args.stats, hpo=args.hpo,
                        data_dir=args.data_dir, bench=args.bench, maps=args.maps,
                        provenance=args.provenance, rq1=rq1_config(args),
                        evaluation=args.evaluation)
  path, warnings = write_report(inputs, args.out)
  for warning in warnings:
    print(f'warning: {warning}', file=sys.stderr)
  print(f'wrote {path} ({path.stat().st_size / 1e6:.1f} MB)')


def add_parser(commands) -> None:
  parser = commands.add_parser('report', help='a self-contained HTML report')
  parser.add_argument('--table', type=pathlib.Path, required=True,
                      help='coefficient table (Parquet or CSV) from gestaltxai extract')
  parser.add_argument('--out', type=pathlib.Path, required=True, help='the HTML file to write')
  parser.add_argument('--runs', type=pathlib.Path, help='training runs (RUNS/fold-K/metrics.json)')
  parser.add_argument('--stats', type=pathlib.Path,
                      help='a gestaltxai stats folder (default: compute RQ1, and RQ2 with --hpo)')
  parser.add_argument('--hpo', type=pathlib.Path, help='HPO annotation CSVs (RQ2)')
  parser.add_argument('--data-dir', type=pathlib.Path, help='the prepared dataset')
  parser.add_argument('--bench', type=pathlib.Path, help='benchmark records (JSON lines)')
  parser.add_argument('--maps', type=pathlib.Path,
                      help='maps file (default: TABLE.maps.npz beside the table)')
  parser.add_argument('--provenance', type=pathlib.Path,
                      help='provenance JSON (default: TABLE.json beside the table)')
  parser.add_argument('--evaluation', type=pathlib.Path,
                      help='an evaluate-methods table (its summary beside it): the section '
                           '"Which method to trust"')
  add_rq1_arguments(parser)
  parser.add_argument('--overwrite', action='store_true', help='replace the report at --out')
  parser.set_defaults(run=run)
