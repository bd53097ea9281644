"""Every artefact knows what it was made from, as a user meets it on the command line:
the same photos split otherwise (leakage), folds of two datasets, finished work kept
without --overwrite, no stale file, tables checked as data, options checked at the
boundary, and one line naming the file on every error."""

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gestaltxai import cli
from gestaltxai.data import synthetic
from gestaltxai.data.detect import five_from_68

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The NIH-Faces layout (given five points and parsing maps: no detector runs), two classes of
# three synthetic faces each. Per image i, fold k's split is SPLITS[(i + k + shift) % 3]:
# the two partitions hold the same photos split otherwise.
NAMES = [f'{cls}Slide{i}.png' for cls in ('Unaffected', 'Down') for i in range(3)]
TRAITS = {'Unaffected': 'unaffected', 'Down': 'wide_eyes'}
SPLIT_ORDERS = {'a': ('test', 'val', 'train'), 'b': ('train', 'test', 'val')}
TRAIN = ['--config', 'tiny', '--epochs', '1', '--batch-size', '2', '--quiet']
EXTRACT = ['--methods', 'gradient', '--batch-size', '2', '--folds', '1', '--quiet']


def write_nih_layout(root, order):
  (root / 'images').mkdir(parents=True)
  (root / 'features' / 'segmaps').mkdir(parents=True)
  rows = []
  for i, name in enumerate(NAMES):
    face = synthetic.synthetic_face(0, TRAITS[name.split('Slide')[0]], i)
    Image.fromarray(face.image).save(root / 'images' / name)
    Image.fromarray(face.parsing).save(root / 'features' / 'segmaps' / name)
    row = {'image_name': name, **{f'fold-{k}': order[(i + k - 1) % 3] for k in range(1, 6)}}
    for j, (x, y) in enumerate(five_from_68(face.points68), 1):
      row[f'x{j}'], row[f'y{j}'] = float(x), float(y)
    rows.append(row)
  with open(root / 'partitions.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def run(argv, capsys):
  """(exit status, stdout, stderr) of the CLI in this process."""
  capsys.readouterr()
  status = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return status, out, err


def refused(argv, capsys, *fragments):
  """The command fails with one line on stderr holding every fragment; returns the line."""
  status, _, err = run(argv, capsys)
  lines = err.strip().splitlines()
  assert status == 1 and len(lines) == 1, err
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  """Two datasets of the same photos split otherwise; fold 1 trained on the first, and
  its table."""
  root = tmp_path_factory.mktemp('provenance')
  for name, order in SPLIT_ORDERS.items():
    write_nih_layout(root / f'nih-{name}', order)
    assert cli.main(['prepare', 'nih-faces', '--root', str(root / f'nih-{name}'), '--data-dir',
                     str(root / f'data-{name}')]) == 0
  assert cli.main(['train', '--data-dir', str(root / 'data-a'), '--out', str(root / 'runs'),
                   *TRAIN]) == 0
  assert cli.main(['extract', '--data-dir', str(root / 'data-a'), '--runs', str(root / 'runs'),
                   '--out', str(root / 'table.parquet'), *EXTRACT]) == 0
  return root


def test_runs_of_another_split_of_the_same_photos_are_refused(study, tmp_path, capsys):
  line = refused(['extract', '--data-dir', study / 'data-b', '--runs', study / 'runs', '--out',
                  tmp_path / 't.parquet', *EXTRACT], capsys, 'leakage', 'same photos',
                 str(study / 'runs' / 'fold-1'), '--data-dir')
  recorded = json.loads((study / 'runs' / 'fold-1' / 'metrics.json').read_text())['provenance']
  assert recorded['dataset'][:12] in line  # both sides named by fingerprint
  assert not (tmp_path / 't.parquet').exists()


def test_one_cross_validation_comes_from_one_dataset(study, tmp_path, capsys):
  runs = tmp_path / 'runs'
  shutil.copytree(study / 'runs', runs)
  refused(['train', '--data-dir', study / 'data-b', '--out', runs, '--fold', '2', *TRAIN],
          capsys, 'one cross-validation comes from one dataset', str(runs / 'fold-1'))
  assert not (runs / 'fold-2').exists()
  # A fold of another dataset put there by hand: evaluate refuses to average them.
  shutil.copytree(runs / 'fold-1', runs / 'fold-2')
  metrics = json.loads((runs / 'fold-2' / 'metrics.json').read_text())
  metrics['provenance']['dataset'] = '0' * 64
  (runs / 'fold-2' / 'metrics.json').write_text(json.dumps(metrics))
  refused(['evaluate', '--runs', runs], capsys, 'one cross-validation comes from one dataset')


def test_evaluate_says_how_many_folds_it_summarises(study, capsys):
  status, out, _ = run(['evaluate', '--runs', study / 'runs'], capsys)
  assert status == 0 and '1 of 5 folds' in out
  os.remove(study / 'runs' / 'summary.json')  # keep the study's runs as trained


def test_a_finished_table_is_kept_without_overwrite(study, tmp_path, capsys):
  table = tmp_path / 'table.parquet'
  for suffix in ('.parquet', '.json', '.maps.npz'):  # the finished table, its shards gone
    shutil.copy(study / f'table{suffix}', tmp_path / f'table{suffix}')
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
  other = ['extract', '--data-dir', study / 'data-a', '--runs', study / 'runs', '--out', table,
           '--methods', 'grad_cam', '--batch-size', '2', '--folds', '1', '--quiet']
  refused(other, capsys, str(table), '--overwrite')
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
  status, _, err = run([*other, '--overwrite'], capsys)
  assert status == 0, err
  assert set(pq.read_table(table).column('method').to_pylist()) == {'grad_cam'}
  assert json.loads(table.with_suffix('.json').read_text())['provenance']['table'] != \
      json.loads((study / 'table.json').read_text())['provenance']['table']


def test_training_flags_and_files_are_checked_before_training(study, tmp_path, capsys):
  refused(['train', '--data-dir', study / 'data-a', '--out', tmp_path, *TRAIN,
           '--learning-rate', 'nan'], capsys, 'learning_rate must be a finite rate')
  # tiny's cosine spans its epochs: 1 -> 2 epochs is not what a fresh 2-epoch run does.
  refused(['train', '--data-dir', study / 'data-a', '--out', study / 'runs', '--config', 'tiny',
           '--epochs', '2', '--batch-size', '2', '--quiet'], capsys, 'cannot be extended',
          '--overwrite')
  # A run's metrics without its checkpoints is finished work, not a fresh start.
  shutil.copy(study / 'runs' / 'fold-1' / 'metrics.json', tmp_path / 'metrics.json')
  (tmp_path / 'fold-1').mkdir()
  shutil.copy(tmp_path / 'metrics.json', tmp_path / 'fold-1' / 'metrics.json')
  refused(['train', '--data-dir', study / 'data-a', '--out', tmp_path, *TRAIN], capsys,
          'no checkpoint', '--overwrite')


SMALL_FILES = textwrap.dedent('''
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # files stop growing
    from gestaltxai import cli
    sys.exit(cli.console())
''')


def test_a_full_output_folder_is_found_before_training(study, tmp_path):
  command = [sys.executable, '-c', SMALL_FILES, 'train', '--data-dir', str(study / 'data-a'),
             '--out', str(tmp_path), *TRAIN]
  env = {**os.environ, 'PYTHONPATH': f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'}
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                        check=False, cwd=ROOT)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      f'gestaltxai train: cannot write to {tmp_path / "fold-1"} (File too large): make room '
      'or choose another --out'], done.stderr[-2000:]


