"""Preparing datasets: input checks, reuse and refusal, interrupted builds, awkward photos."""

import csv
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from gestaltxai import cli, data
from gestaltxai.data import schema, sources, staging
from gestaltxai.data.build import build
from gestaltxai.data.pipeline import FaceDataset
from tests.test_images import sixteen_bit_grey, sideways_phone_photo

REPO = pathlib.Path(__file__).resolve().parents[1]
PER_GENDER = 5


def write_table(path, rows, *, header=('file', 'gender'), encoding='utf-8', delimiter=','):
  with open(path, 'w', newline='', encoding=encoding) as f:
    writer = csv.writer(f, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def dataset_files(directory):
  """{relative path: bytes} of every file of a dataset."""
  return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob('*'))
          if p.is_file()}


@pytest.fixture(scope='module')
def photos(tmp_path_factory, fairface_dir):
  """PER_GENDER FairFace photos per gender that dlib's HOG detector finds, and their rows."""
  folder = tmp_path_factory.mktemp('photos')
  with open(fairface_dir / 'fairface_label_train.csv', newline='') as f:
    labels = list(csv.DictReader(f))
  rows, counts = [], {'Female': 0, 'Male': 0}
  for row in labels:
    if counts[row['gender']] == PER_GENDER:
      continue
    rgb = np.asarray(Image.open(fairface_dir / row['file']).convert('RGB'))
    try:
      data.detect_landmarks(rgb, detector='hog')
    except data.NoFaceError:
      continue
    name = row['file'].replace('/', '_')
    shutil.copy(fairface_dir / row['file'], folder / name)
    rows.append((name, row['gender']))
    counts[row['gender']] += 1
    if min(counts.values()) == PER_GENDER:
      return folder, rows
  raise AssertionError(f'too few photos found: {counts}')


def folder_args(folder, table, data_dir, *extra):
  return ['prepare', 'folder', '--images', str(folder), '--labels', str(table),
          '--label-column', 'gender', '--data-dir', str(data_dir), '--workers', '0', *extra]


@pytest.fixture(scope='module')
def built(photos, tmp_path_factory):
  """A folder dataset of the photos (3 folds), built once: (args, dataset dir, its files)."""
  folder, rows = photos
  root = tmp_path_factory.mktemp('built')
  table = write_table(root / 'labels.csv', rows)
  args = folder_args(folder, table, root / 'data', '--folds', '3')
  assert cli.main(args) == 0
  directory = FaceDataset.open(root / 'data').directory
  return args, directory, dataset_files(directory)


def test_table_errors_name_file_line_and_value_before_any_photo(photos, built, tmp_path,
                                                                capsys):
  folder, rows = photos
  _, directory, files = built
  data_dir = directory.parents[1]
  cases = {
      'duplicate': (rows[:4] + [rows[1]] + rows[4:], {},
                    r"labels\.csv line 6: file '.*' is listed again \(first on line 3\)"),
      'missing label': (rows[:2] + [(rows[2][0], ' ')] + rows[3:], {},
                        r"labels\.csv line 4: no gender value for '.*'"),
      'latin-1': (rows[:3] + [(rows[3][0], 'Féminin')] + rows[4:], {'encoding': 'latin-1'},
                  r'labels\.csv: not UTF-8 text \(byte 0xe9 on line 5\)'),
      'one class': ([(name, 'Female') for name, _ in rows], {},
                    r"labels\.csv: 1 class \('Female'\)"),
      'missing column': (rows, {'header': ('file', 'sex')},
                         r"labels\.csv: needs columns \['file', 'gender'\], missing \['gender'\]"),
  }
  for case, (table_rows, options, message) in cases.items():
    table = write_table(tmp_path / 'labels.csv', table_rows, **options)
    assert cli.main(folder_args(folder, table, data_dir)) == 1, case
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, case
    assert re.search(message, err), (case, err)
  table = write_table(tmp_path / 'labels.csv', rows)
  with pytest.raises(ValueError, match=r"labels\.csv: 'Female' has 5, 'Male' has 5; each class "
                                       'needs at least 6 images for 6 folds'):
    sources.FolderFaces(images=folder, labels=table, label_column='gender', num_folds=6,
                        data_dir=tmp_path / 'unused')
  with pytest.raises(ValueError, match='folds must be at least 3'):
    sources.FolderFaces(images=folder, labels=table, label_column='gender', num_folds=2,
                        data_dir=tmp_path / 'unused')
  assert not (tmp_path / 'unused').exists()
  assert dataset_files(directory) == files  # the dataset already there is untouched


