"""gestaltxai <command>: the study from face photos to a report (prepare, train, evaluate,
extract, stats, report), the demo that runs it on synthetic faces, and tools.

Each command lives in its own module of this package, which adds its parser
with ``add_parser(subparsers)``; heavy imports happen when a command runs. A flag that
several commands take is added from :mod:`gestaltxai.cli.flags`, one spelling per concept.

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
import threading
from typing import Mapping

from gestaltxai.errors import ParameterError

#: Command modules, in the order ``gestaltxai --help`` lists them.
COMMANDS = ('demo', 'prepare', 'train', 'evaluate', 'extract', 'evaluate_methods', 'stats',
            'report', 'methods', 'metrics', 'convert_weights')
#: Errors about the user's inputs or environment, reported by their message alone.
ANTICIPATED = (OSError, ValueError, KeyError, RuntimeError, ImportError)
EXIT_ERROR = 1
#: Library parameters whose flag is named otherwise (parameter -> the argparse dests it may
#: have, the command's own one applies); every other parameter is the flag of its own name.
RENAMED_PARAMETERS = {'out_format': ('format',), 'regions': ('region_set', 'region_names')}
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
  for command in commands.choices.values():
    command.set_defaults(parameter_flags=_parameter_flags(command))
  return parser


def _parameter_flags(command: argparse.ArgumentParser) -> dict[str, str]:
  """{library parameter: its flag} of a command, so that errors name the flags."""
  actions = command._actions  # pylint: disable=protected-access
  flags = {action.dest: max(action.option_strings, key=len)
           for action in actions if action.option_strings}
  flags.update({parameter: flags[dest] for parameter, dests in RENAMED_PARAMETERS.items()
                for dest in dests if dest in flags})
  return flags


def _message(err: BaseException, flags: Mapping[str, str]) -> str:
  # KeyError's str() is the repr of its key; the message is its argument.
  text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
  if isinstance(err, ParameterError):
    text = err.naming(flags)
  lines = str(text).strip().splitlines() or ['']
  if len(lines) > 1:  # a library's multi-line dump (tensorstore's specs): its first line
    text = f'{lines[0].rstrip(" :")} ... (run with --debug for the rest)'
  if isinstance(err, ANTICIPATED):
    return text
  return f'{type(err).__name__}: {text} (unexpected: run with --debug for the traceback)'


_BACKGROUND_LOGGERS = ('asyncio', 'orbax', 'tensorstore')


def _quiet_background_errors():
  """Without --debug, background threads stay silent: the command's one line says what failed.

  orbax saves in threads with an asyncio loop; when a save fails (a full disk) or
  the command stops (Ctrl-C), each of them logs or raises its own traceback
  ("Event loop is closed"), and the main thread reports the failure anyway.
  """
  levels = {name: logging.getLogger(name).level for name in _BACKGROUND_LOGGERS}
  hooks = threading.excepthook, sys.unraisablehook
  for name in _BACKGROUND_LOGGERS:
    logging.getLogger(name).setLevel(logging.CRITICAL)
  threading.excepthook = lambda _: None
  sys.unraisablehook = lambda _: None

  def restore():
    for name, level in levels.items():
      logging.getLogger(name).setLevel(level)
    threading.excepthook, sys.unraisablehook = hooks
  return restore


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if not args.debug:
    # orbax and grain log routine notices through absl ("Given directory is read only"):
    # a command's own lines say what happened.
    logging.getLogger('absl').setLevel(logging.ERROR)
    restore = _quiet_background_errors()
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
    print(f'gestaltxai {args.command}: {_message(err, args.parameter_flags)}', file=sys.stderr)
    return EXIT_ERROR
  finally:
    if not args.debug:
      restore()
  return 0


def console() -> int:
  """The ``gestaltxai`` command: :func:`main`, then an exit that waits for no background
  thread after a failure (orbax's would print their own errors while shutting down)."""
  code = main()
  if code:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  return code


if __name__ == '__main__':
  sys.exit(console())
