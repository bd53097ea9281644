"""RQ1 and RQ2 against scipy called directly, formulas written out, and planted data."""

import csv
import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from gestaltxai import regions, stats
from gestaltxai.cli import main

REGIONS = ('eye', 'nose', 'mouth')
CONTROL = 'Unaffected'


def write_table(path, rows, classes=None):
  """Rows (dicts) -> a coefficient table in the extraction layout (CSV, or Parquet by suffix)."""
  classes = classes or sorted({row['label'] for row in rows})
  coefficient_columns = sorted({k for row in rows for k in row if k.endswith(('_xai',
                                                                              '_xai_norm'))})
  header = ['image_name', 'fold', 'method', *coefficient_columns, 'label', 'predicted',
            *(f'p_{c}' for c in classes), 'status']
  records = []
  for row in rows:
    probabilities = {f'p_{c}': float(c == row['label']) for c in classes}
    records.append({'predicted': row['label'], 'status': 'ok', 'fold': 1, **probabilities,
                    **row})
  if str(path).endswith('.parquet'):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({name: [r.get(name, float('nan')) for r in records]
                             for name in header}), path)
    return path
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, header, restval='')
    writer.writeheader()
    for record in records:
      writer.writerow({k: '' if isinstance(v, float) and math.isnan(v) else v
                       for k, v in record.items()})
  return path


# Planted eye distributions: (class, sampler, n, the test the reference would choose).
PLANTED = (
    ('Equal', lambda rng, n: rng.normal(1.3, 0.2, n), 40, 't-test'),     # normal, same n
    ('Unequal', lambda rng, n: rng.normal(1.25, 0.2, n), 25, 'welch'),  # normal, other n
    ('Skewed', lambda rng, n: 0.6 + rng.lognormal(0.0, 0.9, n), 40, 'mwu'),
    ('Wide', lambda rng, n: rng.normal(1.0, 0.8, n), 40, 'mwu'),        # unequal variance
)


def planted_rows(seed=3):
  rng = np.random.default_rng(seed)
  rows = []
  for method, shift in (('gradient', 0.0), ('grad_cam', 0.5)):
    groups = [(CONTROL, lambda rng, n: rng.normal(1.0, 0.2, n), 40)] + [p[:3] for p in PLANTED]
    for label, sampler, n in groups:
      values = {'eye': sampler(rng, n) + shift, 'nose': rng.normal(2.0, 0.3, n),
                'mouth': rng.gamma(2.0, 1.0, n)}
      for i in range(n):
        rows.append({'image_name': f'{label}Slide{i}.png', 'fold': i % 5 + 1, 'method': method,
                     'label': label, **{f'{r}_xai': float(values[r][i]) for r in REGIONS}})
      # Images that failed extraction carry NaN and a reason: they must not count.
      rows.append({'image_name': f'{label}Slide999.png', 'method': method, 'label': label,
                   'status': 'no face found', **{f'{r}_xai': float('nan') for r in REGIONS}})
  return rows


def scipy_reference(control, syndrome):
  """The reference notebook's decision and test, written with scipy calls."""
  equal_var = sps.levene(control, syndrome).pvalue > 0.05      # scipy's default centre: median
  normal = [sps.shapiro(g).pvalue > 0.05 for g in (control, syndrome)]
  if equal_var and all(normal):
    name = 't-test' if len(control) == len(syndrome) else 'welch'
    result = sps.ttest_ind(control, syndrome, equal_var=name == 't-test')
  else:
    name = 'mwu'
    result = sps.mannwhitneyu(control, syndrome, use_continuity=True, alternative='two-sided')
  return name, equal_var, normal, result.statistic, result.pvalue


def pooled_cohen_d(a, b):
  squares = np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)
  return (a.mean() - b.mean()) / math.sqrt(squares / (len(a) + len(b) - 2))