def test_spreadsheet_tables_are_read(photos, tmp_path):
  """A byte-order mark, ';' separators, stray spaces; labels differing by case are reported."""
  folder, rows = photos
  spelled = ['Female', ' Male ', 'male']
  table = tmp_path / 'excel.csv'
  write_table(table, [(f' {name} ', spelled[i % 3]) for i, (name, _) in enumerate(rows)],
              header=(' file', 'gender '), encoding='utf-8-sig', delimiter=';')
  assert table.read_bytes().startswith(b'\xef\xbb\xbf')
  builder = sources.FolderFaces(images=folder, labels=table, label_column='gender',
                                num_folds=3, data_dir=tmp_path / 'data')
  assert builder.info.metadata['classes'] == ['Female', 'Male', 'male']
  assert [item.name for item in builder.items] == [name for name, _ in rows]
  assert all(item.digest for item in builder.items)
  (warning,) = builder.table_warnings
  assert warning['name'] == 'excel.csv' and "'Male', 'male' differ only by case" in (
      warning['warning'])


def test_reuse_only_what_was_built_from_the_same_inputs(photos, built, tmp_path, capsys):
  folder, rows = photos
  args, directory, files = built
  capsys.readouterr()
  assert cli.main(args) == 0
  assert 'reusing the dataset' in capsys.readouterr().out
  assert dataset_files(directory) == files
  changed = {
      'seed': (args + ['--seed', '7'], "seed 0 -> 7"),
      'folds': (args + ['--folds', '4'], 'num_folds 3 -> 4'),
      'detector': (args + ['--detector', 'hog'], "detector 'auto' -> 'hog'"),
      'labels': (folder_args(folder, write_table(tmp_path / 'swapped.csv', rows[1:] + [
          (rows[0][0], 'Male' if rows[0][1] == 'Female' else 'Female')]), directory.parents[1],
                             '--folds', '3'), 'the labels differ'),
  }
  for case, (case_args, difference) in changed.items():
    assert cli.main(case_args) == 1, case
    err = capsys.readouterr().err
    assert difference in err and '--overwrite' in err, (case, err)
  photo = folder / rows[0][0]
  original = photo.read_bytes()
  try:
    Image.fromarray(np.asarray(Image.open(photo))[:, ::-1]).save(photo, format='JPEG')
    assert cli.main(args) == 1
    assert 'the images differ' in capsys.readouterr().err
  finally:
    photo.write_bytes(original)
  assert dataset_files(directory) == files  # every refusal left the dataset as it was
  assert cli.main(args + ['--seed', '7', '--overwrite']) == 0
  rebuilt = FaceDataset.open(directory.parents[1])
  assert rebuilt.metadata['fold_seed'] == 7 and rebuilt.names == FaceDataset.open(
      directory).names
  assert cli.main(args) == 1  # the seed-7 dataset now stands; the seed-0 one is gone
  assert 'seed 7 -> 0' in capsys.readouterr().err
  assert cli.main(args + ['--overwrite']) == 0
  assert dataset_files(directory) == files  # the same inputs give the same bytes


# The CLI as a terminal runs it: a shell starts background jobs with SIGINT ignored,
# and Python then raises no KeyboardInterrupt; a terminal's Ctrl-C does.
AS_IN_A_TERMINAL = ('import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); '
                    'from gestaltxai.cli import main; sys.exit(main(sys.argv[1:]))')
SYNTHETIC = ['prepare', 'synthetic', '--classes', 'unaffected', 'wide_eyes', '--per-class', '15',
             '--folds', '3']


