"""One spelling per concept: every command that takes a shared flag parses it the same way.

The expected values are written out here (not read from gestaltxai.cli.flags), and the closed
sets are compared with the library's own registries.
"""

import argparse
import os

import pytest

from gestaltxai import cli
from gestaltxai.cli import flags
from tests.test_stats import write_table

# The arguments each command requires, so that one flag can be parsed on its own.
REQUIRED = {
    'train': ['train', '--data-dir', 'D', '--out', 'R'],
    'extract': ['extract', '--data-dir', 'D', '--runs', 'R', '--out', 't.parquet'],
    'evaluate-methods': ['evaluate-methods', '--data-dir', 'D', '--runs', 'R', '--out',
                         't.parquet'],
    'prepare': ['prepare', 'synthetic', '--data-dir', 'D'],
    'prepare folder': ['prepare', 'folder', '--images', 'I', '--labels', 'L.csv',
                       '--label-column', 'c', '--data-dir', 'D'],
    'stats': ['stats', '--table', 't.csv', '--out', 'S'],
    'report': ['report', '--table', 't.csv', '--out', 'r.html'],
}
# Which commands take each shared concept.
FOLDS = ('train', 'extract', 'evaluate-methods')
WORKERS = ('train', 'extract', 'prepare', 'prepare folder')
FORMAT = ('extract', 'evaluate-methods')
MULTI_HOST = ('train', 'extract')
PROCESS_SPLIT = ('extract', 'evaluate-methods')
REGION_NAMES = ('stats', 'report')


@pytest.fixture(scope='module')
def parser():
  return cli.build_parser()


def parse(parser, command, *args):
  return parser.parse_args(REQUIRED[command] + list(args))


def usage_error(parser, capsys, command, *args) -> str:
  """argparse's message for a refused command line (status 2)."""
  with pytest.raises(SystemExit) as exit_info:
    parse(parser, command, *args)
  assert exit_info.value.code == 2
  return capsys.readouterr().err


@pytest.mark.parametrize('command', FOLDS)
@pytest.mark.parametrize('given, parsed', [
    (['1', '3'], (1, 3)),
    (['3', '1', '3'], (1, 3)),  # sorted, each once
    (['2'], (2,)),
    (['all'], None),           # every fold of the dataset
])
def test_every_command_reads_folds_alike(parser, command, given, parsed):
  assert parse(parser, command, '--folds', *given).folds == parsed


def test_fold_defaults_and_every_fold(parser):
  assert parse(parser, 'train').folds == (1,)
  assert parse(parser, 'extract').folds is None and parse(parser, 'evaluate-methods').folds is None
  args = parse(parser, 'train', '--folds', 'all')
  assert flags.folds_of(args, 5) == (1, 2, 3, 4, 5)
  assert flags.folds_of(parse(parser, 'extract', '--folds', '4', '2'), 5) == (2, 4)


@pytest.mark.parametrize('command', FOLDS)
@pytest.mark.parametrize('given, message', [
    (['0'], 'argument --folds: folds are numbered from 1, got 0'),
    (['one'], 'argument --folds: expected fold numbers or "all", got \'one\''),
    (['all', '2'], 'argument --folds: "all" goes alone, got all 2'),
])
def test_bad_folds_are_usage_errors_naming_the_flag(parser, capsys, command, given, message):
  assert message in usage_error(parser, capsys, command, '--folds', *given)


@pytest.mark.parametrize('old, new', [
    (['--fold', 'all'], ['--folds', 'all']),
    (['--fold', '2'], ['--folds', '2']),
])
def test_train_keeps_fold_as_an_alias(parser, old, new):
  assert parse(parser, 'train', *old).folds == parse(parser, 'train', *new).folds


@pytest.mark.parametrize('command', ('prepare', 'prepare folder'))
def test_prepare_counts_folds_with_num_folds(parser, capsys, command):
  assert parse(parser, command).num_folds == 5
  assert parse(parser, command, '--num-folds', '4').num_folds == 4
  assert not hasattr(parse(parser, command), 'folds')  # a count, not fold numbers
  # --folds N, the old spelling, still counts, and says it is deprecated.
  assert parse(parser, command, '--folds', '4').num_folds == 4
  assert '--folds 4 is deprecated here; use --num-folds 4' in capsys.readouterr().err
  assert ('argument --num-folds: must be at least 3, got 2'
          in usage_error(parser, capsys, command, '--num-folds', '2'))


@pytest.mark.parametrize('command', WORKERS)
def test_workers_mean_the_same_everywhere(parser, capsys, command):
  assert parse(parser, command, '--workers', '3').workers == 3
  assert parse(parser, command, '--workers', '0').workers == 0
  assert ('argument --workers: must be at least 0, got -1'
          in usage_error(parser, capsys, command, '--workers', '-1'))
  # Always a number of processes (None, "every core" in one command, is gone).
  default = parse(parser, command).workers
  every_core = len(os.sched_getaffinity(0))
  assert default == (every_core if command.startswith('prepare') else 0)


