"""gestaltxai evaluate-methods: every method x every metric over each fold's held-out
images, sharded and resumable; a table and a per-method summary with confidence intervals."""

from __future__ import annotations

import json
import pathlib

from gestaltxai.cli import flags, int_at_least


def _limits(text) -> dict:
  if not text:
    return {}
  try:
    value = json.loads(text)
  except json.JSONDecodeError as err:
    raise ValueError(f'--metric-images is not valid JSON ({err}): {text!r}') from err
  if not isinstance(value, dict) or not all(isinstance(v, int) and v >= 1
                                            for v in value.values()):
    raise ValueError(f'--metric-images must map metrics to positive image counts, got {text!r}')
  return value


def run(args) -> None:
  from gestaltxai import extract
  from gestaltxai.metrics import evaluation, summary

  job = evaluation.evaluation(
      args.data_dir, args.out, runs=args.runs, weights=args.weights, methods=args.methods or (),
      method_options=extract.parse_method_options(args.method_options),
      metrics=args.metrics or (),
      metric_options=extract.parse_method_options(args.metric_options, '--metric-options'),
      folds=args.folds, images_per_fold=args.images_per_fold, batch_size=args.batch_size,
      shard_size=args.shard_size, out_format=args.format, seed=args.seed,
      metric_images=_limits(args.metric_images))
  index, count = extract.process_split(args.process_index, args.process_count)
  done = job.run(index, count)
  if done['missing']:
    print(f'{len(done["missing"])} shards are left; the table is written by whichever process '
          'finishes last (or by this command run again)')
    return
  provenance = job.assemble()
  print(f'{provenance["rows"]} rows -> {job.table}; summary: {provenance["summary"]}')
  print(summary_text(summary.read_summary(pathlib.Path(provenance['summary']))))


def summary_text(rows) -> str:
  """The summary as aligned text: one line per (metric, method), best first."""
  lines = [f'{"metric":<26}{"method":<30}{"mean":>9}  95% CI (images)     n']
  for row in rows:
    lines.append(f'{row["metric"]:<26}{row["method"]:<30}{row["mean"]:>9.3f}  '
                 f'[{row["ci_low"]:.3f}, {row["ci_high"]:.3f}]  {int(row["n_images"])}'
                 + ('  (best)' if row['rank'] == 1 else ''))
  return '\n'.join(lines)


def add_parser(commands) -> None:
  parser = commands.add_parser(
      'evaluate-methods',
      help='score every method with every metric on held-out images (resumable)')
  parser.add_argument('--data-dir', type=pathlib.Path, required=True,
                      help='a dataset made by `gestaltxai prepare`')
  model = parser.add_mutually_exclusive_group(required=True)
  model.add_argument('--runs', type=pathlib.Path, help='a `gestaltxai train` output (fold-K/)')
  model.add_argument('--weights', type=pathlib.Path, help='one model for every image')
  parser.add_argument('--out', type=pathlib.Path, required=True,
                      help='the table, TABLE.parquet or TABLE.csv (TABLE.summary.csv beside)')
  parser.add_argument('--methods', nargs='+',
                      help='method names or "all" (default: the reference pipeline\'s 15)')
  parser.add_argument('--method-options', help='JSON: {"integrated_gradients": {"steps": 50}}')
  parser.add_argument('--metrics', nargs='+',
                      help='metric names or "all" (default: localisation when the dataset has '
                           'planted regions, deletion, insertion, ROAD, region deletion, '
                           'random logit, model randomisation); `gestaltxai metrics` lists them')
  parser.add_argument('--metric-options', help='JSON: {"road": {"fractions": [0.2, 0.5]}}')
  flags.add_folds(parser)
  parser.add_argument('--images-per-fold', type=int_at_least(1),
                      help='the first N held-out images of each fold (default: all)')
  parser.add_argument('--metric-images',
                      help='JSON: {"model_randomization": 8}: that metric scores only the first '
                           'N images of each fold')
  parser.add_argument('--batch-size', type=int_at_least(1), default=16)
  parser.add_argument('--shard-size', type=int_at_least(1), default=64,
                      help='images per shard, the unit written and resumed')
  flags.add_format(parser)
  parser.add_argument('--seed', type=int, default=0)
  flags.add_process_split(parser)
  parser.set_defaults(run=run)
