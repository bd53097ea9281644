"""gestaltxai <command>: prepare datasets, list methods, run the demo.

Each command lives in its own module of this package, which adds its parser
with ``add_parser(subparsers)``; heavy imports happen when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Command modules, in the order ``gestaltxai --help`` lists them.
COMMANDS = ('demo', 'prepare', 'train', 'evaluate', 'extract', 'stats', 'report', 'methods')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='gestaltxai', description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest='command', required=True)
  for name in COMMANDS:
    importlib.import_module(f'gestaltxai.cli.{name}').add_parser(commands)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    args.run(args)
  except (FileNotFoundError, ValueError) as err:
    print(f'gestaltxai {args.command}: {err}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
