"""gestaltxai <command>: the study from face photos to a report (prepare, train, evaluate,
extract, stats, report), the demo that runs it on synthetic faces, and tools.

Each command lives in its own module of this package, which adds its parser
with ``add_parser(subparsers)``; heavy imports happen when a command runs.

Errors are one line on stderr (``gestaltxai <command>: <message>``) and exit
status 1; a usage error (a missing or out-of-range argument) is argparse's
message and status 2; ``gestaltxai --debug <command>`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

#: Command modules, in the order ``gestaltxai --help`` lists them.
COMMANDS = ('demo', 'prepare', 'train', 'evaluate', 'extract', 'evaluate_methods', 'stats',
            'report', 'methods', 'metrics', 'convert_weights')
#: Errors about the user's inputs or environment, reported by their message alone.
ANTICIPATED = (OSError, ValueError, KeyError, RuntimeError, ImportError)
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def int_at_least(minimum: int):
  """An argparse ``type``: an integer >= ``minimum`` (a usage error otherwise)."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}') from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f'must be at least {minimum}, got {value}')
    return value

  return parse


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='gestaltxai', description=__doc__.split('\n\n')[0])
  parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
  commands = parser.add_subparsers(dest='command', required=True)
  for name in COMMANDS:
    importlib.import_module(f'gestaltxai.cli.{name}').add_parser(commands)
  return parser


def _message(err: BaseException) -> str:
  # KeyError's str() is the repr of its key; the message is its argument.
  text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
  if isinstance(err, ANTICIPATED):
    return text
  return f'{type(err).__name__}: {text} (unexpected: run with --debug for the traceback)'


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if not args.debug:
    # orbax and grain log routine notices through absl ("Given directory is read only"):
    # a command's own lines say what happened.
    logging.getLogger('absl').setLevel(logging.ERROR)
  try:
    args.run(args)
    sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
  except BrokenPipeError:
    # The reader went away (`gestaltxai methods | head`): not an error of ours.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_ERROR
  except KeyboardInterrupt as err:
    if args.debug:
      raise
    print(f'gestaltxai {args.command}: interrupted' + (f'; {err}' if err.args else ''),
          file=sys.stderr)
    return EXIT_INTERRUPTED
  except Exception as err:  # pylint: disable=broad-except
    if args.debug:
      raise
    print(f'gestaltxai {args.command}: {_message(err)}', file=sys.stderr)
    return EXIT_ERROR
  return 0


if __name__ == '__main__':
  sys.exit(main())