def test_damaged_files_are_named(study, tmp_path, capsys):
  data = tmp_path / 'data'
  shutil.copytree(study / 'data-a', data)
  metadata = next(data.glob('**/metadata.json'))
  metadata.write_text('{"classes": [')
  refused(['extract', '--data-dir', data, '--runs', study / 'runs', '--out',
           tmp_path / 't.parquet', *EXTRACT], capsys, str(metadata), 'not readable JSON')
  runs = tmp_path / 'runs'
  shutil.copytree(study / 'runs', runs)
  checkpoint = runs / 'fold-1' / 'checkpoints' / '1' / 'metadata' / 'metadata'
  checkpoint.write_text('{')
  refused(['extract', '--data-dir', study / 'data-a', '--runs', runs, '--out',
           tmp_path / 't.parquet', *EXTRACT], capsys, str(checkpoint), 'checkpoint metadata')
  checkpoint.write_text((study / 'runs' / 'fold-1' / 'checkpoints' / '1' / 'metadata' /
                         'metadata').read_text())
  for array_file in (runs / 'fold-1' / 'checkpoints' / '1' / 'variables').glob('**/d/*'):
    array_file.write_bytes(b'\0' * 64)  # the metadata intact, the arrays not
  refused(['extract', '--data-dir', study / 'data-a', '--runs', runs, '--out',
           tmp_path / 'v.parquet', *EXTRACT], capsys,
          f'{runs / "fold-1" / "checkpoints" / "1"}: the saved arrays cannot be read')
  # A damaged shard of a run with the same arguments: named when the table is assembled.
  shutil.copytree(study / 'table.parquet.shards', tmp_path / 'u.parquet.shards')
  shard = sorted((tmp_path / 'u.parquet.shards').glob('*.parquet'))[0]
  shard.write_bytes(b'PAR1 damaged')
  refused(['extract', '--data-dir', study / 'data-a', '--runs', study / 'runs', '--out',
           tmp_path / 'u.parquet', *EXTRACT], capsys, str(shard), 'damaged shard')
  refused(['extract', '--data-dir', study / 'data-a', '--runs', study / 'runs', '--out',
           tmp_path / 't.txt', *EXTRACT], capsys, 'TABLE.parquet or TABLE.csv')
  refused(['extract', '--data-dir', study / 'data-a', '--runs', study / 'runs', '--out',
           tmp_path / 't.parquet', '--format', 'csv', *EXTRACT], capsys, '--format csv')


