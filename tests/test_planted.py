"""Planted traits on real photos: the warp moves what it says, dlib sees it, folds by identity."""

import collections
import csv
import shutil

import numpy as np
import pytest

from gestaltxai.data import planted, planted_faces, synthetic
from gestaltxai.data.detect import detect_landmarks

PHOTOS = ('1.jpg', '2.jpg', '3.jpg', '4.jpg', '5.jpg')
FOLDS = 3


@pytest.fixture(scope='module')
def photos(tmp_path_factory, fairface_dir):
  """Five FairFace photos in a folder of their own."""
  folder = tmp_path_factory.mktemp('photos')
  for name in PHOTOS:
    shutil.copy(fairface_dir / 'train' / name, folder / name)
  return folder


@pytest.fixture(scope='module')
def built(photos, tmp_path_factory):
  from gestaltxai.data.build import build
  from gestaltxai.data.pipeline import FaceDataset
  from gestaltxai.data.planted_faces import PlantedFaces
  builder = PlantedFaces(photos=photos, num_folds=FOLDS,
                         data_dir=tmp_path_factory.mktemp('data'), progress=False)
  return builder, FaceDataset.open(build(builder, workers=0))


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)


def test_warp_puts_a_marked_point_where_the_trait_says():
  # Independent of the spline: a dot drawn at a moved landmark is found by its centroid
  # in the warped image, at the landmark's target; a dot at a pinned landmark stays.
  size = 224
  points = synthetic.shape_model()['mean'].astype(np.float64)   # a 68-point face at 224 px
  moved = planted.WARPS['wide_mouth'](points, 2.0)
  rows, cols = np.mgrid[:size, :size]
  image = np.zeros((size, size, 3), np.uint8)
  for index in (54, 27):   # a mouth corner (moved) and the nose bridge top (pinned)
    x, y = points[index]
    image[(cols - x) ** 2 + (rows - y) ** 2 <= 9] = 255
  warped = planted.warp(image, planted.backward_map(points, moved, size)).astype(float)[..., 0]
  for index in (54, 27):
    x, y = moved[index]
    near = ((cols - x) ** 2 + (rows - y) ** 2 <= 64) * warped
    centroid = np.array([(near * cols).sum(), (near * rows).sum()]) / near.sum()
    # 0.5 px: a 3-px dot resampled bilinearly, stretched by the warp around it.
    np.testing.assert_allclose(centroid, moved[index], atol=0.5)
  assert np.abs(moved[54, 0] - points[54, 0]) > 5   # the corner did move
  # The border is pinned: the outermost pixels sample themselves.
  field = planted.backward_map(points, moved, size)
  np.testing.assert_allclose(field[:, 0, :], np.stack([np.zeros(size), np.arange(size)]),
                             atol=0.35)  # between the 8 pinned points per side


@pytest.mark.parametrize('trait', planted.TRAITS[1:])
def test_lattice_map_is_the_spline_evaluated_at_every_pixel(trait):
  points = synthetic.shape_model()['mean'].astype(np.float64)
  moved = planted.WARPS[trait](points, planted.STRENGTH_RANGE[1])
  fine = planted.backward_map(points, moved, 224, lattice_step=1)
  # LATTICE_STEP's documented bound: cubic interpolation of a smooth field between lattice
  # points 4 px apart.
  np.testing.assert_allclose(planted.backward_map(points, moved, 224), fine, atol=0.2)


def test_identity_folds_keep_a_person_in_one_split():
  identities = [f'p{i % 17}' for i in range(85)]
  folds = planted_faces.identity_folds(identities, 5, seed=3)
  for k in range(5):
    by_split = collections.defaultdict(set)
    for person, split in zip(identities, folds[:, k]):
      by_split[split].add(person)
    assert set(by_split) == {0, 1, 2}
    assert not (by_split[0] & by_split[1] or by_split[0] & by_split[2]
                or by_split[1] & by_split[2])
  for k in range(5):   # every person is tested in exactly one fold
    assert (folds == 2).sum(1).tolist() == [1] * 85


def test_strength_is_in_the_documented_range_and_reproducible():
  values = [planted.trait_strength(0, f'id{i}', 'wide_eyes') for i in range(50)]
  assert min(values) >= planted.STRENGTH_RANGE[0] and max(values) <= planted.STRENGTH_RANGE[1]
  assert values == [planted.trait_strength(0, f'id{i}', 'wide_eyes') for i in range(50)]
  assert planted.trait_strength(0, 'id0', 'unaffected') == 0.0


