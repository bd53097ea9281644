"""gestaltxai train: fine-tune on every device (and host), one fold or all, resumable."""

from __future__ import annotations

import pathlib

from gestaltxai.cli import flags, int_at_least


def run(args) -> None:
  flags.join_multihost(args)  # before anything touches a device
  import jax

  from gestaltxai.train.configs import get_config
  from gestaltxai.data.pipeline import FaceDataset
  from gestaltxai.train import train_fold

  config = get_config(args.config).replace(epochs=args.epochs, seed=args.seed, dtype=args.dtype,
                                           batch_size=args.batch_size, workers=args.workers,
                                           learning_rate=args.learning_rate,
                                           selection=args.select)
  dataset = FaceDataset.open(args.data_dir)
  folds = flags.folds_of(args, dataset.num_folds)
  for fold in folds:
    if not 1 <= fold <= dataset.num_folds:
      raise ValueError(f'fold {fold} is out of range: {dataset.directory} has folds '
                       f'1..{dataset.num_folds}')
  if args.overwrite and jax.process_index() == 0:  # every file of the folds trained again
    from gestaltxai import outputs
    from gestaltxai.artifacts.run_folder import fold_dir
    outputs.remove([fold_dir(args.out, fold) for fold in folds])
  lead = jax.process_index() == 0
  if lead:
    print(f'{args.config}: {len(dataset)} images, {len(dataset.classes)} classes, '
          f'{jax.device_count()} devices in {jax.process_count()} processes, global batch '
          f'{config.batch_size}, {config.epochs} epochs, {config.dtype}')
    print(f'split roles: {dataset.roles.describe()}; epoch: {config.selection}')
  for fold in folds:
    train_fold(dataset, fold, config, args.out, weights=args.weights, progress=not args.quiet,
               log=print if lead else (lambda _: None))
  if lead and len(folds) > 1:
    print(f'summary over folds: gestaltxai evaluate --runs {args.out}')


def add_parser(commands) -> None:
  train = commands.add_parser('train', help='fine-tune on every device; resumes a run in --out')
  train.add_argument('--data-dir', type=pathlib.Path, required=True,
                     help='a dataset made by `gestaltxai prepare`')
  train.add_argument('--out', type=pathlib.Path, required=True, help='RUNS folder (fold-K/ inside)')
  flags.add_folds(train, default=(1,), aliases=('--fold',))
  train.add_argument('--config', default='reference',
                     help="reference (default), tiny or dlib (dlib's face ResNet, on a dataset "
                          'prepared with --alignment dlib)')
  train.add_argument('--weights', type=pathlib.Path,
                     help='resnet50_ft_weight.pkl (VGGFace2) or a trained fold folder')
  train.add_argument('--epochs', type=int_at_least(1), help="default: the configuration's")
  train.add_argument('--seed', type=int, help='default: 0')
  flags.add_dtype(train)
  train.add_argument('--batch-size', type=int_at_least(1),
                     help="global batch; default: the configuration's")
  train.add_argument('--learning-rate', type=float,
                     help="the body's base rate (the head's follows); default: the configuration's")
  flags.add_decoding_workers(train)
  train.add_argument('--select', choices=('best', 'inner', 'last'),
                     help='the epoch kept: "best" accuracy on the select split (default, the '
                          'reference\'s; on NIH-Faces that split is also the held-out one), '
                          '"inner": best on a fifth of the training images kept out of '
                          'training, or the "last", fixed by --epochs')
  train.add_argument('--quiet', action='store_true', help='no progress bar')
  train.add_argument('--overwrite', action='store_true',
                     help='replace the folds\' runs in --out instead of resuming them')
  flags.add_multihost(train)
  train.set_defaults(run=run)
