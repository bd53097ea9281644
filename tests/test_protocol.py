"""The paper's protocol on a NIH-Faces-shaped folder built here: the held-out images of a fold
are its `val` rows (every class, the control too), the annotated images are the `test` rows
(five syndromes, no control); train -> evaluate -> extract -> stats use each for its job.

The expectations come from the partitions.csv this test writes, not from the library: the
held-out control count of fold 1, the annotated image names, the held-out image count.
"""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gestaltxai import cli, paper, roles, stats
from gestaltxai.data import builders, synthetic
from gestaltxai.data.detect import five_from_68

# NIH-Faces classes drawn as synthetic faces with some planted trait (which one does not
# matter here: the test checks which images go where, not what the model learns).
FACES = {'Unaffected': 'unaffected', '22q11DS': 'wide_eyes', 'Angelman': 'wide_mouth',
         'KS': 'long_philtrum', 'NS': 'short_nose', 'WS': 'wide_eyes'}
ANNOTATED_PER_SYNDROME = 2   # `test` in every fold, as the reference's 171 HPO images
HELD_OUT_PER_CLASS = 3       # fold 1's `val`: Shapiro-Wilk needs 3 per group
TRAIN_PER_CLASS = 3
HPO_TERMS = ('Hypertelorism', 'Ptosis', 'Bulbous nose', 'Long philtrum', 'Wide mouth',
             'High forehead')
HPO_CELLS = ('', '1X', '2X', '3X')


def nih_splits(position: int, annotated: bool) -> list[str]:
  """fold-1 .. fold-5 of one image: annotated ones are `test` everywhere; fold 1 holds out the
  first images of each class, the other folds one other image each (they are not trained)."""
  if annotated:
    return ['test'] * builders.NIH_FOLDS
  fold_one = 'val' if position < HELD_OUT_PER_CLASS else 'train'
  return [fold_one] + ['val' if position == HELD_OUT_PER_CLASS else 'train'] * 4