@pytest.mark.parametrize('suffix', ['.csv', '.parquet'])
def test_rq1_equals_scipy_on_planted_distributions(tmp_path, suffix):
  rows = planted_rows()
  table = stats.read_table(write_table(tmp_path / f'table{suffix}', rows))
  tests, skipped = stats.rq1(table)
  assert skipped == []
  syndromes = [p[0] for p in PLANTED]
  assert len(tests) == 2 * len(syndromes) * len(REGIONS)
  for method in ('gradient', 'grad_cam'):
    mine = [t for t in tests if t.method == method]
    p_values = []
    for t in mine:
      pick = lambda label: np.array([r[f'{t.region}_xai'] for r in rows
                                     if r['method'] == method and r['label'] == label
                                     and r.get('status', 'ok') == 'ok'])
      control, syndrome = pick(CONTROL), pick(t.syndrome)
      name, equal_var, normal, statistic, p = scipy_reference(control, syndrome)
      assert (t.n_control, t.n_syndrome) == (len(control), len(syndrome))
      assert t.test == name
      assert (t.equal_var, t.normal_control, t.normal_syndrome) == (equal_var, *normal)
      np.testing.assert_allclose([t.statistic, t.p_value], [statistic, p], rtol=1e-12)
      np.testing.assert_allclose(t.cohen_d, pooled_cohen_d(control, syndrome), rtol=1e-12)
      np.testing.assert_allclose([t.mean_control, t.mean_syndrome],
                                 [control.mean(), syndrome.mean()], rtol=1e-12)
      p_values.append(p)
    # Bonferroni over the method's tests: p * m, capped at 1; significant below 0.001.
    expected = [min(1.0, p * len(p_values)) for p in p_values]
    np.testing.assert_allclose([t.p_bonferroni for t in mine], expected, rtol=1e-12)
    assert [t.significant for t in mine] == [p < 0.001 for p in expected]
  # The planted eye distributions lead to the planted choice of test.
  for label, _, _, planted in PLANTED:
    assert {t.test for t in tests if t.syndrome == label and t.region == 'eye'} == {planted}
  assert any(t.significant for t in tests) and not all(t.significant for t in tests)


def test_levene_centres_on_the_median():
  # Heavy tails: Levene's original (mean) and Brown-Forsythe's (median) disagree here.
  rng = np.random.default_rng(25)
  control, heavy = rng.normal(1.0, 0.2, 40), 1.0 + 0.12 * rng.standard_t(1.5, 40)
  by_median = sps.levene(control, heavy, center='median').pvalue > 0.05
  assert by_median != (sps.levene(control, heavy, center='mean').pvalue > 0.05)
  assert stats.compare_groups(control, heavy)['equal_var'] == by_median


def test_bonferroni_formula():
  p = np.array([0.5, 0.003, np.nan, 0.054, 0.0003])
  expected = [min(1.0, v * 4) for v in (0.5, 0.003)] + [np.nan] + [0.216, 0.0012]
  np.testing.assert_allclose(stats.bonferroni(p), expected, rtol=1e-15)


def test_summary_counts_and_ks_keeps_its_own_column():
  make = lambda method, syndrome, region, significant: stats.Rq1Test(
      method, CONTROL, syndrome, region, 5, 5, 0.0, 0.0, True, True, True, 't-test', 0.0, 0.0,
      0.0, 3, 0.0, significant)
  tests = [make('a', 'Angelman', 'eye', True), make('a', 'KS', 'eye', False),
           make('b', 'Angelman', 'eye', True), make('b', 'KS', 'eye', True),
           make('b', 'KS', 'nose', False)]
  summary = stats.summarize_rq1(tests)
  assert summary.header() == ['method', 'Angelman:eye', 'KS:eye', 'KS:nose', 'significant',
                              'tests']
  assert summary.rows() == [['a', 1, 0, '', 1, 2], ['b', 1, 1, 0, 2, 3],
                            ['all methods', 2, 1, 0, 3, 5]]
  regions_, syndromes, grid = summary.by_region()
  assert (regions_, syndromes) == (['eye', 'nose'], ['Angelman', 'KS'])
  np.testing.assert_array_equal(grid, [[2, 1], [0, 0]])   # KS: 1, not Angelman's 2
  # The notebook's grid, asked for by name: its KS column repeats Angelman's.
  _, _, copied = summary.by_region(notebook_bug=True)
  np.testing.assert_array_equal(copied, [[2, 2], [0, 0]])