def test_stopped_builds_are_never_read_and_continue_to_the_same_bytes(tmp_path, capsys):
  """Ctrl-C, then kill -9, then a run to the end: the same bytes as one uninterrupted run."""
  data_dir = tmp_path / 'data'
  items = tmp_path / '.data.building' / 'items'
  env = dict(os.environ, PYTHONUNBUFFERED='1',
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))

  def stop_after(finished, signal_number):
    """Runs prepare with 2 workers; sends the signal to all its processes after `finished` items."""
    run = subprocess.Popen(
        [sys.executable, '-c', AS_IN_A_TERMINAL, *SYNTHETIC, '--data-dir', str(data_dir),
         '--workers', '2'], env=env, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(list(items.glob('*.npz'))) < finished:
      assert run.poll() is None, run.stderr.read().decode()[-2000:]
      assert time.monotonic() < deadline, 'no progress'
      time.sleep(0.02)
    os.killpg(run.pid, signal_number)
    out, err = run.communicate(timeout=120)
    return run.returncode, out.decode(), err.decode()

  code, _, err = stop_after(4, signal.SIGINT)
  assert code == 130
  # (A worker still starting when the signal comes may print its own KeyboardInterrupt.)
  assert (f'gestaltxai prepare: interrupted; the images prepared so far are kept in '
          f'{tmp_path / ".data.building"}: run the same command again to continue'
          in err.splitlines()), err[-2000:]
  time.sleep(1)  # workers finish the image in hand, then stop
  interrupted = len(list(items.glob('*.npz')))
  # Stopped well before the 30: the images in hand and queued finish (more of them on a
  # loaded machine, where the main process reacts later), the rest are cancelled.
  assert 4 <= interrupted <= 20

  code, out, _ = stop_after(interrupted + 4, signal.SIGKILL)
  assert code == -signal.SIGKILL
  assert f'continuing: {interrupted} of 30 images were prepared before' in out
  killed = len(list(items.glob('*.npz')))
  assert killed < 30
  with pytest.raises(FileNotFoundError):
    FaceDataset.open(data_dir)
  assert not list(data_dir.rglob('dataset_info.json'))
  # What a kill while TFDS writes would leave in the staging folder.
  half_written = tmp_path / '.data.building' / 'tfds' / 'run' / 'synthetic_faces' / 'incomplete.X'
  half_written.mkdir(parents=True)
  (half_written / 'dataset_info.json').write_text('{}')
  capsys.readouterr()
  assert cli.main([*SYNTHETIC, '--data-dir', str(data_dir), '--workers', '0']) == 0
  assert f'continuing: {killed} of 30 images were prepared before' in capsys.readouterr().out
  assert not (tmp_path / '.data.building').exists()
  assert cli.main([*SYNTHETIC, '--data-dir', str(tmp_path / 'whole'), '--workers', '0']) == 0
  resumed = FaceDataset.open(data_dir).directory
  whole = FaceDataset.open(tmp_path / 'whole').directory
  files = dataset_files(resumed)
  assert any(p.name.startswith('synthetic_faces-faces.array_record') for p in files)
  assert files == dataset_files(whole)


def test_leftovers_of_builds_in_place_are_removed(tmp_path):
  """Earlier versions let TFDS build inside DATA; a killed one left a readable-looking folder."""
  leftover = tmp_path / 'data' / 'synthetic_faces' / 'incomplete.AB12CD_1.0.0'
  leftover.mkdir(parents=True)
  (leftover / 'dataset_info.json').write_text('{}')
  directory = build(sources.SyntheticFaces(
      classes=('unaffected', 'short_nose'), per_class=3, num_folds=3, data_dir=tmp_path / 'data',
      progress=False), workers=0)
  assert not leftover.exists() and FaceDataset.open(tmp_path / 'data').directory == directory


def test_awkward_photos_become_examples_and_the_rest_is_reported(photos, tmp_path, capsys):
  folder, rows = photos
  images = tmp_path / 'images'
  shutil.copytree(folder, images)
  first = np.asarray(Image.open(folder / rows[0][0]).convert('RGB'))
  second = np.asarray(Image.open(folder / rows[1][0]).convert('RGB'))
  sideways_phone_photo(first, images / 'phone.jpg')
  sixteen_bit_grey(second, images / 'grey16.png')
  Image.fromarray(first).convert('P', palette=Image.Palette.ADAPTIVE).save(images / 'palette.png')
  small = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((256, 256)))
  two = np.zeros((512, 768, 3), np.uint8)
  two[:, :512], two[128:384, 512:] = skimage_data.astronaut(), small
  Image.fromarray(two).save(images / 'two.png')
  (images / 'torn.jpg').write_bytes((folder / rows[2][0]).read_bytes()[:300])
  extra = [('phone.jpg', 'Male'), ('grey16.png', 'Female'), ('palette.png', 'Male'),
           ('two.png', 'Female'), ('torn.jpg', 'Male'), ('absent.jpg', 'Female')]
  table = write_table(tmp_path / 'labels.csv', rows + extra)
  assert cli.main(folder_args(images, table, tmp_path / 'data', '--folds', '3')) == 0
  printed = capsys.readouterr().out
  ds = FaceDataset.open(tmp_path / 'data')
  assert set(ds.names) == {name for name, _ in rows} | {'phone.jpg', 'grey16.png', 'palette.png',
                                                          'two.png'}
  skipped = {s['name']: s['reason'] for s in ds.metadata['skipped']}
  assert set(skipped) == {'torn.jpg', 'absent.jpg'}
  assert skipped['absent.jpg'].startswith('FileNotFoundError')
  assert skipped['torn.jpg'].startswith('OSError') and 'truncated' in skipped['torn.jpg'].lower()
  warnings = {w['name']: w['warning'] for w in ds.metadata['warnings']}
  assert list(warnings) == ['two.png'] and 'faces found; using the largest' in warnings['two.png']
  records = {ds.names[i]: ds[i] for i in range(len(ds))}
  for name in ('phone.jpg', 'grey16.png', 'palette.png'):
    aligned_eyes = records[name]['five'][:2]
    np.testing.assert_allclose(aligned_eyes, data.template(224)[:2], atol=12)
  detectors = [np.asarray(r['detector']).item().decode() for r in records.values()]
  assert set(detectors) <= {'hog', 'cnn'}
  assert ds.metadata['detectors'] == {k: detectors.count(k) for k in sorted(set(detectors))}
  assert f"{detectors.count('hog')} found by dlib's HOG detector" in printed
  assert re.search(r'two\.png: \d faces found', printed)
  assert 'absent.jpg: FileNotFoundError' in printed


