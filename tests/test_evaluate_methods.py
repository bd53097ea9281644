"""evaluate-methods: rows equal to metrics computed by hand, the same table after a run
stopped part-way and resumed by a fresh process object, and a summary with intervals."""

import dataclasses
import pathlib

import flax.linen as nn
import jax
import numpy as np
import pyarrow.parquet as pq
import pytest

from gestaltxai import cli, extract, metrics, saliency
from gestaltxai.data.pipeline import FaceDataset, batch_dataset, plan_batches
from gestaltxai.extract.batches import RegionMaps
from gestaltxai.train.fold_models import LoadedModel
from gestaltxai.metrics import evaluation, summary
from gestaltxai.viz.report import ReportInputs, build_report

IMAGE_SIZE = 32
METHODS = ('gradient', 'region_occlusion')
METRICS = ('relevance_mass_accuracy', 'region_pointing_game', 'deletion', 'random_logit')
OPTIONS = {'deletion': {'steps': 3}}


class SmallCNN3(nn.Module):
  """conv -> ReLU -> conv -> ReLU -> global mean -> a 3-way head (the dataset's classes)."""

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(6, (3, 3), name='conv1')(x))
    h = nn.relu(nn.Conv(8, (3, 3), name='conv2')(h))
    return nn.Dense(3, name='head')(h.mean(axis=(1, 2)))