def test_rq1_bad_inputs_are_listed_and_the_rest_computed(tmp_path):
  rng = np.random.default_rng(0)
  rows = []
  for label, n in ((CONTROL, 12), ('KS', 12), ('NS', 2)):
    for i in range(n):
      rows.append({'image_name': f'{label}{i}', 'method': 'gradient', 'label': label,
                   'eye_xai': rng.normal(), 'nose_xai': rng.normal(), 'mouth_xai': float('nan')})
  table = stats.read_table(write_table(tmp_path / 't.csv', rows))
  tests, skipped = stats.rq1(table)
  assert {(t.syndrome, t.region) for t in tests} == {('KS', 'eye'), ('KS', 'nose')}
  # Bonferroni counts only the tests that ran.
  assert all(t.p_bonferroni == pytest.approx(min(1, 2 * t.p_value)) for t in tests)
  reasons = {(s.group, s.region): s.reason for s in skipped}
  assert set(reasons) == {('KS', 'mouth'), ('NS', 'eye'), ('NS', 'nose'), ('NS', 'mouth')}
  assert 'all NaN' in reasons['KS', 'mouth']
  assert 'NS has 2 image(s)' in reasons['NS', 'eye'] and 'need 3' in reasons['NS', 'eye']

  tests, skipped = stats.rq1(table, stats.Rq1Config(control='Healthy'))
  assert tests == [] and len(skipped) == 3 * 3
  assert all("no control class 'Healthy'" in s.reason for s in skipped)


def test_read_table_errors_name_the_file(tmp_path):
  path = tmp_path / 'bad.csv'
  path.write_text('image_name,eye_xai\na,1.0\n')
  with pytest.raises(ValueError, match=r"bad\.csv: missing columns \['method', 'label'\]"):
    stats.read_table(path)
  with pytest.raises(FileNotFoundError, match='no coefficient table'):
    stats.read_table(tmp_path / 'absent.parquet')


def test_spearman_equals_scipy_with_fisher_interval():
  rng = np.random.default_rng(1)
  x = rng.normal(size=30)
  y = 0.5 * x + rng.normal(size=30)
  y[:6] = np.round(y[:6])  # a few ties
  r, low, high, p = stats.spearman(x, y)
  expected = sps.spearmanr(x, y)
  np.testing.assert_allclose([r, p], [expected.statistic, expected.pvalue], rtol=1e-12)
  # pingouin's compute_esci for r: tanh(atanh(r) -+ z_0.975 / sqrt(n - 3)), standard library.
  half = statistics.NormalDist().inv_cdf(0.975) / math.sqrt(len(x) - 3)
  np.testing.assert_allclose([low, high], [math.tanh(math.atanh(r) - half),
                                           math.tanh(math.atanh(r) + half)], rtol=1e-12)


KS_HEADER = ['image_num', 'image_name', 'Microcephaly', 'Highly arched eyebrow',
             'Sparse lateral eyebrow', 'Short columella', 'Macrotia', 'Widely spaced teeth',
             'Other']
NS_HEADER = ['image_num', 'image_name', 'Hypertelorism', 'Ptosis', 'Low-set ears',
             'High forehead', 'Webbed neck', 'Bulbous nose', 'Other']
CELLS = ('', '1X', '2X', '3X', ' ')