def test_built_dataset_records_traits_and_drops_are_counted(built):
  builder, dataset = built
  checks = dataset.metadata['planted_checks']
  total = sum(sum(c.values()) for c in checks.values())
  assert total == len(PHOTOS) * len(planted.TRAITS)
  assert sum(c['kept'] for c in checks.values()) == len(dataset)
  assert len(dataset.metadata['skipped']) == total - len(dataset)
  records = [dataset[i] for i in range(len(dataset))]
  for record in records:
    trait = _text(record['trait'])
    assert dataset.classes[int(record['label'])] == trait
    assert _text(record['name']) == f'{_text(record["identity"])}_{trait}'
    if trait == 'unaffected':
      assert record['strength'] == 0 and record['measured_change'] == 0
    else:
      lo, hi = planted.STRENGTH_RANGE
      assert lo <= record['strength'] <= hi
      ratio = record['measured_change'] / record['planted_change']
      assert ratio >= planted.MIN_RECOVERED
      assert record['off_target'] <= planted.MAX_OFF_TARGET
  # Folds: all images of one identity share their splits, so no person crosses splits.
  by_identity = collections.defaultdict(set)
  for record in records:
    by_identity[_text(record['identity'])].add(tuple(record['folds'].tolist()))
  assert all(len(rows) == 1 for rows in by_identity.values())
  # HPO annotations: one file per trait, graded 1X..3X.
  hpo = dataset.directory / 'hpo'
  for trait in planted.TRAITS[1:]:
    if checks[trait]['kept']:
      with open(hpo / f'{trait}.csv', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
      assert len(rows) == checks[trait]['kept']
      assert {r[planted.TRAIT_HPO[trait]] for r in rows} <= {'1X', '2X', '3X'}


def test_independent_detection_sees_each_trait_in_its_region_only(built):
  # dlib run from scratch (its own detector box, not the builder's) on the stored images:
  # each trait's measure moves the planted way, the other traits' measures barely move.
  _, dataset = built
  records = {_text(dataset[i]['name']): dataset[i] for i in range(len(dataset))}
  shown, count = collections.Counter(), collections.Counter()
  for name, record in records.items():
    identity, trait = _text(record['identity']), _text(record['trait'])
    base = records.get(f'{identity}_unaffected')
    if trait == 'unaffected' or base is None:
      continue
    before = detect_landmarks(base['image'], detector='hog').points68
    after = detect_landmarks(record['image'], detector='hog').points68
    change = {t: planted.measure(after, t) - planted.measure(before, t)
              for t in planted.MEASURES}
    count[trait] += 1
    planted_way = np.sign(record['planted_change']) * change[trait]
    # Other measures: short_nose lengthens the nose-lip distance by its own move.
    others = [abs(v) for t, v in change.items() if t != trait
              and not {t, trait} == {'short_nose', 'long_philtrum'}]
    shown[trait] += planted_way > 0 and planted_way > max(others)
  assert sum(count.values()) >= 8
  # A fresh detection box differs from the builder's; most (3 in 4) must still agree.
  assert sum(shown.values()) >= 0.75 * sum(count.values()), (shown, count)


def test_shipped_sample_is_package_data_with_its_attribution():
  folder = planted_faces.default_photos()
  assert len(planted_faces.find_photos(folder)) == 400
  assert 'CC BY 4.0' in (folder / 'SOURCE.md').read_text(encoding='utf-8')
  assert 'CC BY 4.0' in (folder / 'LICENSE.md').read_text(encoding='utf-8')
  import configparser
  import pathlib
  setup = configparser.ConfigParser()
  setup.read(pathlib.Path(__file__).parents[1] / 'setup.cfg')
  data = setup['options.package_data']['gestaltxai']
  for pattern in ('data/fairface400/train/*.jpg', 'data/fairface400/val/*.jpg',
                  'data/fairface400/*.md'):
    assert pattern in data


def test_dlib_chip_follows_the_unaffected_face(photos):
  # The chip is cut by the unaffected face's landmarks for every trait, so a trait's
  # landmarks move in the chip as in the 224-px face (scaled by the chip's similarity).
  path = str(photos / PHOTOS[0])
  base = planted.planted_example(path, 'x', 'unaffected', 0.0, alignment='dlib')
  wide = planted.planted_example(path, 'x', 'wide_eyes', 2.0, alignment='dlib')
  assert base['image'].shape == (150, 150, 3) and base['regions'].shape == (150, 150)
  spread = planted.measure(wide['points68'], 'wide_eyes') - planted.measure(
      base['points68'], 'wide_eyes')
  np.testing.assert_allclose(spread, wide['planted_change'], rtol=1e-4)
  moved = np.linalg.norm(wide['points68'] - base['points68'], axis=1) > 1e-3
  assert set(np.flatnonzero(moved)) == set(planted.MOVED['wide_eyes'])


def test_planted_strip_draws_each_traits_moves(built):
  from gestaltxai.viz.planted import MOVED_PX, identity_records, planted_strip
  _, dataset = built
  records = identity_records(dataset)
  figure = planted_strip(records)
  base = records[0]['points68']
  assert _text(records[0]['trait']) == 'unaffected'
  for ax, record in zip(figure.axes, records):
    arrows = sum(len(c.U) for c in ax.collections)   # one quiver per moved panel
    moved = np.linalg.norm(record['points68'] - base, axis=1) > MOVED_PX
    assert arrows == moved.sum()
    assert moved.sum() == 0 if _text(record['trait']) == 'unaffected' else moved.sum() >= 4


def test_report_shows_the_strip_for_planted_data_only(built, tmp_path):
  from gestaltxai.viz.sections.ground_truth import planted_strip_blocks
  _, dataset = built
  warnings = []
  blocks = planted_strip_blocks(dataset.directory, warnings)
  assert [b['id'] for b in blocks] == ['fig-planted-strip'] and not warnings
  assert blocks[0]['png']   # a rendered PNG
  assert planted_strip_blocks(tmp_path, warnings) == []
  assert warnings   # a folder without a dataset is said, not silently skipped


def test_cli_prepare_planted_reads_the_shipped_sample_by_default(tmp_path):
  from gestaltxai.cli import build_parser
  from gestaltxai.cli.prepare import BUILDERS
  args = build_parser().parse_args(['prepare', 'planted', '--data-dir', str(tmp_path),
                                    '--limit', '7', '--alignment', 'dlib'])
  builder = BUILDERS[args.source](args, {'data_dir': args.data_dir, 'alignment': args.alignment})
  assert builder.alignment == 'dlib'
  assert len(builder.items) == 7 * len(planted.TRAITS)
  assert {item.recipe.args[1] for item in builder.items} == {
      identity for identity, _ in planted_faces.find_photos(planted_faces.default_photos())[:7]}
  demo = build_parser().parse_args(['demo', '--faces', 'real'])
  assert demo.faces == 'real' and demo.photos is None
