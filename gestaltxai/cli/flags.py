"""The spellings of the flags that several commands share: each command adds them from here."""

from __future__ import annotations

import argparse
import collections.abc
import sys
from typing import Callable, Iterable, Optional

from gestaltxai.cli import int_at_least

#: ``--folds all``.
ALL = 'all'
DTYPES = ('float32', 'bfloat16')


class LazyChoices(collections.abc.Sequence):
  """argparse ``choices`` read from the library on first use (a check or ``--help``): building
  the parser imports no JAX."""

  def __init__(self, load: Callable[[], Iterable[str]]):
    self._load = load
    self._items: Optional[tuple[str, ...]] = None

  def _get(self) -> tuple[str, ...]:
    if self._items is None:
      self._items = tuple(self._load())
    return self._items

  def __getitem__(self, index):
    return self._get()[index]

  def __len__(self) -> int:
    return len(self._get())


def _region_sets():
  from gestaltxai.extract.spec import REGION_SETS  # pylint: disable=import-outside-toplevel
  return REGION_SETS


def _formats():
  from gestaltxai.artifacts import coefficient_table  # pylint: disable=import-outside-toplevel
  return coefficient_table.FORMATS


REGION_SET_CHOICES = LazyChoices(_region_sets)
FORMAT_CHOICES = LazyChoices(_formats)


def _alias(parser, flag: str, dest: str, **kwargs) -> None:
  """``flag``: another spelling of ``dest``'s flag, left out of ``--help``."""
  parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


# Folds.

def fold_id(text: str):
  """An argparse ``type``: a fold number (1, 2, ...) or ``all``."""
  if text == ALL:
    return ALL
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected fold numbers or "all", got {text!r}') from None
  if value < 1:
    raise argparse.ArgumentTypeError(f'folds are numbered from 1, got {value}')
  return value


class _Folds(argparse.Action):
  """Fold numbers -> a sorted tuple without repeats; ``all`` -> None (every fold)."""

  def __call__(self, parser, namespace, values, option_string=None):
    if ALL in values:
      if len(values) > 1:
        raise argparse.ArgumentError(self, f'"all" goes alone, got {" ".join(map(str, values))}')
      setattr(namespace, self.dest, None)
    else:
      setattr(namespace, self.dest, tuple(sorted(set(values))))


def add_folds(parser, *, default: Optional[tuple[int, ...]] = None,
              aliases: tuple[str, ...] = ()) -> None:
  """``--folds K [K ...] | all`` -> ``args.folds``: sorted fold numbers, or None for every fold."""
  shown = 'every fold' if default is None else ' '.join(map(str, default))
  also = ''.join(f'; also {a}' for a in aliases)
  parser.add_argument('--folds', nargs='+', type=fold_id, action=_Folds, default=default,
                      metavar='K', help=f'fold numbers, or "all" (default: {shown}{also})')
  for alias in aliases:
    _alias(parser, alias, 'folds', nargs='+', type=fold_id, action=_Folds, metavar='K')


def folds_of(args, num_folds: int) -> tuple[int, ...]:
  """``args.folds`` with None (``all``) made every fold of a dataset of ``num_folds``."""
  return tuple(range(1, num_folds + 1)) if args.folds is None else args.folds


class _Deprecated(argparse.Action):
  """Stores like ``store``, and says on stderr which flag to use instead, and why."""

  def __init__(self, *args, instead: str, why: str, **kwargs):
    self.instead, self.why = instead, why
    super().__init__(*args, **kwargs)

  def __call__(self, parser, namespace, values, option_string=None):
    print(f'{parser.prog}: {option_string} {values} is deprecated here; use {self.instead} '
          f'{values} ({self.why})', file=sys.stderr)
    setattr(namespace, self.dest, values)