def write_hpo(directory, images_by_file, rng):
  """Per-syndrome CSVs in the reference's layout; returns {image: {term: cell}}."""
  directory.mkdir(exist_ok=True)
  cells = {}
  for file_name, (header, images) in images_by_file.items():
    with open(directory / file_name, 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(header)
      for number, image in enumerate(images):
        terms = {term: CELLS[rng.integers(len(CELLS))] for term in header[2:-1]}
        cells[image] = terms
        writer.writerow([number, image, *terms.values(), 'Epicanthus, open bite'])
  return cells


def hand_score(cells, region):
  """A region's HPO score from the cells, in exact fractions (1X = 1/3 ...)."""
  grouping = stats.hpo_region_grouping()
  share = {'1X': Fraction(1, 3), '2X': Fraction(2, 3), '3X': Fraction(1)}
  return float(sum(share.get(cell.strip(), 0) for term, cell in cells.items()
                   if term in grouping[region]))


def test_hpo_layout_and_region_scores(tmp_path):
  rng = np.random.default_rng(2)
  images = {'KS.csv': (KS_HEADER + ['Cupped ears'], [f'KSSlide{i}.png' for i in range(5)]),
            'NS.csv': (NS_HEADER, [f'NSSlide{i}.png' for i in range(4)])}
  header = images['KS.csv'][0]
  images['KS.csv'] = (header[:-2] + [header[-1], header[-2]], images['KS.csv'][1])
  cells = write_hpo(tmp_path / 'hpo', images, rng)
  hpo = stats.read_hpo(tmp_path / 'hpo')
  assert hpo.unknown_terms == (('KS.csv', 'Cupped ears'),)
  scores = hpo.region_scores()
  assert set(scores) == {'overall', 'hair', 'eye', 'nose', 'ears', 'mouth', 'chin', 'forehead'}
  for i, image in enumerate(hpo.images):
    for region, values in scores.items():
      assert values[i] == hand_score(cells[image], region), (image, region)

  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'WS.csv').write_text(
      'image_num,image_name,Ptosis,Other\n0,WSSlide1.png,4X,\n')
  with pytest.raises(ValueError, match=r"WS\.csv:2: column 'Ptosis' holds '4X'"):
    stats.read_hpo(tmp_path / 'bad')


def rq2_study(tmp_path, seed=4):
  """A table with folds and normalised coefficients that follow planted HPO scores."""
  rng = np.random.default_rng(seed)
  names = {'KS': [f'KSSlide{i}.png' for i in range(18)],
           'NS': [f'NSSlide{i}.png' for i in range(15)]}
  cells = write_hpo(tmp_path / 'hpo', {
      'KS.csv': (KS_HEADER, names['KS'] + ['KSSlide999.png']),   # 999 is not in the table
      'NS.csv': (NS_HEADER, names['NS'])}, rng)
  rows = []
  for method, noise in (('gradient', 0.3), ('occlusion', 3.0)):
    for label in ('KS', 'NS', CONTROL):
      for i, name in enumerate(names.get(label, [f'U{i}.png' for i in range(10)])):
        score = {r: hand_score(cells.get(name, {}), r) for r in ('eye', 'nose', 'forehead')}
        rows.append({'image_name': name, 'fold': i % 3 + 1, 'method': method, 'label': label,
                     'eye_xai': rng.random(),
                     **{f'{r}_xai_norm': score[r] + noise * rng.random() for r in score},
                     'mouth_xai_norm': float('nan')})
  return write_table(tmp_path / 'table.csv', rows), rows, cells


def test_rq2_equals_scipy_per_method_fold_and_region(tmp_path):
  path, rows, cells = rq2_study(tmp_path)
  table, hpo = stats.read_table(path), stats.read_hpo(tmp_path / 'hpo')
  correlations, skipped = stats.rq2(table, hpo)
  found = {(c.method, c.fold, c.region): c for c in correlations}
  for method in ('gradient', 'occlusion'):
    for fold in (1, 2, 3):
      for region in ('eye', 'nose', 'forehead'):
        chosen = [r for r in rows if r['method'] == method and r['fold'] == fold
                  and r['image_name'] in cells]
        x = [r[f'{region}_xai_norm'] for r in chosen]
        y = [hand_score(cells[r['image_name']], region) for r in chosen]
        if len(set(y)) < 2:
          assert (method, fold, region) not in found
          continue
        c = found[method, fold, region]
        expected = sps.spearmanr(x, y)
        assert c.n == len(x)
        np.testing.assert_allclose([c.r, c.p_value], [expected.statistic, expected.pvalue],
                                   rtol=1e-12)
  summary = {(s.method, s.region): s for s in stats.summarize_rq2(correlations)}
  for (method, region), s in summary.items():
    r = [c.r for c in correlations if (c.method, c.region) == (method, region)]
    assert s.folds == len(r)
    np.testing.assert_allclose([s.r_mean, s.r_std], [statistics.mean(r), statistics.stdev(r)],
                               rtol=1e-12)
  assert summary['gradient', 'eye'].r_mean > 0.5   # the planted agreement is found
  reasons = [s.reason for s in skipped]
  assert any('1 annotated image(s) not in' in r and 'KSSlide999.png' in r for r in reasons)
  assert any('no overall_xai_norm column' in r for r in reasons)
  assert any(s.region == 'mouth' and "0 annotated image(s)" in s.reason for s in skipped)


