"""The demo end to end at tiny size: the trained model's explanations point at the planted
regions, and what the demo writes is what the contract says."""

import html.parser
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from gestaltxai import cli
from gestaltxai.demo import DEMO_METHODS

SUMMARY_FIELDS = {'recovery_classes', 'recovery_images', 'chance_classes', 'chance_images',
                  'deletion_auc', 'insertion_auc', 'randomisation_similarity', 'images_per_s'}
# Recovery by class: two of the four trait classes or more (chance: 1/3 each) for integrated
# gradients, and the eye trait in the eye region for it and the plain gradient. The eye trait
# is the one whose evidence stays inside its box: a longer philtrum or a shorter nose moves
# the reference's nose-mouth boundary (halfway between the parts), so its evidence straddles
# both boxes and which one wins varies with the platform's rounding at tiny size (README:
# what the demo shows). The plain gradient's share of classes is one of those: 0.75 when
# this test was written, 0.25 on a fresh install of the same versions (image-level 0.73)
# so the test does not ask it. By image: a share of ~50 correctly classified
# trait-class test images, with a standard error of 0.07 at chance (1/3); "well above" is
# more than twice that.
RECOVERED_CLASSES = 0.5
WELL_ABOVE_CHANCE = 0.15


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
  out = tmp_path_factory.mktemp('demo')
  assert cli.main(['demo', '--out', str(out), '--size', 'tiny']) == 0
  return out


def test_gradient_and_integrated_gradients_recover_the_planted_regions(demo):
  summary = json.loads((demo / 'summary.json').read_text())
  assert set(summary['methods']) == set(DEMO_METHODS)
  assert 0.2 < summary['test_accuracy'] <= 1.0  # five classes: chance is 0.2
  for name, scores in summary['methods'].items():
    assert SUMMARY_FIELDS <= set(scores), name
    assert scores['chance_classes'] == scores['chance_images'] == pytest.approx(1 / 3)
  for name in ('gradient', 'integrated_gradients'):
    scores = summary['methods'][name]
    assert scores['strongest_regions']['wide_eyes'] == 'eye', (name, scores)
  scores = summary['methods']['integrated_gradients']
  assert scores['recovery_classes'] >= RECOVERED_CLASSES, scores
  # Image by image, integrated gradients points at the planted region; the plain gradient
  # is not reliably above chance at this size (README: what the demo shows).
  scores = summary['methods']['integrated_gradients']
  assert scores['recovery_images'] > scores['chance_images'] + WELL_ABOVE_CHANCE, scores


def test_the_demo_writes_the_table_the_stats_and_a_report(demo):
  table = pq.read_table(demo / 'coefficients.parquet').to_pylist()
  assert {r['method'] for r in table} == set(DEMO_METHODS)
  assert {r['fold'] for r in table} == {1}
  ok = [r for r in table if r['status'] == 'ok']
  assert len(ok) == len(table)
  assert all(np.isfinite([r['eye_xai'], r['nose_xai'], r['mouth_xai']]).all() for r in ok)
  for name in ('rq1.csv', 'rq1_summary.csv', 'rq2.csv', 'rq2_summary.csv'):
    assert (demo / 'stats' / name).stat().st_size > 0
  page = (demo / 'report.html').read_text()
  ids = []

  class Ids(html.parser.HTMLParser):
    def handle_starttag(self, tag, attrs):
      ids.extend(value for key, value in attrs if key == 'id')

  Ids().feed(page)
  assert {'ground-truth', 'fig-ground-truth', 'rq1', 'rq2', 'trust'} <= set(ids)


def test_a_second_run_reuses_every_stage(demo, capsys):
  capsys.readouterr()
  assert cli.main(['demo', '--out', str(demo), '--size', 'tiny']) == 0
  printed = capsys.readouterr().out
  assert 'reusing the dataset' in printed
  assert '1 already done' in printed
  summary = json.loads((demo / 'summary.json').read_text())
  assert set(summary['methods']) == set(DEMO_METHODS)