def add_num_folds(parser, *, minimum: int, default: int) -> None:
  """``--num-folds N`` -> ``args.num_folds`` (``--folds N``: a deprecated alias)."""
  parser.add_argument('--num-folds', type=int_at_least(minimum), default=default, metavar='N',
                      help=f'folds to split the images into, at least {minimum} '
                           '(default: %(default)s)')
  _alias(parser, '--folds', 'num_folds', type=int_at_least(minimum), action=_Deprecated,
         instead='--num-folds', why='--folds names fold numbers in the other commands')


# Workers.

def add_workers(parser, *, work: str, default: int, default_text: str = '',
                in_this_process: str = '') -> None:
  """``--workers N`` -> ``args.workers``, an int: ``work`` in N worker processes, 0 in this one."""
  shown = f'{default_text}, %(default)s here' if default_text else '%(default)s'
  parser.add_argument('--workers', type=int_at_least(0), default=default, metavar='N',
                      help=f'{work} in N worker processes; 0: in this process'
                           f'{in_this_process} (default: {shown})')


def add_decoding_workers(parser) -> None:
  """``--workers`` of the commands that decode a prepared dataset (default 0: threads)."""
  add_workers(parser, work='decode the images', default=0, in_this_process=', with threads')


# Multi-host.

def add_multihost(parser) -> None:
  """``--coordinator --num-processes --process-id --distributed``: join a ``jax.distributed``
  run (read by :func:`join_multihost`)."""
  group = parser.add_argument_group(
      'multi-host (jax.distributed: run the same command in every process)')
  group.add_argument('--coordinator', metavar='HOST:PORT',
                     help='process 0\'s address (default: $JAX_COORDINATOR_ADDRESS)')
  group.add_argument('--num-processes', type=int_at_least(1), metavar='N',
                     help='(default: $JAX_NUM_PROCESSES)')
  group.add_argument('--process-id', type=int_at_least(0), metavar='I',
                     help='this process, 0..N-1 (default: $JAX_PROCESS_ID)')
  group.add_argument('--distributed', action='store_true',
                     help='let JAX detect the cluster (SLURM, Open MPI, Cloud TPU) without '
                          '--coordinator')


def join_multihost(args) -> bool:
  """Joins the run the multi-host flags ask for (before anything touches a device)."""
  from gestaltxai.train import distributed  # pylint: disable=import-outside-toplevel
  return distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                auto_detect=args.distributed)


def add_process_split(parser) -> None:
  """``--process-index I --process-count N``: independent jobs share the shards."""
  group = parser.add_argument_group(
      'independent jobs (a SLURM array: each takes its share of the shards)')
  group.add_argument('--process-index', type=int_at_least(0), metavar='I',
                     help='this job, 0..N-1 (with --process-count)')
  group.add_argument('--process-count', type=int_at_least(1), metavar='N',
                     help='how many jobs (default: the jax.distributed processes, else 1)')


# Closed sets.

def add_region_set(parser) -> None:
  """``--region-set NAME`` -> ``args.region_set`` (``--regions``: an alias)."""
  parser.add_argument('--region-set', choices=REGION_SET_CHOICES, default='reference',
                      help='the regions of the coefficients: reference, the paper\'s eye, nose '
                           'and mouth boxes (default), or fine, the landmark regions; also '
                           '--regions')
  _alias(parser, '--regions', 'region_set', choices=REGION_SET_CHOICES)


def add_region_names(parser) -> None:
  """``--region-names NAME [...]`` -> ``args.region_names``: regions of a table, by name."""
  parser.add_argument('--region-names', nargs='+', metavar='NAME',
                      help='regions to test (default: every <region>_xai column)')


def add_format(parser) -> None:
  """``--format {parquet,csv}`` -> ``args.format`` (None: from the ``--out`` suffix)."""
  parser.add_argument('--format', choices=FORMAT_CHOICES,
                      help='the table\'s format (default: from the --out suffix)')


def add_dtype(parser, help_text: str = 'compute dtype') -> None:
  """``--dtype {float32,bfloat16}`` -> ``args.dtype`` (None: the library's)."""
  parser.add_argument('--dtype', choices=DTYPES, help=help_text)