def test_stats_command_writes_csvs_and_lists_skipped(tmp_path, capsys):
  path, _, _ = rq2_study(tmp_path)
  out = tmp_path / 'out'
  assert main(['stats', '--table', str(path), '--hpo', str(tmp_path / 'hpo'),
               '--out', str(out)]) == 0
  printed = capsys.readouterr()
  assert 'RQ1:' in printed.out and 'RQ2: Spearman r' in printed.out
  assert 'KSSlide999.png' in printed.err
  with open(out / 'rq1.csv') as f:
    header = next(csv.reader(f))
  assert header == ['method', 'control', 'syndrome', 'region', 'n_control', 'n_syndrome',
                    'mean_control', 'mean_syndrome', 'equal_var', 'normal_control',
                    'normal_syndrome', 'test', 'statistic', 'p_value', 'p_bonferroni', 'm',
                    'cohen_d', 'significant']
  again = stats.read_results(out)
  table = stats.read_table(path)
  fresh = stats.compute(table, stats.read_hpo(tmp_path / 'hpo'))
  assert again.rq1 == fresh.rq1 and again.rq2 == fresh.rq2 and again.skipped == fresh.skipped
  for name in ('rq1_summary.csv', 'rq2.csv', 'rq2_summary.csv', 'skipped.csv'):
    assert (out / name).is_file()

  # A control that is no class of the table is refused before anything is written
  # (gestaltxai.provenance's tests check the other options).
  assert main(['stats', '--table', str(path), '--hpo', str(tmp_path / 'hpo'), '--control', 'X',
               '--out', str(tmp_path / 'no-control')]) == 1
  assert "--control 'X' is not a class of" in capsys.readouterr().err
  assert not (tmp_path / 'no-control').exists()


def test_hpo_region_map_keeps_the_reference_boxes():
  from gestaltxai.data.synthetic import shape_model
  parsing = regions.landmark_parsing(shape_model()['mean'], 224).copy()
  parsing[:30][parsing[:30] == 0] = regions.LAPA['hair']   # hair above the face
  reference = regions.reference_region_map(parsing)
  hpo = regions.hpo_region_map(parsing)
  np.testing.assert_array_equal(regions.hpo_region_map(parsing, reference), hpo)
  boxes = reference > 0
  np.testing.assert_array_equal(hpo[boxes], reference[boxes])
  label = {name: i for i, name in enumerate(regions.HPO_REGIONS)}
  rows = np.arange(224)[:, None].repeat(224, 1)
  brow_top = rows[np.isin(parsing, (regions.LAPA['left_eyebrow'],
                                    regions.LAPA['right_eyebrow']))].min()
  lip_bottom = rows[np.isin(parsing, (7, 8, 9))].max()
  skin = (parsing == regions.LAPA['skin']) & ~boxes
  np.testing.assert_array_equal(hpo == label['forehead'], skin & (rows < brow_top))
  np.testing.assert_array_equal(hpo == label['chin'], skin & (rows > lip_bottom))
  np.testing.assert_array_equal(hpo == label['hair'], (parsing == regions.LAPA['hair']) & ~boxes)
  assert all((hpo == i).any() for i in range(1, len(regions.HPO_REGIONS)))