def changed_table(study, tmp_path):
  """The study's table with one coefficient changed: another table of the same dataset."""
  rows = pq.read_table(study / 'table.parquet').to_pylist()
  rows[0]['eye_xai'] += 1.0
  path = tmp_path / 'other.parquet'
  pq.write_table(pa.Table.from_pylist(rows), path)
  return path


def test_report_inputs_must_come_from_its_table(study, tmp_path, capsys):
  table = study / 'table.parquet'
  other = changed_table(study, tmp_path)
  stats_dir = tmp_path / 'stats'
  status, printed, err = run(['stats', '--table', table, '--out', stats_dir], capsys)
  assert (stats_dir / 'provenance.json').is_file(), err
  assert 'control Unaffected' in printed  # the dataset's control, recorded in TABLE.json
  out = tmp_path / 'r.html'
  refused(['report', '--table', other, '--out', out, '--stats', stats_dir], capsys,
          f'--stats {stats_dir} was made from table', '--overwrite')
  refused(['report', '--table', other, '--out', out, '--maps', study / 'table.maps.npz'], capsys,
          '--maps', 'was made from table')
  shutil.copy(study / 'table.json', tmp_path / 'other.json')  # the study's provenance
  refused(['report', '--table', other, '--out', out], capsys,
          f'{tmp_path / "other.json"} describes table')
  refused(['report', '--table', table, '--out', out, '--data-dir', study / 'data-b'], capsys,
          f'--data-dir {study / "data-b"}', 'same photos')
  runs = tmp_path / 'runs'
  shutil.copytree(study / 'runs' / 'fold-1', runs / 'fold-1', ignore=shutil.ignore_patterns(
      'checkpoints'))
  metrics = json.loads((runs / 'fold-1' / 'metrics.json').read_text())
  metrics['provenance']['run'] = 'f' * 64  # the same dataset, another training run
  (runs / 'fold-1' / 'metrics.json').write_text(json.dumps(metrics))
  refused(['report', '--table', table, '--out', out, '--runs', runs], capsys,
          'was extracted with run')
  for flag in ('--runs', '--maps', '--data-dir', '--bench'):
    refused(['report', '--table', table, '--out', out, flag, tmp_path / 'missing'], capsys,
            str(tmp_path / 'missing'))
  assert not out.exists()
  status, printed, err = run(['report', '--table', table, '--out', out, '--runs',
                              study / 'runs', '--data-dir', study / 'data-a'], capsys)
  assert status == 0, err
  dataset = json.loads((study / 'table.json').read_text())['provenance']['dataset']['dataset']
  assert f'dataset {dataset[:12]}' in printed and f'dataset {dataset[:12]}' in out.read_text()
  assert '6 aligned faces in 12 classes' in out.read_text()  # the dataset section
  refused(['report', '--table', table, '--out', out], capsys, str(out), '--overwrite')


# Tables written by hand: the checks of data and options need no model.