@pytest.mark.parametrize('command', FORMAT)
def test_format_is_a_closed_choice(parser, capsys, command):
  from gestaltxai.artifacts.coefficient_table import FORMATS
  assert parse(parser, command).format is None  # from the --out suffix
  for name in FORMATS:
    assert parse(parser, command, '--format', name).format == name
  err = usage_error(parser, capsys, command, '--format', 'xlsx')
  assert "argument --format: invalid choice: 'xlsx' (choose from 'parquet', 'csv')" in err
  assert set(FORMATS) == {'parquet', 'csv'}


def test_region_set_is_a_closed_choice_with_regions_as_its_alias(parser, capsys):
  from gestaltxai.extract.spec import REGION_SETS
  assert parse(parser, 'extract').region_set == 'reference'
  for name in REGION_SETS:
    assert parse(parser, 'extract', '--region-set', name).region_set == name
    assert parse(parser, 'extract', '--regions', name).region_set == name
  err = usage_error(parser, capsys, 'extract', '--region-set', 'boxes')
  assert "argument --region-set: invalid choice: 'boxes' (choose from 'reference', 'fine')" in err
  assert "argument --regions: invalid choice: 'boxes'" in usage_error(
      parser, capsys, 'extract', '--regions', 'boxes')


@pytest.mark.parametrize('command', REGION_NAMES)
def test_region_names_are_their_own_flag(parser, capsys, command):
  assert parse(parser, command, '--region-names', 'eye', 'nose').region_names == ['eye', 'nose']
  assert parse(parser, command).region_names is None
  # --regions is a region set (extract's); here it is no flag at all.
  assert 'unrecognized arguments: --regions' in usage_error(parser, capsys, command,
                                                            '--regions', 'eye')


def test_an_unknown_region_name_is_refused_naming_the_flag(tmp_path, capsys):
  rows = [{'image_name': f'{label}{i}.png', 'method': 'gradient', 'label': label,
           'eye_xai': 0.1 * i, 'nose_xai': 0.2} for label in ('Unaffected', 'A') for i in range(3)]
  table = write_table(tmp_path / 't.csv', rows)
  assert cli.main(['stats', '--table', str(table), '--out', str(tmp_path / 's'),
                   '--region-names', 'eyes']) == 1
  err = capsys.readouterr().err
  assert "gestaltxai stats: --region-names 'eyes' has no column" in err
  assert "(did you mean 'eye'?)" in err


@pytest.mark.parametrize('command', MULTI_HOST)
def test_multi_host_flags_are_declared_once(parser, capsys, command):
  args = parse(parser, command, '--coordinator', 'host:1234', '--num-processes', '2',
               '--process-id', '1', '--distributed')
  assert (args.coordinator, args.num_processes, args.process_id, args.distributed) == (
      'host:1234', 2, 1, True)
  args = parse(parser, command)
  assert (args.coordinator, args.num_processes, args.process_id, args.distributed) == (
      None, None, None, False)
  assert 'argument --num-processes: must be at least 1, got 0' in usage_error(
      parser, capsys, command, '--num-processes', '0')
  assert 'argument --process-id: must be at least 0, got -1' in usage_error(
      parser, capsys, command, '--process-id', '-1')


@pytest.mark.parametrize('command', PROCESS_SPLIT)
def test_process_split_flags_are_declared_once(parser, capsys, command):
  args = parse(parser, command, '--process-index', '1', '--process-count', '3')
  assert (args.process_index, args.process_count) == (1, 3)
  assert 'argument --process-index: must be at least 0, got -1' in usage_error(
      parser, capsys, command, '--process-index', '-1')
  assert 'argument --process-count: must be at least 1, got 0' in usage_error(
      parser, capsys, command, '--process-count', '0')


def _commands(parser):
  """(name, parser) of every command, prepare's sources counted as commands."""
  # pylint: disable=protected-access
  found = []

  def walk(name, node):
    subs = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
      found.append((name, node))
    for sub in subs:
      for child, child_parser in sub.choices.items():
        walk(f'{name} {child}'.strip(), child_parser)

  walk('', parser)
  return found


# The one exception: prepare's old fold count, a deprecated alias of --num-folds.
DEPRECATED = {('--folds', f'prepare {source}') for source in ('folder', 'synthetic', 'planted')}


def test_a_flag_shared_by_commands_is_declared_alike(parser):
  """Every option string used by several commands has one destination, arity, action and
  set of choices (defaults may differ: train trains fold 1, extract every fold)."""
  seen = {}
  for name, command in _commands(parser):
    for action in command._actions:  # pylint: disable=protected-access
      for option in action.option_strings:
        if (option, name) in DEPRECATED:
          continue
        shape = (action.dest, action.nargs, type(action).__name__,
                 tuple(action.choices) if action.choices is not None else None)
        seen.setdefault(option, {}).setdefault(shape, []).append(name)
  differing = {option: shapes for option, shapes in seen.items()
               if len(shapes) > 1 and option not in ('-h', '--help')}
  assert not differing, differing
