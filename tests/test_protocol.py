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
from gestaltxai.data import schema, sources, synthetic
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
    return ['test'] * sources.NIH_FOLDS
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
    writer.writerow(sources.NihFaces.COLUMNS)
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


# Cheap checks of the pieces, each against something written out here.

def write_rows(path, rows):
  """Rows (dicts with the same keys) -> a CSV coefficient table."""
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return path


def role_table(tmp_path, rng):
  """Held-out rows of every class (two methods) plus annotated rows that must take no part
  in RQ1: if they did, the counts would change."""
  rows = []
  for method in ('gradient', 'grad_cam'):
    for label in (*FACES, 'Down'):
      for i in range(6):
        for role, split in (('held_out', 'val'), ('annotated', 'test')):
          if role == 'annotated' and (label == paper.CONTROL or i >= 2):
            continue
          rows.append({'image_name': f'{label}Slide{i}{split}.png', 'fold': 1, 'split': split,
                       'role': role, 'method': method, 'eye_xai': rng.normal(),
                       'nose_xai': rng.normal(), 'mouth_xai': rng.normal(), 'label': label,
                       **{f'p_{c}': 1.0 / len(paper.NIH_CLASSES) for c in paper.NIH_CLASSES},
                       'status': 'ok'})
  return stats.read_table(write_rows(tmp_path / 'roles.csv', rows))


def test_rq1_reads_held_out_rows_and_the_paper_syndromes_on_nih_classes(tmp_path):
  table = role_table(tmp_path, np.random.default_rng(1))
  tests, _ = stats.rq1(table)
  assert {t.syndrome for t in tests} == set(paper.SYNDROMES)     # not Down, on NIH classes
  assert {(t.n_control, t.n_syndrome, t.m) for t in tests} == {(6, 6, 15)}
  everything, _ = stats.rq1(table, stats.Rq1Config(syndromes=('all',), methods=('grad_cam',)))
  assert {t.syndrome for t in everything} == set(FACES) - {paper.CONTROL} | {'Down'}
  assert {t.method for t in everything} == {'grad_cam'} and {t.m for t in everything} == {18}
  # Another class list: every class but the control.
  assert stats.default_syndromes(['a', 'Unaffected', 'b'], 'Unaffected') == ['a', 'b']
  with pytest.raises(ValueError, match=r'--methods: occlusion not in .*roles\.csv \(its '
                     r'methods: gradient, grad_cam\)'):
    stats.rq1(table, stats.Rq1Config(methods=('occlusion',)))


def test_a_table_without_a_role_column_plays_every_role(tmp_path):
  rows = [{'image_name': f'{label}{i}', 'fold': 1, 'method': 'gradient', 'label': label,
           'eye_xai': float(i + (label == 'KS')), 'status': 'ok'}
          for label in (paper.CONTROL, 'KS') for i in range(4)]
  table = stats.read_table(write_rows(tmp_path / 'old.csv', rows))
  assert table.in_role('held_out').all() and table.in_role('annotated').all()
  assert roles.has_role('held_out+annotated', 'annotated')
  assert not roles.has_role('held_out', 'annotated') and roles.has_role('all', 'annotated')


