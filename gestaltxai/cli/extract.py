"""gestaltxai extract: every held-out and annotated image x every method -> region coefficients,
resumable; each row says its split and role."""

from __future__ import annotations

import pathlib

from gestaltxai.cli import flags, int_at_least


def run(args) -> None:
  joined = flags.join_multihost(args)  # before anything touches a device
  import jax

  from gestaltxai import extract

  job = extract.extraction(
      args.data_dir, args.out, runs=args.runs, weights=args.weights,
      methods=args.methods or extract.REFERENCE_METHODS,
      method_options=extract.parse_method_options(args.method_options), regions=args.region_set,
      folds=args.folds, roles=args.roles, batch_size=args.batch_size, shard_size=args.shard_size,
      dtype=args.dtype, out_format=args.format, seed=args.seed, workers=args.workers,
      progress=not args.quiet, log=print if jax.process_index() == 0 else (lambda _: None),
      overwrite=args.overwrite)
  index, count = extract.process_split(args.process_index, args.process_count)
  done = job.run(index, count)
  if joined:  # every process finishes its shards before process 0 assembles
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices('gestaltxai extract: shards written')
    done['missing'] = [s.id for s in job.store.missing(job.shards)]
    if jax.process_index() == 0:
      _finish(job, done)
    # The processes leave together (jax.distributed shuts down as one).
    multihost_utils.sync_global_devices('gestaltxai extract: table written')
    return
  _finish(job, done)


def _finish(job, done: dict) -> None:
  """Writes the table when every shard is there, and says what it holds."""
  from gestaltxai import extract
  from gestaltxai.artifacts.coefficient_table import OK
  if done['missing']:
    print(f'{len(done["missing"])} shards are left for other processes; the table is written '
          'by whichever finishes last (or by this command run again)')
    return
  provenance = job.assemble(done)
  problems = {s: n for s, n in provenance['statuses'].items() if s != OK}
  roles = provenance['rows_per_role']
  print(f'{provenance["rows"]} rows ({provenance["images"]} images x {len(job.methods)} '
        f'methods) -> {job.table}; rows per role: '
        + ', '.join(f'{role} {n}' for role, n in sorted(roles.items())))
  if problems:
    print(f'{sum(problems.values())} rows have NaN coefficients: ' + '; '.join(
        f'{n} {s}' for s, n in sorted(problems.items())))
  print(f'maps: {extract.maps_path(job.table)}, provenance: {extract.provenance_path(job.table)}')


def add_parser(commands) -> None:
  parser = commands.add_parser(
      'extract',
      help='region coefficients of every held-out and annotated image per method (resumable)')
  parser.add_argument('--data-dir', type=pathlib.Path, required=True,
                      help='a dataset made by `gestaltxai prepare`')
  model = parser.add_mutually_exclusive_group(required=True)
  model.add_argument('--runs', type=pathlib.Path, help='a `gestaltxai train` output (fold-K/)')
  model.add_argument('--weights', type=pathlib.Path,
                     help='one model for every image: a state dict (.npz or pickle) with the '
                          "dataset's classes, or a trained fold folder")
  parser.add_argument('--out', type=pathlib.Path, required=True,
                      help='the table, TABLE.parquet or TABLE.csv')
  parser.add_argument('--methods', nargs='+',
                      help='method names or "all" (default: the reference pipeline\'s 15)')
  parser.add_argument('--method-options', help='JSON: {"integrated_gradients": {"steps": 50}}')
  flags.add_region_set(parser)
  flags.add_folds(parser)
  parser.add_argument('--roles', nargs='+', metavar='ROLE',
                      help='whose images to explain: held_out (RQ1), annotated (RQ2), select, '
                           'train (default: held_out annotated; the row\'s role column says '
                           'which)')
  parser.add_argument('--batch-size', type=int_at_least(1), default=32,
                      help='images per step on this process (rounded up to the devices)')
  parser.add_argument('--shard-size', type=int_at_least(1), default=256,
                      help='images per shard, the unit written and resumed')
  flags.add_dtype(parser)
  flags.add_format(parser)
  parser.add_argument('--seed', type=int, default=0, help='randomness of the noise methods')
  flags.add_decoding_workers(parser)
  parser.add_argument('--quiet', action='store_true', help='no progress bar')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace a finished table at --out (with its maps, provenance and '
                           'shards)')
  flags.add_process_split(parser)
  flags.add_multihost(parser)
  parser.set_defaults(run=run)

