"""gestaltxai demo: the whole study on faces whose planted traits are the answer."""

from __future__ import annotations

import pathlib

from gestaltxai.cli import int_at_least


def run(args) -> None:
  from gestaltxai.demo import run_demo
  run_demo(args.out, args.size, seed=args.seed, overwrite=args.overwrite,
           batch_size=args.batch_size, faces=args.faces, photos=args.photos)


def add_parser(commands) -> None:
  demo = commands.add_parser(
      'demo', help='faces with planted traits -> training -> extraction -> statistics -> '
                   'metrics -> report')
  demo.add_argument('--faces', choices=('synthetic', 'real'), default='synthetic',
                    help="synthetic: cartoon faces, a tiny network from scratch (default); "
                         "real: traits planted on the shipped FairFace photos, dlib's pretrained "
                         'face ResNet fine-tuned')
  demo.add_argument('--photos', type=pathlib.Path, default=None,
                    help='with --faces real: a folder of face photos instead of the shipped '
                         'FairFace sample')
  demo.add_argument('--out', type=pathlib.Path, default=pathlib.Path('gestaltxai-demo'),
                    help='folder for every output; a second run reuses it (default: '
                         './gestaltxai-demo)')
  demo.add_argument('--size', choices=('tiny', 'default'), default='default',
                    help='synthetic: tiny 500 faces, about 4 minutes on 2 CPU cores; default '
                         '1,500 faces, about 11. real: tiny 60 photos (a smoke run), default 200 '
                         '(about 18 minutes; README)')
  demo.add_argument('--seed', type=int, default=0)
  demo.add_argument('--batch-size', type=int_at_least(1), default=32,
                    help='images per extraction step')
  demo.add_argument('--overwrite', action='store_true',
                    help='replace a dataset in --out made with other arguments')
  demo.set_defaults(run=run)
