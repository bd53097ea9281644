"""TFDS builders, synthetic faces and the input pipeline."""

import csv
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from gestaltxai import cli, data, regions
from gestaltxai.cli import prepare as prepare_command
from gestaltxai.data import schema, sources, synthetic
from gestaltxai.data.build import build
from gestaltxai.data.folds import stratified_folds
from gestaltxai.data.pipeline import FaceDataset, batches, flip_record
from tests.test_faces import lstsq_similarity

NIH_NAMES = ('Down', 'WS', 'Unaffected')
TEST_FOLD_SPLITS = ('train', 'train', 'val', 'test', 'train')


def build_quiet(builder):
  builder._progress = False  # pylint: disable=protected-access
  return build(builder, workers=0)


@pytest.fixture(scope='module')
def nih_root(tmp_path_factory, fairface_dir):
  """A small NIH-layout dataset: FairFace photos renamed into syndrome classes, dlib points."""
  root = tmp_path_factory.mktemp('nih')
  (root / 'images').mkdir()
  (root / 'features' / 'segmaps').mkdir(parents=True)
  rows = []
  photos = sorted((fairface_dir / 'train').glob('*.jpg'))
  used = 0
  for path in photos:
    rgb = np.asarray(Image.open(path).convert('RGB'))
    try:
      lm = data.detect_landmarks(rgb, name=path.name, detector='hog')
    except data.NoFaceError:
      continue
    cls = NIH_NAMES[used % len(NIH_NAMES)]
    name = f'{cls}Slide{used:03d}.jpg'
    shutil.copy(path, root / 'images' / name)
    if used == 0:  # one photo comes with a parsing map in the photo's frame
      Image.fromarray(regions.landmark_parsing(lm.points68, rgb.shape[:2])).save(
          root / 'features' / 'segmaps' / name)
    row = {'image_name': name}
    for k in range(1, 6):
      row[f'fold-{k}'] = TEST_FOLD_SPLITS[(used + k) % 5]
    for i, (x, y) in enumerate(lm.five, start=1):
      row[f'x{i}'], row[f'y{i}'] = f'{x:.2f}', f'{y:.2f}'
    rows.append(row)
    used += 1
    if used == 9:
      break
  with open(root / 'partitions.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return root, rows


@pytest.fixture(scope='module')
def nih_dataset(nih_root, tmp_path_factory):
  root, _ = nih_root
  out = tmp_path_factory.mktemp('nih_data')
  return build_quiet(sources.NihFaces(root=root, data_dir=str(out), file_format='array_record'))


READ_BACK = textwrap.dedent('''
    import importlib.util, json, os, sys
    # CI has no TensorFlow at all; elsewhere, at least nothing may import it.
    if os.environ.get('CI'):
      assert importlib.util.find_spec('tensorflow') is None, 'TensorFlow is installed'
    import numpy as np
    from gestaltxai.data.pipeline import FaceDataset
    ds = FaceDataset.open(sys.argv[1])
    out = {'n': len(ds), 'classes': ds.classes, 'names': ds.names,
           'labels': ds.labels.tolist(),
           'folds': {s: ds.indices(1, s).tolist() for s in ('train', 'val', 'test')},
           'five': [ds[i]['five'].tolist() for i in range(len(ds))],
           'means': ds.metadata['fold_mean_bgr']}
    assert 'tensorflow' not in sys.modules
    print(json.dumps(out))
''')


def test_nih_dataset_reads_back_without_tensorflow(nih_root, nih_dataset):
  root, rows = nih_root
  result = subprocess.run([sys.executable, '-c', READ_BACK, str(nih_dataset)],
                          capture_output=True, text=True, check=True)
  got = json.loads(result.stdout.strip().splitlines()[-1])
  assert got['n'] == len(rows) == 9
  by_name = {r['image_name']: r for r in rows}
  for name, label in zip(got['names'], got['labels']):
    assert got['classes'][label] == name.split('Slide')[0]
  for split, indices in got['folds'].items():
    expected = sorted(r['image_name'] for r in rows if r['fold-1'] == split)
    assert sorted(got['names'][i] for i in indices) == expected
  template = data.template(224)
  for name, five in zip(got['names'], got['five']):
    row = by_name[name]
    given = np.array([[float(row[f'x{i}']), float(row[f'y{i}'])] for i in range(1, 6)])
    expected = data.transform_points(given, lstsq_similarity(given, template))
    np.testing.assert_allclose(five, expected, atol=0.1)
  # Fold means: mean over fold-1 training images of each image's BGR channel means.
  ds = FaceDataset.open(nih_dataset)
  train = [ds[i]['image'].reshape(-1, 3).mean(0)[::-1] for i in got['folds']['train']]
  np.testing.assert_allclose(got['means']['fold-1'], np.mean(train, 0), rtol=1e-6)


def test_nih_parsing_map_is_warped_with_the_photo(nih_root, nih_dataset):
  root, rows = nih_root
  ds = FaceDataset.open(nih_dataset)
  name = rows[0]['image_name']
  record = ds[ds.names.index(name)]
  rgb = np.asarray(Image.open(root / 'images' / name).convert('RGB'))
  segmap = np.asarray(Image.open(root / 'features' / 'segmaps' / name))
  five = np.array([[float(rows[0][f'x{i}']), float(rows[0][f'y{i}'])] for i in range(1, 6)])
  _, matrix = data.align(rgb, five)
  np.testing.assert_array_equal(record['parsing'],
                                data.warp_affine(segmap, matrix, 224, order=0))
  np.testing.assert_array_equal(record['regions'], regions.reference_region_map(record['parsing']))


def test_folder_builder_skips_broken_and_faceless_photos(tmp_path, fairface_dir):
  images = tmp_path / 'photos'
  images.mkdir()
  with open(fairface_dir / 'fairface_label_train.csv', newline='') as f:
    labels = list(csv.DictReader(f))[:14]
  for row in labels:
    shutil.copy(fairface_dir / row['file'], images / row['file'].replace('/', '_'))
    row['file'] = row['file'].replace('/', '_')
  (images / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 this is not a JPEG')
  Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(images / 'wall.jpg')
  labels += [{'file': 'corrupt.jpg', 'gender': 'Male'}, {'file': 'wall.jpg', 'gender': 'Female'}]
  csv_path = tmp_path / 'labels.csv'
  with open(csv_path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=['file', 'gender'], extrasaction='ignore')
    writer.writeheader()
    writer.writerows(labels)
  directory = build_quiet(sources.FolderFaces(
      images=images, labels=csv_path, label_column='gender', num_folds=3,
      data_dir=str(tmp_path / 'out'), file_format='array_record'))
  ds = FaceDataset.open(directory)
  skipped = {s['name']: s['reason'] for s in ds.metadata['skipped']}
  assert 'corrupt.jpg' in skipped and 'wall.jpg' in skipped
  assert 'no face found in wall.jpg' in skipped['wall.jpg']
  assert len(ds) + len(skipped) == 16 and len(ds) >= 8
  assert ds.classes == ['Female', 'Male']
  for fold in range(1, 4):
    parts = [set(ds.indices(fold, s)) for s in ('train', 'val', 'test')]
    assert set().union(*parts) == set(range(len(ds))) and sum(map(len, parts)) == len(ds)
  summary = prepare_command.summary(ds)
  assert 'wall.jpg' in summary and 'fold-3' in summary


def test_stratified_folds_balance_classes_and_follow_the_seed():
  labels = np.repeat([0, 1, 2], [20, 10, 5])
  folds = stratified_folds(labels, 5, seed=3)
  np.testing.assert_array_equal(folds, stratified_folds(labels, 5, seed=3))
  assert not np.array_equal(folds, stratified_folds(labels, 5, seed=4))
  for k in range(5):
    test = folds[:, k] == 2
    assert np.bincount(labels[test], minlength=3).tolist() == [4, 2, 1]
    assert ((folds[:, k] == 1) & test).sum() == 0


def test_synthetic_faces_are_deterministic_bytes(tmp_path):
  a = synthetic.synthetic_face(7, 'wide_mouth', 3)
  b = synthetic.synthetic_face(7, 'wide_mouth', 3)
  assert a.image.tobytes() == b.image.tobytes() and a.parsing.tobytes() == b.parsing.tobytes()
  assert synthetic.synthetic_face(8, 'wide_mouth', 3).image.tobytes() != a.image.tobytes()
  files = []
  for run in ('one', 'two'):
    directory = build_quiet(sources.SyntheticFaces(
        classes=('unaffected', 'short_nose'), per_class=4, seed=7, num_folds=3,
        data_dir=str(tmp_path / run), file_format='array_record'))
    files.append(sorted(directory.glob('*.array_record*')))
  assert files[0] and [f.read_bytes() for f in files[0]] == [f.read_bytes() for f in files[1]]


@pytest.mark.parametrize('trait', sorted(synthetic.TRAIT_MEASURES))
def test_planted_traits_are_measurable_in_the_landmarks(trait):
  measure = synthetic.TRAIT_MEASURES[trait]
  base = np.array([measure(synthetic.synthetic_face(0, 'unaffected', i).points68)
                   for i in range(40)])
  planted = np.array([measure(synthetic.synthetic_face(0, trait, i).points68) for i in range(40)])
  pooled = np.sqrt((base.var(ddof=1) + planted.var(ddof=1)) / 2)
  cohens_d = abs(planted.mean() - base.mean()) / pooled
  assert cohens_d > 2.0, (trait, cohens_d)


def test_flip_swaps_left_and_right():
  face = synthetic.synthetic_face(0, 'unaffected', 0)
  record = {'image': face.image, 'parsing': face.parsing,
            'regions': regions.reference_region_map(face.parsing),
            'five': data.five_from_68(face.points68).astype(np.float32),
            'points68': face.points68}
  flipped = flip_record(record)
  lapa = regions.LAPA
  left = face.parsing == lapa['left_eye']
  assert (flipped['parsing'][:, ::-1][left] == lapa['right_eye']).all()
  np.testing.assert_array_equal(flip_record(flipped)['parsing'], record['parsing'])
  np.testing.assert_allclose(flip_record(flipped)['five'], record['five'], atol=1e-4)
  assert flipped['five'][0, 0] < flipped['five'][1, 0]  # image-left eye stays first


def test_batches_shard_shuffle_and_subtract_the_mean(tmp_path):
  directory = build_quiet(sources.SyntheticFaces(
      classes=('unaffected', 'wide_eyes'), per_class=7, data_dir=str(tmp_path),
      file_format='array_record'))
  ds = FaceDataset.open(directory)
  everything = np.arange(len(ds))
  mean = ds.mean_bgr(2)
  first = [b for b in batches(ds, everything, 4, mean_bgr=mean, shuffle=True, seed=1)]
  record = ds[int(first[0]['index'][0])]
  np.testing.assert_allclose(first[0]['image'][0],
                             record['image'][..., ::-1].astype(np.float32) - mean)
  order = np.concatenate([b['index'] for b in first])
  assert sorted(order) == everything.tolist() and not np.array_equal(order, everything)
  again = np.concatenate([b['index'] for b in batches(ds, everything, 4, mean_bgr=mean,
                                                      shuffle=True, seed=1)])
  np.testing.assert_array_equal(order, again)
  other_epoch = np.concatenate([b['index'] for b in batches(ds, everything, 4, mean_bgr=mean,
                                                            shuffle=True, seed=1, epoch=1)])
  assert not np.array_equal(order, other_epoch)
  shards = [np.concatenate([b['index'] for b in batches(
      ds, everything, 4, mean_bgr=mean, shuffle=True, seed=1, process_index=p,
      process_count=2, drop_remainder=False)]) for p in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert sorted(np.concatenate(shards)) == everything.tolist()
  dropped = list(batches(ds, everything, 4, mean_bgr=mean, drop_remainder=True))
  assert all(len(b['label']) == 4 for b in dropped) and len(dropped) == len(ds) // 4


def test_cli_prepare_synthetic(tmp_path, capsys):
  assert cli.main(['prepare', 'synthetic', '--classes', 'unaffected', 'long_philtrum',
                   '--per-class', '3', '--folds', '3', '--workers', '0',
                   '--data-dir', str(tmp_path / 'syn')]) == 0
  printed = capsys.readouterr().out
  assert '6 images' in printed and 'long_philtrum: 3' in printed
  # The same folder with other arguments is refused, saying what differs, not reused.
  assert cli.main(['prepare', 'synthetic', '--classes', 'unaffected', 'long_philtrum',
                   '--per-class', '4', '--folds', '3', '--data-dir', str(tmp_path / 'syn')]) == 1
  assert 'per_class 3 -> 4' in capsys.readouterr().err
  assert cli.main(['prepare', 'nih-faces', '--root', str(tmp_path / 'nowhere'),
                   '--data-dir', str(tmp_path / 'x')]) == 1


def test_synthetic_ground_truth_grades_hpo_annotations_by_trait_strength(tmp_path):
  """Each trait's HPO term lies in its planted region; 1X/2X/3X follow strength tertiles."""
  from gestaltxai.stats import hpo_region_grouping, read_hpo
  grouping = hpo_region_grouping()
  for trait, term in synthetic.TRAIT_HPO.items():
    if term is not None:
      assert term in grouping[synthetic.TRAIT_REGIONS[trait]], (trait, term)
  directory = build_quiet(sources.SyntheticFaces(
      classes=('unaffected', 'wide_eyes', 'short_nose'), per_class=9, seed=3, num_folds=3,
      data_dir=str(tmp_path), file_format='array_record'))
  ds = FaceDataset.open(directory)
  strengths = ds.metadata['trait_strength']
  assert len(strengths) == len(ds)
  for name, value in strengths.items():
    trait, index = name.rsplit('_', 1)
    expected = 0.0 if trait == 'unaffected' else synthetic.trait_strength(3, trait, int(index))
    assert value == expected
    low, high = synthetic.STRENGTH_RANGE
    assert value == 0.0 if trait == 'unaffected' else low <= value <= high
  annotations = read_hpo(schema.hpo_dir(directory))
  assert not any(name.startswith('unaffected') for name in annotations.images)
  for trait in ('wide_eyes', 'short_nose'):
    column = annotations.terms.index(synthetic.TRAIT_HPO[trait])
    members = [i for i, name in enumerate(annotations.images) if name.startswith(trait)]
    graded = sorted(members, key=lambda i: strengths[annotations.images[i]])
    # Nine faces: the three weakest are annotated by one clinician, the strongest by three.
    assert [int(annotations.clinicians[i, column]) for i in graded] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
  scores = annotations.region_scores()
  eye = scores['eye'][[i for i, n in enumerate(annotations.images) if n.startswith('wide_eyes')]]
  assert set(np.round(eye * 3).astype(int)) == {1, 2, 3}