def write_rows(path, rows, normalised=False):
  """A coefficient table; ``normalised`` adds RQ2's ``<region>_xai_norm`` columns (the
  coefficients again: RQ2 only ranks them)."""
  header = ['image_name', 'fold', 'method', 'eye_xai', 'nose_xai', 'label', 'status']
  if normalised:
    header[5:5] = ['eye_xai_norm', 'nose_xai_norm']
    rows = [[*row[:5], *row[3:5], *row[5:]] for row in rows]
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def hand_rows(control='unaffected', syndrome='wide_eyes', per_class=6, seed=0):
  rng = np.random.default_rng(seed)
  return [[f'{label}_{i}', 1 + i % 3, 'gradient', *rng.normal(1.0 + (label == syndrome), 0.1, 2),
           label, 'ok'] for label in (control, syndrome) for i in range(per_class)]


def test_tables_are_checked_as_data(tmp_path, capsys):
  rows = hand_rows()
  twice = write_rows(tmp_path / 'twice.csv', rows + rows[:1])
  refused(['stats', '--table', twice, '--out', tmp_path / 's'], capsys,
          f'{twice}: unaffected_0 of fold 1 and method gradient appears in rows 1, 13')
  two_folds = write_rows(tmp_path / 'folds.csv', rows + [[*rows[0][:1], 2, 'grad_cam',
                                                          *rows[0][3:]]])
  refused(['stats', '--table', two_folds, '--out', tmp_path / 's'], capsys,
          'unaffected_0 is held out in folds 1, 2')
  words = write_rows(tmp_path / 'words.csv', [[*rows[0][:3], 'high', *rows[0][4:]], *rows[1:]])
  refused(['stats', '--table', words, '--out', tmp_path / 's'], capsys,
          'column eye_xai must hold numbers', "row 1: 'high'")
  assert not (tmp_path / 's').exists()


@pytest.mark.parametrize('flags, fragment', [
    (['--alpha', '2'], '--alpha must be a probability'),
    (['--alpha', '-1'], '--alpha must be a probability'),
    (['--alpha', 'nan'], '--alpha must be a probability'),
    (['--alpha-assumptions', '0'], '--alpha-assumptions must be a probability'),
    (['--syndromes', 'unaffected', 'wide_eyes'], 'lists the control'),
    (['--syndromes', 'wide_eye'], "did you mean 'wide_eyes'"),
    (['--control', 'Unaffected'], "did you mean 'unaffected'"),
])
def test_impossible_options_are_refused(flags, fragment, tmp_path, capsys):
  table = write_rows(tmp_path / 't.csv', hand_rows())
  refused(['stats', '--table', table, '--out', tmp_path / 's', *flags], capsys, fragment)


def test_stats_keep_finished_work_and_leave_nothing_stale(tmp_path, capsys):
  # The synthetic control, 'unaffected'; RQ2's columns, so that --hpo computes RQ2.
  table = write_rows(tmp_path / 't.csv', hand_rows(), normalised=True)
  hpo = tmp_path / 'hpo'
  hpo.mkdir()
  # Every image graded, so each fold has the 4 annotated images RQ2's interval needs.
  grades = ''.join(f'{label}_{i}.png,{grade}\n' for label, grade in (('wide_eyes', '2X'),
                                                                     ('unaffected', ''))
                   for i in range(6))
  (hpo / 'wide_eyes.csv').write_text('image_name,Hypertelorism\n' + grades)
  out = tmp_path / 's'
  status, printed, err = run(['stats', '--table', table, '--hpo', hpo, '--out', out], capsys)
  assert status == 0 and 'control unaffected' in printed, err
  assert (out / 'rq2.csv').is_file()
  refused(['stats', '--table', table, '--out', out], capsys, str(out), '--overwrite')
  status, _, err = run(['stats', '--table', table, '--out', out, '--overwrite'], capsys)
  assert status == 0, err
  assert not (out / 'rq2.csv').exists() and not (out / 'rq2_summary.csv').exists()
  (hpo / 'wide_eyes.csv').write_bytes('image_name,Hypertelorism\nwide_eyes_0_é.png,2X\n'
                                      .encode('latin-1'))
  refused(['stats', '--table', table, '--hpo', hpo, '--out', out, '--overwrite'], capsys,
          str(hpo / 'wide_eyes.csv'), 'not UTF-8')
  (hpo / 'wide_eyes.csv').write_text('image_name,Hypertelorsim\nwide_eyes_0.png,2X\n')
  refused(['stats', '--table', table, '--hpo', hpo, '--out', out, '--overwrite'], capsys,
          str(hpo / 'wide_eyes.csv'), "did you mean 'Hypertelorism'")
