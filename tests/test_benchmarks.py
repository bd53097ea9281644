"""The benchmark suite at tiny size, so no benchmark rots; the tables it regenerates."""

import json

import numpy as np
import pytest

from benchmarks import __main__ as suite
from benchmarks import extract_cost, pass_size, records, tables, xla_options

SMOKE_METHODS = ('gradient', 'integrated_gradients', 'occlusion')


def test_suite_at_tiny_size_writes_records_and_tables(tmp_path):
  log = tmp_path / 'results.jsonl'
  results = tmp_path / 'RESULTS.md'
  results.write_text('# Results\n\nprose kept\n\n<!-- table benchmark=method_cost size=tiny -->\n'
                     'stale\n<!-- end table -->\n\n<!-- table benchmark=matmul_peak -->\n'
                     '<!-- end table -->\n')
  assert suite.main(['--size', 'tiny', '--stages', 'peak', 'method_cost', '--batch-sizes', '2',
                     '--repeats', '1', '--methods', *SMOKE_METHODS, '--records', str(log),
                     '--results', str(results)]) == 0
  written = list(records.read_records(log))
  costs = {r['name']: r for r in written if r['benchmark'] == 'method_cost'}
  assert sorted(costs) == sorted(SMOKE_METHODS)
  for record in costs.values():
    assert record['images_per_s'] > 0 and record['flops_per_image'] > 0
    assert record['temp_bytes'] >= 0 and record['time_over_passes'] > 0
    assert record['versions']['jax'] and record['command'] and record['date']
  # 20 steps cost 20 gradients of FLOPs (one pass counted), not one loop body.
  ratio = costs['integrated_gradients']['flops_per_image'] / costs['gradient']['flops_per_image']
  assert 19 <= ratio <= 21, ratio
  text = results.read_text()
  assert 'prose kept' in text and 'stale' not in text
  assert '| integrated_gradients | 2 |' in text and '| float32 |' in text
  assert tables.main(['--records', str(log), '--results', str(results), '--check']) == 0


def test_pass_size_and_xla_options_at_tiny_size(tmp_path):
  log = tmp_path / 'results.jsonl'
  pass_size.main(['--size', 'tiny', '--images-per-pass', '1', '2', '--batch', '2',
                  '--repeats', '1', '--records', str(log)])
  xla_options.main(['--size', 'tiny', '--options', 'bfloat16', '--repeats', '1',
                    '--records', str(log)])
  written = list(records.read_records(log))
  sizes = sorted((r['name'], r['images_per_pass']) for r in written
                 if r['benchmark'] == 'pass_size')
  # A pass smaller than the batch cannot hold it: IG only at 2 images per pass.
  assert sizes == [('gradient', 1), ('gradient', 2), ('integrated_gradients', 2)]
  options = {r['name']: r for r in written if r['benchmark'] == 'xla_options'}
  assert list(options) == ['bfloat16'] and options['bfloat16']['dtype'] == 'bfloat16'
  assert all(r['speedup'] > 0 for r in options.values())


def record(name, date, command, **fields):
  return {'benchmark': 'method_cost', 'name': name, 'device': 'cpu: test', 'dtype': 'float32',
          'batch_size': 4, 'images_per_s': 2.0, 'ms_per_image': 500.0, 'date': date,
          'command': command, 'versions': {'jax': '0'}, 'passes': [1, 1], **fields}


def test_tables_take_the_newest_matching_run_and_flag_stale_text(tmp_path):
  log = tmp_path / 'results.jsonl'
  old = record('gradient', '2026-01-01', 'old run', size='full', speedup_vs_captum=0.5)
  new = [record('gradient', '2026-02-01', 'new run', size='full', speedup_vs_captum=1.5),
         record('smoothgrad', '2026-02-01', 'new run', size='full')]
  other = record('gradient', '2026-03-01', 'tiny run', size='tiny')
  log.write_text(''.join(json.dumps(r) + '\n' for r in [old, *new, other]))
  results = tmp_path / 'RESULTS.md'
  results.write_text('<!-- table benchmark=method_cost size=full device~=cpu -->\n'
                     '<!-- end table -->\n')
  assert tables.main(['--records', str(log), '--results', str(results), '--check']) == 1
  tables.main(['--records', str(log), '--results', str(results)])
  rows = [line for line in results.read_text().splitlines() if line.startswith('| ')]
  assert [row.split(' | ')[0] for row in rows] == ['| name', '| gradient', '| smoothgrad']
  assert '1.50' in rows[1] and '0.50' not in results.read_text()
  assert '`new run`' in results.read_text()


def test_extraction_benchmark_at_tiny_size(tmp_path):
  log = tmp_path / 'results.jsonl'
  extract_cost.main(['--size', 'tiny', '--images', '25', '--batch-size', '10', '--methods',
                     'gradient', 'grad_cam', '--repeats', '1', '--records', str(log)])
  written = list(records.read_records(log))
  (run,) = [r for r in written if r['benchmark'] == 'extract']
  # 25 images (5 per class, one per fold) in shards of 10: the first compiles, left out.
  assert run['methods'] == ['gradient', 'grad_cam'] and run['images'] == 15
  assert run['end_to_end_images_per_s'] > 0 and run['compute_images_per_s'] > 0
  assert run['busy'] > 0
  rates = {r['name'] for r in written if r['benchmark'] == 'extract_method'}
  assert rates == {'predict', 'gradient', 'grad_cam'}


def test_seed_table_means_spreads_and_pooled_wilson_interval():
  from scipy import stats
  from benchmarks import demo_seeds
  # Wilson's interval as scipy computes it, for a share and for the pooled counts.
  for hits, total in ((7, 20), (0, 9), (31, 31)):
    expected = stats.binomtest(hits, total).proportion_ci(0.95, method='wilson')
    assert demo_seeds.wilson_interval(hits, total) == pytest.approx(
        (expected.low, expected.high), abs=1e-12)

  def method(classes, images, scored, deletion):
    return {'recovery_classes': classes, 'recovery_images': images, 'chance_classes': 1 / 3,
            'chance_images': 1 / 3, 'scored_images': scored, 'deletion_auc': deletion,
            'insertion_auc': 0.9, 'randomisation_similarity': 0.1}

  summaries = [{'test_accuracy': a,
                'methods': {'a': method(c, i, n, d), 'b': method(0.5, 0.5, n, 0.3)}}
               for a, c, i, n, d in ((0.8, 1.0, 0.5, 10, 0.1), (0.9, 0.5, 0.75, 20, 0.2),
                                     (0.7, 0.75, 0.6, 30, 0.4))]
  table = demo_seeds.seed_table(summaries)
  row = next(line for line in table.splitlines() if line.startswith('| `a`'))
  cells = [cell.strip() for cell in row.strip('|').split('|')]
  assert cells[1] == f'0.75 ± {np.std([1.0, 0.5, 0.75], ddof=1):.2f}'
  # Mean share 0.6167 of a mean 20 images: Wilson's interval at 12.33 of 20, by its formula.
  share, n, z = np.mean([0.5, 0.75, 0.6]), 20, stats.norm.ppf(0.975)
  centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
  half = z / (1 + z**2 / n) * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
  assert cells[-1] == f'{centre - half:.2f} to {centre + half:.2f} (n = 20)'
  assert 'test accuracy 0.80 ± 0.10' in table
  # 'a' deletes best in two seeds of three: no ranking is claimed; it recovers classes
  # better than 'b' in every seed.
  assert '- deletion: no method first in every seed' in table
  assert '- recovery: classes: `a` first in every seed' in table