@dataclasses.dataclass(frozen=True)
class SmallModel:
  """A model source like a trained fold's: a small CNN at 32 px, its own per fold."""

  fold: int
  path: pathlib.Path = pathlib.Path('small-cnn')

  def load(self, dtype, classes, dataset):
    del dtype, dataset
    variables = SmallCNN3().init(jax.random.PRNGKey(self.fold),
                                 np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
    return LoadedModel(SmallCNN3(), variables, IMAGE_SIZE, (100.0, 110.0, 120.0),
                       tuple(classes))

  def fingerprint(self):
    return f'small-cnn-{self.fold}'


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('evaluate')
  assert cli.main(['prepare', 'synthetic', '--classes', 'unaffected', 'wide_eyes', 'short_nose',
                   '--per-class', '3', '--folds', '3', '--data-dir', str(root / 'data')]) == 0
  return FaceDataset.open(next((root / 'data').iterdir()))


def make_job(dataset, out):
  folds = (1, 2)
  return evaluation.Evaluation(
      dataset, out, {f: SmallModel(f) for f in folds},
      {f: dataset.indices(f, 'test') for f in folds},
      extract.method_specs(METHODS), evaluation.metric_specs(METRICS, OPTIONS),
      planted=dataset.metadata['trait_regions'], batch_size=2, shard_size=2,
      log=lambda _: None)


def read(path):
  return sorted(pq.read_table(path).to_pylist(),
                key=lambda r: (r['fold'], r['image_name'], r['method'], r['metric']))


def test_rows_equal_metrics_by_hand_and_a_resumed_run_the_same_table(dataset, tmp_path):
  full = make_job(dataset, tmp_path / 'full.parquet')
  full.run()
  full.assemble()
  rows = read(full.table)
  assert len(rows) == 6 * len(METHODS) * len(METRICS)
  # Stopped after two of the four shards; a fresh object (a new process) finishes the rest.
  resumed = make_job(dataset, tmp_path / 'resumed.parquet')
  resumed.run(stop_after=2)
  assert len(resumed.store.missing(resumed.shards)) == 2
  with pytest.raises(ValueError, match='shards are not done yet'):
    resumed.assemble()
  again = make_job(dataset, tmp_path / 'resumed.parquet')
  again.run()
  again.assemble()
  assert [{**r, 'value': None} for r in read(again.table)] == [
      {**r, 'value': None} for r in rows]
  np.testing.assert_allclose([r['value'] for r in read(again.table)],
                             [r['value'] for r in rows], rtol=1e-6)

  # Fold 1's images by hand: relevance mass in the planted region, deletion areas.
  source = SmallModel(1).load(None, dataset.classes, dataset)
  indices = dataset.indices(1, 'test')
  batch = RegionMaps(extract.REGION_SETS['reference'])(batch_dataset(
      dataset, plan_batches(indices, len(indices)), mean_bgr=source.mean_bgr,
      image_size=IMAGE_SIZE)[0])
  target = saliency.predict(source.model, source.variables, batch['image'])
  relevance = np.asarray(saliency.relevance('gradient', source.model, source.variables,
                                            batch['image'], target), np.float64)
  names = list(extract.REGION_SETS['reference'].names)
  by_key = {(r['image_name'], r['method'], r['metric']): r for r in rows if r['fold'] == 1}
  checked = 0
  for i, name in enumerate(batch['name']):
    region = dataset.metadata['trait_regions'][dataset.classes[batch['label'][i]]]
    row = by_key[(name, 'gradient', 'relevance_mass_accuracy')]
    if region is None:
      assert row['status'] == evaluation.NO_GROUND_TRUTH and np.isnan(row['value'])
      continue
    inside = batch['labels'][i] == names.index(region)
    # float32 sums of a 32 x 32 map against float64.
    np.testing.assert_allclose(row['value'], relevance[i][inside].sum() / relevance[i].sum(),
                               rtol=1e-5)
    checked += 1
  assert checked
  deleted = metrics.deletion(source.model, source.variables, batch['image'],
                             relevance.astype(np.float32), target, steps=3)
  for i, name in enumerate(batch['name']):
    np.testing.assert_allclose(by_key[(name, 'gradient', 'deletion')]['value'],
                               deleted.area[i], rtol=1e-5)

  # The summary: one row per method and metric, means of the ok rows, intervals around them.
  table = evaluation.read_evaluation(full.table)
  written = summary.read_summary(evaluation.summary_path(full.table))
  assert len(written) == len(METHODS) * len(METRICS)
  for row in written:
    chosen = ((table['method'] == row['method']) & (table['metric'] == row['metric'])
              & (table['status'] == 'ok'))
    np.testing.assert_allclose(row['mean'], table['value'][chosen].astype(float).mean())
    assert row['n_folds'] == 2 and row['ci_low'] <= row['mean'] <= row['ci_high']
  assert {r['rank'] for r in written if r['metric'] == 'deletion'} == {1, 2}

  # A study that is not the demo: its report gains the section from the evaluation.
  coefficients = extract.Extraction(dataset, tmp_path / 'coefficients.parquet', full.sources,
                                    full.fold_indices, extract.method_specs(['gradient']),
                                    batch_size=2, progress=False, log=lambda _: None)
  coefficients.assemble(coefficients.run())
  page, warnings = build_report(ReportInputs(table=coefficients.table, evaluation=full.table))
  assert not warnings and 'Which method to trust' in page
  assert all(metric in page for metric in METRICS)


def test_bad_metric_names_and_options_name_the_closest():
  with pytest.raises(ValueError, match="did you mean 'pointing_game'"):
    evaluation.metric_specs(['pointing_gam'])
  with pytest.raises(ValueError, match="did you mean 'steps'"):
    evaluation.metric_specs(['deletion'], {'deletion': {'step': 3}})
  with pytest.raises(ValueError, match='need a ground truth'):
    evaluation.metric_specs(['pointing_game'], ground_truth=False)
  assert 'pointing_game' not in [s.name for s in evaluation.metric_specs([], ground_truth=False)]


def test_the_command_names_a_misspelt_metric_option_in_one_line(tmp_path, capsys):
  assert cli.main(['evaluate-methods', '--data-dir', str(tmp_path / 'none'), '--runs',
                   str(tmp_path / 'runs'), '--out', str(tmp_path / 'e.parquet'), '--metrics',
                   'road', '--metric-options', '{"road": {"fraction": [0.5]}}']) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and "did you mean 'fractions'" in err, err


def test_bootstrap_interval_matches_a_loop():
  values = np.random.default_rng(4).random(12)
  mean, low, high = summary.bootstrap_interval(values)
  rng = np.random.default_rng(summary.SEED)
  draws = rng.integers(0, 12, (summary.RESAMPLES, 12))
  means = [values[d].mean() for d in draws]
  np.testing.assert_allclose([mean, low, high], [values.mean(), *np.percentile(means, [2.5, 97.5])])
