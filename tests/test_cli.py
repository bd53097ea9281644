"""The command line: one line per error, usage errors from argparse, --debug, closed pipes."""

import os
import pathlib
import subprocess
import sys

import pytest

from gestaltxai import cli

REPO = pathlib.Path(__file__).resolve().parents[1]


def gestaltxai(*args, **options):
  """Runs ``python -m gestaltxai.cli`` with this checkout first on the path."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  return subprocess.Popen([sys.executable, '-m', 'gestaltxai.cli', *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


@pytest.mark.parametrize('args, message', [
    (['prepare', 'synthetic', '--num-folds', '2'],
     'argument --num-folds: must be at least 3, got 2'),
    (['prepare', 'synthetic', '--num-folds', 'two'],
     "argument --num-folds: expected an integer, got 'two'"),
    (['prepare', 'synthetic', '--per-class', '0'], 'argument --per-class: must be at least 1'),
    (['prepare', 'synthetic', '--workers', '-1'], 'argument --workers: must be at least 0'),
    (['prepare', 'folder', '--detector', 'mtcnn'], "argument --detector: invalid choice: 'mtcnn'"),
])
def test_out_of_range_arguments_are_usage_errors(args, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(args + ['--data-dir', str(tmp_path / 'data')])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / 'data').exists()


def test_errors_are_one_line_and_tracebacks_need_debug(tmp_path):
  args = ['prepare', 'folder', '--images', str(tmp_path / 'nowhere'), '--labels',
          str(tmp_path / 'labels.csv'), '--label-column', 'gender', '--data-dir',
          str(tmp_path / 'data')]
  plain = gestaltxai(*args)
  _, err = plain.communicate(timeout=120)
  assert plain.returncode == 1
  assert err.decode() == f'gestaltxai prepare: no image folder at {tmp_path / "nowhere"}\n'
  debug = gestaltxai('--debug', *args)
  _, err = debug.communicate(timeout=120)
  assert debug.returncode == 1
  assert 'Traceback' in err.decode() and 'FileNotFoundError: no image folder' in err.decode()


def test_a_closed_pipe_ends_quietly():
  """``gestaltxai methods | head -1``: the reader leaves before the listing is written."""
  methods = gestaltxai('methods')
  methods.stdout.close()  # the reader is gone before the command prints anything
  err = methods.stderr.read().decode()
  methods.wait(timeout=120)
  assert methods.returncode == 1 and err == ''