def test_reference_hpo_scale_sums_the_notebooks_float32_values(tmp_path):
  """1X + 2X is 0.999 in the notebook, below 3X; exact thirds tie them, and Spearman's r
  follows the ranks (scipy on hand-made scores)."""
  (tmp_path / 'hpo').mkdir()
  cells = [('1X', '2X'), ('3X', ''), ('2X', ''), ('', '1X'), ('3X', '3X')]
  with open(tmp_path / 'hpo' / 'NS.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['image_num', 'image_name', 'Hypertelorism', 'Ptosis', 'Other'])
    for i, (a, b) in enumerate(cells):
      writer.writerow([i, f'NSSlide{i}.png', a, b, ''])
  hpo = stats.read_hpo(tmp_path / 'hpo')
  share32 = {'': np.float32(0), '1X': np.float32(0.333), '2X': np.float32(0.666),
             '3X': np.float32(1.0)}
  notebook = [float(share32[a] + share32[b]) for a, b in cells]   # float32 + float32
  exact = [{'': 0, '1X': 1, '2X': 2, '3X': 3}[a] / 3 + {'': 0, '1X': 1, '2X': 2, '3X': 3}[b] / 3
           for a, b in cells]
  assert hpo.region_scores('reference')['eye'].tolist() == notebook
  np.testing.assert_allclose(hpo.region_scores()['eye'], exact, rtol=1e-15)
  assert notebook[0] < notebook[1] and exact[0] == exact[1]
  coefficients = [0.5, 0.4, 0.3, 0.2, 0.9]
  rows = [{'image_name': f'NSSlide{i}.png', 'fold': 1, 'role': 'annotated', 'method': 'gradient',
           'label': 'NS', 'eye_xai_norm': c, 'status': 'ok'} for i, c in enumerate(coefficients)]
  table = stats.read_table(write_rows(tmp_path / 't.csv', rows))
  for scale, scores in (('exact', exact), ('reference', notebook)):
    correlations, _ = stats.rq2(table, hpo, stats.Rq2Config(hpo_scale=scale))
    eye = next(c for c in correlations if c.region == 'eye')
    assert eye.r == pytest.approx(spearman_r(coefficients, scores), rel=1e-12)
  with pytest.raises(ValueError, match="HPO scale must be one of"):
    hpo.region_scores('thirds')


def spearman_r(x, y):
  from scipy import stats as sps
  return sps.spearmanr(x, y).statistic


def test_the_kept_epoch_is_the_best_on_the_select_split_or_the_last():
  from gestaltxai.train import TrainConfig
  from gestaltxai.train.loop import chosen_epoch
  history = [{'epoch': e, 'val_accuracy': a} for e, a in ((1, 0.5), (2, 0.7), (3, 0.7), (4, 0.6))]
  assert chosen_epoch(history, 'best') == 2 and chosen_epoch(history, 'last') == 4
  assert chosen_epoch(history, 'inner') == 2
  with pytest.raises(ValueError, match=r"selection must be one of \('best', 'inner', 'last'\)"):
    TrainConfig(selection='val')


def test_the_inner_split_sets_aside_a_fifth_of_each_class():
  from gestaltxai.train.loop import inner_split
  labels = np.repeat([0, 1, 2, 3], [10, 5, 1, 7])        # record index -> class
  train = np.flatnonzero(np.arange(len(labels)) % 4 != 3)  # what the fold trains on
  kept, select = inner_split(train, labels, seed=3)
  assert set(kept) | set(select) == set(train) and not set(kept) & set(select)
  for label in range(4):
    members = [i for i in train if labels[i] == label]
    chosen = [i for i in select if labels[i] == label]
    expected = 0 if len(members) < 2 else max(1, round(0.2 * len(members)))
    assert len(chosen) == expected, label
  again, _ = inner_split(train, labels, seed=3)
  assert again.tolist() == kept.tolist()


def test_datasets_record_their_split_roles():
  assert sources.NihFaces.SPLIT_ROLES == roles.REFERENCE
  assert sources.SyntheticFaces.SPLIT_ROLES == sources.FolderFaces.SPLIT_ROLES == roles.CLEAN
  assert roles.REFERENCE.held_out == roles.REFERENCE.select == 'val'
  assert roles.CLEAN.held_out == 'test' and roles.CLEAN.select == 'val'
  # Datasets prepared before the roles were recorded: their builder's.
  assert schema.split_roles({'build': {'builder': 'nih_faces'}}) == roles.REFERENCE
  assert schema.split_roles({'build': {'builder': 'synthetic_faces'}}) == roles.CLEAN
  recorded = {'split_roles': roles.REFERENCE.to_dict(), 'build': {'builder': 'folder_faces'}}
  assert schema.split_roles(recorded) == roles.REFERENCE


def test_the_notebook_grid_is_shown_only_with_angelman_and_ks(tmp_path, capsys):
  role_table(tmp_path, np.random.default_rng(2))
  assert cli.main(['stats', '--table', str(tmp_path / 'roles.csv'), '--out', str(tmp_path / 'a'),
                   '--notebook-grid', '--syndromes', 'NS', 'WS']) == 0
  assert 'lack one of them, so it is not shown' in capsys.readouterr().out
  assert not (tmp_path / 'a' / 'rq1_grid_notebook_bug.csv').exists()
  assert cli.main(['stats', '--table', str(tmp_path / 'roles.csv'), '--out', str(tmp_path / 'b'),
                   '--notebook-grid', '--methods', 'gradient']) == 0
  with open(tmp_path / 'b' / 'rq1_grid_notebook_bug.csv') as f:
    grid = list(csv.reader(f))
  ks, angelman = grid[0].index('KS'), grid[0].index('Angelman')
  assert all(row[ks] == row[angelman] for row in grid[1:])