def write_nih_folder(root):
  """images/<Class>Slide<N>.png, features/segmaps/, partitions.csv and metadata HPO CSVs in
  the reference's layouts; returns the partitions as {name: (class, [split per fold])}."""
  for folder in ('images', 'features/segmaps', 'hpo'):
    (root / folder).mkdir(parents=True)
  partitions = {}
  rng = np.random.default_rng(0)
  for number, (name, trait) in enumerate(FACES.items()):
    annotated = 0 if name == paper.CONTROL else ANNOTATED_PER_SYNDROME
    for index in range(annotated + HELD_OUT_PER_CLASS + TRAIN_PER_CLASS):
      face = synthetic.synthetic_face(number, trait, index)
      image = f'{name}Slide{index + 1}.png'
      Image.fromarray(face.image).save(root / 'images' / image)
      Image.fromarray(face.parsing.astype(np.uint8)).save(root / 'features/segmaps' / image)
      is_annotated = index >= HELD_OUT_PER_CLASS + TRAIN_PER_CLASS
      partitions[image] = (name, nih_splits(index, is_annotated), five_from_68(face.points68))
    if annotated:
      with open(root / 'hpo' / f'{name}.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['image_num', 'image_name', *HPO_TERMS, 'Other'])
        members = [n for n, (c, s, _) in partitions.items() if c == name and s[0] == 'test']
        for i, image in enumerate(members):
          writer.writerow([i, image, *rng.choice(HPO_CELLS, len(HPO_TERMS)), ''])
  with open(root / 'partitions.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(builders.NihFaces.COLUMNS)
    for image, (_, splits, five) in partitions.items():
      writer.writerow([image, *splits, *five.ravel().round(3)])
  return {image: (name, splits) for image, (name, splits, _) in partitions.items()}


@pytest.fixture(scope='module')
def nih_study(tmp_path_factory):
  """prepare -> train (tiny, 1 epoch, fold 1) -> extract (gradient) on the NIH-shaped folder."""
  root = tmp_path_factory.mktemp('nih')
  partitions = write_nih_folder(root / 'NIH-Faces')
  data, runs, table = root / 'data', root / 'runs', root / 'table.parquet'
  assert cli.main(['prepare', 'nih-faces', '--root', str(root / 'NIH-Faces'),
                   '--data-dir', str(data), '--workers', '0']) == 0
  assert cli.main(['train', '--data-dir', str(data), '--out', str(runs), '--fold', '1',
                   '--config', 'tiny', '--epochs', '1', '--batch-size', '4', '--quiet']) == 0
  assert cli.main(['extract', '--data-dir', str(data), '--runs', str(runs), '--folds', '1',
                   '--methods', 'gradient', '--batch-size', '8', '--out', str(table),
                   '--quiet']) == 0
  return root, partitions


def fold_one(partitions, split, label=None):
  return {image for image, (name, splits) in partitions.items()
          if splits[0] == split and label in (None, name)}


def test_training_and_evaluate_score_the_held_out_val_images(nih_study):
  root, partitions = nih_study
  metrics = json.loads((root / 'runs/fold-1/metrics.json').read_text())
  held_out = fold_one(partitions, 'val')
  assert metrics['roles'] == roles.REFERENCE.to_dict()
  assert metrics['test']['split'] == 'val' and metrics['test']['images'] == len(held_out)
  assert np.sum(metrics['test']['confusion']) == len(held_out)
  confusion = np.array(metrics['test']['confusion'])
  for name in FACES:   # every class, the control too, is held out
    assert confusion[paper.NIH_CLASSES.index(name)].sum() == HELD_OUT_PER_CLASS
  assert cli.main(['evaluate', '--runs', str(root / 'runs')]) == 0
  summary = json.loads((root / 'runs/summary.json').read_text())
  assert summary['held_out']['fold-1'] == {'split': 'val', 'images': len(held_out),
                                           'selection': 'best'}


def test_extract_marks_held_out_and_annotated_rows(nih_study):
  root, partitions = nih_study
  rows = pq.read_table(root / 'table.parquet').to_pylist()
  by_role = {role: {r['image_name'] for r in rows if r['role'] == role}
             for role in ('held_out', 'annotated')}
  assert by_role['held_out'] == fold_one(partitions, 'val')
  assert by_role['annotated'] == fold_one(partitions, 'test')
  assert len(rows) == len(by_role['held_out']) + len(by_role['annotated'])
  assert {r['split'] for r in rows if r['role'] == 'annotated'} == {'test'}


def test_stats_follow_the_paper_and_fail_loudly_without_control_rows(nih_study, capsys):
  root, partitions = nih_study
  out = root / 'stats'
  assert cli.main(['stats', '--table', str(root / 'table.parquet'), '--hpo', str(
      root / 'NIH-Faces/hpo'), '--out', str(out), '--notebook-grid']) == 0
  printed = capsys.readouterr().out
  results = stats.read_results(out)
  # The paper's five syndromes x eye, nose, mouth: 15 tests, m = 15, the control pooled
  # over fold 1's held-out Unaffected images.
  assert len(results.rq1) == 15 and {t.m for t in results.rq1} == {15}
  assert {t.syndrome for t in results.rq1} == set(paper.SYNDROMES)
  control = len(fold_one(partitions, 'val', paper.CONTROL))
  assert {t.n_control for t in results.rq1} == {control} and control > 0
  assert {t.n_syndrome for t in results.rq1} == {HELD_OUT_PER_CLASS}
  # RQ2 on exactly the annotated images of fold 1.
  assert results.rq2 and {c.fold for c in results.rq2} == {1}
  assert {c.n for c in results.rq2} == {len(fold_one(partitions, 'test'))}
  assert 'REPRODUCING ITS BUG' in printed and 'm = 15' in printed
  assert (out / 'rq1_grid_notebook_bug.csv').is_file()

  # A table of the annotated rows alone (no control): RQ1 cannot compute anything.
  table = pq.read_table(root / 'table.parquet')
  annotated = table.filter(np.array(table.column('role').to_pylist()) == 'annotated')
  pq.write_table(annotated, root / 'annotated.parquet')
  assert cli.main(['stats', '--table', str(root / 'annotated.parquet'),
                   '--out', str(root / 'no-control')]) == 1
  err = capsys.readouterr().err
  assert "RQ1 computed no test against the control 'Unaffected'" in err
  assert 'the table has no usable held_out rows (its roles: annotated' in err
  # Asked to test the annotated rows instead, the counts name the split and the missing control.
  with pytest.raises(stats.NothingComputed, match=r'annotated rows \(split test; fold 1: '
                     r'22q11DS 2, Angelman 2, KS 2, NS 2, Unaffected 0, WS 2\)'):
    results = stats.compute(stats.read_table(root / 'annotated.parquet'),
                            rq1_config=stats.Rq1Config(role='annotated'))
    stats.check_computed(results, stats.read_table(root / 'annotated.parquet'))
