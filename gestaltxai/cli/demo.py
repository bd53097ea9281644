"""gestaltxai demo: the whole study on synthetic faces whose planted traits are the answer."""

from __future__ import annotations

import pathlib

from gestaltxai.cli import int_at_least


def run(args) -> None:
  from gestaltxai.demo import run_demo
  run_demo(args.out, args.size, seed=args.seed, overwrite=args.overwrite,
           batch_size=args.batch_size)


def add_parser(commands) -> None:
  demo = commands.add_parser(
      'demo', help='synthetic faces -> training -> extraction -> statistics -> metrics -> report')
  demo.add_argument('--out', type=pathlib.Path, default=pathlib.Path('gestaltxai-demo'),
                    help='folder for every output; a second run reuses it (default: '
                         './gestaltxai-demo)')
  demo.add_argument('--size', choices=('tiny', 'default'), default='default',
                    help='tiny: 500 faces, about 3.5 minutes on 2 CPU cores; default: 1,500 '
                         'faces, about 7')
  demo.add_argument('--seed', type=int, default=0)
  demo.add_argument('--batch-size', type=int_at_least(1), default=32,
                    help='images per extraction step')
  demo.add_argument('--overwrite', action='store_true',
                    help='replace a dataset in --out made with other arguments')
  demo.set_defaults(run=run)