def test_too_few_usable_photos_keeps_the_aligned_ones(photos, tmp_path, capsys):
  """A class falls below the fold count only after detection: the work stays for the next run."""
  folder, rows = photos
  images = tmp_path / 'images'
  shutil.copytree(folder, images)
  Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(images / 'wall.jpg')
  females = [row for row in rows if row[1] == 'Female']
  males = [row for row in rows if row[1] == 'Male']
  table = write_table(tmp_path / 'labels.csv', females[:2] + [('wall.jpg', 'Female')] + males[:3])
  args = folder_args(images, table, tmp_path / 'data', '--folds', '3')
  assert cli.main(args) == 1
  err = capsys.readouterr().err
  assert "5 usable images: 'Female' has 2; each class needs at least 3 images" in err
  assert 'the 5 aligned images are kept' in err
  write_table(table, females[:3] + [('wall.jpg', 'Female')] + males[:3])
  assert cli.main(args) == 0
  assert 'continuing: 6 of 7 images were prepared before' in capsys.readouterr().out
  assert len(FaceDataset.open(tmp_path / 'data')) == 6


def test_one_build_at_a_time_per_folder(tmp_path):
  (tmp_path / 'data').mkdir()
  builder = sources.SyntheticFaces(classes=('unaffected', 'short_nose'), per_class=3,
                                   num_folds=3, data_dir=tmp_path / 'data', progress=False)
  with staging.exclusive(tmp_path / 'data'):  # as another prepare holds it
    with pytest.raises(BlockingIOError, match='another process is preparing a dataset in'):
      build(builder, workers=0)
  assert not list((tmp_path / 'data').iterdir())


def test_partitions_errors_name_line_and_value(tmp_path):
  (tmp_path / 'images').mkdir()
  header = sources.NihFaces.COLUMNS
  good = [f'{cls}Slide{i}.jpg' for cls in ('Down', 'WS') for i in range(3)]

  def row(name, index, **changes):
    values = {'image_name': name, **{f'fold-{k}': schema.SPLITS[(index + k) % 3]
                                     for k in range(1, 6)},
              **{f'{a}{i}': str(10 * i + (a == 'y')) for i in range(1, 6) for a in 'xy'}}
    values.update(changes)
    return [values[column] for column in header]

  cases = {
      'fold value': ([row(n, i) for i, n in enumerate(good[:5])] + [row(good[5], 5, **{
          'fold-2': 'training'})], r"line 7: fold-2 is 'training', expected one of train"),
      'coordinate': ([row(n, i) for i, n in enumerate(good[:3])] + [row(good[3], 3, y4='12,5')]
                     + [row(n, i) for i, n in enumerate(good[4:])],
                     r"line 5: y4 is '12,5', not a number"),
      'class': ([row(n, i) for i, n in enumerate(good)] + [row('DownSyndrome7.jpg', 6)],
                r"line 8: 'DownSyndrome7.jpg' names no NIH-Faces class"),
      'duplicate': ([row(n, i) for i, n in enumerate(good)] + [row(good[0], 0)],
                    r"line 8: image_name 'DownSlide0.jpg' is listed again \(first on line 2\)"),
      'empty split': ([row(n, 0) for n in good], r'fold-1 has no train image'),
  }
  for case, (rows, message) in cases.items():
    write_table(tmp_path / 'partitions.csv', rows, header=header)
    with pytest.raises(ValueError, match=message):
      sources.NihFaces(root=tmp_path, data_dir=tmp_path / 'data')
    assert not (tmp_path / 'data').exists(), case
