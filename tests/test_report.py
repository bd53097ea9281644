"""Figures and the HTML report: well-formed, self-contained, every figure present and readable."""

import base64
import html.parser
import io
import json

import numpy as np
import pytest
from PIL import Image

from gestaltxai import viz
from gestaltxai.cli import main
from gestaltxai.data import synthetic
from tests.test_stats import CONTROL, KS_HEADER, NS_HEADER, write_hpo, write_table

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
#: Study classes and the synthetic trait that stands in for each (a planted region).
TRAITS = {'22q11DS': 'long_philtrum', 'Angelman': 'wide_mouth', 'KS': 'wide_eyes',
          'NS': 'short_nose', CONTROL: 'unaffected'}
METHODS = ('gradient', 'integrated_gradients', 'grad_cam')
FOLDS = 3
MAP_SIZE = 112
EXAMPLES = ('KS', 'NS', CONTROL)


def _blob(size, centre, sigma):
  rows, cols = np.mgrid[:size, :size]
  return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma ** 2))


def _relevance(rng, region_map, trait_region, method):
  """A plausible relevance map: face-wide mass plus a blob on the planted region."""
  size = region_map.shape[0]
  ids = {'eye': 1, 'nose': 2, 'mouth': 3}
  face = _blob(size, (size * 0.55, size / 2), size * 0.22)
  if trait_region:
    centre = np.argwhere(region_map == ids[trait_region]).mean(0)
    face = face + 1.5 * _blob(size, centre, size * 0.06)
  if method == 'grad_cam':
    return face.astype(np.float32)
  return (face * rng.gamma(1.0, 1.0, face.shape)).astype(np.float32)


def write_study(directory, seed=0):
  """Every input the report reads, as the other commands write them; returns their paths."""
  rng = np.random.default_rng(seed)
  directory.mkdir(parents=True, exist_ok=True)
  classes = list(TRAITS)
  faces = {c: [synthetic.synthetic_face(seed, TRAITS[c], i) for i in range(3)] for c in classes}
  shrink = lambda a: a[::224 // MAP_SIZE, ::224 // MAP_SIZE]
  region_maps = {c: shrink(np.asarray(faces[c][0].parsing)) for c in classes}
  from gestaltxai.regions import reference_region_map
  region_maps = {c: reference_region_map(m) for c, m in region_maps.items()}

  rows = []
  for method_index, method in enumerate(METHODS):
    for c in classes:
      region = synthetic.TRAIT_REGIONS[TRAITS[c]]
      for i in range(24 if c == CONTROL else 14 + 2 * classes.index(c)):
        raw = {r: rng.lognormal(0.0, 0.3) * (1.0 + 0.2 * method_index) for r in
               ('eye', 'nose', 'mouth')}
        if region:
          raw[region] *= 1.6
        rows.append({'image_name': f'{c}Slide{i}.png', 'fold': i % FOLDS + 1, 'method': method,
                     'label': c, 'predicted': c if rng.random() < 0.7 else CONTROL,
                     **{f'{r}_xai': v for r, v in raw.items()},
                     **{f'{r}_xai_norm': v / 4 + 0.1 * rng.random() for r, v in raw.items()}})
  rows.append({'image_name': 'KSSlide99.png', 'fold': 1, 'method': METHODS[0], 'label': 'KS',
               'status': 'no face found', 'eye_xai': float('nan'), 'nose_xai': float('nan'),
               'mouth_xai': float('nan')})
  table = write_table(directory / 'coefficients.parquet', rows, classes)

  maps = {'classes': np.array(classes),
          'mean_image': np.stack([shrink(np.mean([f.image for f in faces[c]], 0)).astype(np.uint8)
                                  for c in classes])}
  for method in METHODS:
    maps[f'class_mean/{method}'] = np.stack([
        _relevance(rng, region_maps[c], synthetic.TRAIT_REGIONS[TRAITS[c]], method)
        for c in classes])
    maps[f'examples/{method}'] = np.stack([
        _relevance(rng, region_maps[c], synthetic.TRAIT_REGIONS[TRAITS[c]], method)
        for c in EXAMPLES])
  maps['examples/names'] = np.array([f'{c}Slide0.png' for c in EXAMPLES])
  maps['examples/images'] = np.stack([shrink(faces[c][0].image) for c in EXAMPLES])
  np.savez(directory / 'coefficients.maps.npz', **maps)
  (directory / 'coefficients.json').write_text(json.dumps({
      'methods': {m: {} for m in METHODS}, 'checkpoints': ['RUNS/fold-1/best'],
      'dataset': {'fingerprint': 'abc123'}, 'device': 'cpu', 'images_per_s': 12.5,
      'command': 'gestaltxai extract --out coefficients.parquet'}))

  runs = directory / 'runs'
  for fold in range(1, FOLDS + 1):
    epochs = [{'epoch': e, 'train_loss': 2.0 / e + 0.1 * fold, 'train_accuracy': 1 - 0.8 / e,
               'val_loss': 2.2 / e + 0.2 + 0.1 * fold,
               'val_accuracy': 0.85 - 0.6 / e - 0.03 * fold} for e in range(1, 9)]
    confusion = (rng.integers(0, 3, (len(classes), len(classes)))
                 + 8 * np.eye(len(classes), dtype=int))
    (runs / f'fold-{fold}').mkdir(parents=True)
    (runs / f'fold-{fold}' / 'metrics.json').write_text(json.dumps({
        'config': {'name': 'tiny'}, 'epochs': epochs, 'best_epoch': 7,
        'test': {'accuracy': 0.7 + 0.02 * fold, 'macro_f1': 0.65, 'weighted_f1': 0.69,
                 'confusion': confusion.tolist()}}))
  (runs / 'summary.json').write_text(json.dumps({'accuracy': {'mean': 0.74, 'std': 0.02}}))

  bench = directory / 'results.jsonl'
  bench.write_text(''.join(json.dumps(
      {'benchmark': 'method_cost', 'name': m, 'device': 'cpu: test (2 cores)', 'dtype': 'float32',
       'batch_size': 4, 'images_per_s': s, 'ms_per_image': 1000 / s, 'passes': p,
       'date': '2026-11-24'}) + '\n' for m, s, p in zip(METHODS, (30.0, 1.6, 41.0), (2, 40, 1))))

  write_hpo(directory / 'hpo', {
      'KS.csv': (KS_HEADER, [f'KSSlide{i}.png' for i in range(18)] + ['KSSlide500.png']),
      'NS.csv': (NS_HEADER, [f'NSSlide{i}.png' for i in range(20)])}, rng)
  return {'table': table, 'runs': runs, 'bench': bench, 'hpo': directory / 'hpo'}


class StrictParser(html.parser.HTMLParser):
  """Collects ids and images, and fails on any element closed out of order."""

  VOID = {'meta', 'img', 'br', 'hr', 'link', 'input', 'col', 'source'}

  def __init__(self):
    super().__init__()
    self.stack, self.ids, self.images, self.links, self.errors = [], set(), {}, [], []
    self.figure = None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if 'id' in attrs:
      assert attrs['id'] not in self.ids, f'duplicate id {attrs["id"]}'
      self.ids.add(attrs['id'])
    if tag == 'figure':
      self.figure = attrs['id']
    if tag == 'img':
      self.images[self.figure] = attrs['src']
    for key in ('src', 'href'):
      if key in attrs:
        self.links.append(attrs[key])
    if tag not in self.VOID:
      self.stack.append(tag)

  def handle_endtag(self, tag):
    if not self.stack or self.stack[-1] != tag:
      self.errors.append(f'</{tag}> closes {self.stack[-1:]}')
    else:
      self.stack.pop()


def parse(path):
  parser = StrictParser()
  parser.feed(path.read_text(encoding='utf-8'))
  parser.close()
  assert parser.errors == [] and parser.stack == []
  return parser


def decode_png(src):
  prefix = 'data:image/png;base64,'
  assert src.startswith(prefix)
  with Image.open(io.BytesIO(base64.b64decode(src[len(prefix):]))) as image:
    image.load()
    return image.size


def test_report_is_valid_self_contained_html_with_every_figure(tmp_path, capsys):
  paths = write_study(tmp_path / 'study')
  out = tmp_path / 'report.html'
  assert main(['report', '--table', str(paths['table']), '--out', str(out), '--runs',
               str(paths['runs']), '--hpo', str(paths['hpo']), '--bench', str(paths['bench'])]) == 0
  assert 'wrote' in capsys.readouterr().out
  page = parse(out)
  assert {'data', 'training', 'rq1', 'rq2', 'methods', 'examples', 'cost',
          'provenance'} <= page.ids
  expected = {'fig-training-curves', 'fig-confusion', 'fig-rq1-effects', 'fig-region-faces-1',
              'fig-rq2', 'fig-examples-1', 'fig-method-cost'}
  for method in METHODS:
    expected |= {f'fig-method-{method.replace("_", "-")}-class-mean',
                 f'fig-method-{method.replace("_", "-")}-distributions'}
  assert set(page.images) == expected
  for src in page.images.values():
    width, height = decode_png(src)
    assert width > 100 and height > 100
  # Nothing outside the page: images are data URIs, links are anchors.
  assert all(link.startswith(('data:', '#')) for link in page.links)
  text = out.read_text()
  assert 'abc123' in text                    # provenance as given
  assert 'KSSlide500.png' in text            # an annotated image missing from the table
  assert "KS here is KS's own" in text or 'KS here is KS&#39;s own' in text


def test_report_from_a_stats_folder_without_maps_runs_or_records(tmp_path, capsys):
  from gestaltxai.data import builders
  paths = write_study(tmp_path / 'study')
  (tmp_path / 'study' / 'coefficients.maps.npz').unlink()
  data = builders.build(builders.SyntheticFaces(
      classes=('unaffected', 'short_nose'), per_class=3, num_folds=3,
      data_dir=str(tmp_path / 'data'), file_format='array_record', progress=False))
  assert main(['stats', '--table', str(paths['table']), '--out', str(tmp_path / 'stats'),
               '--alpha', '0.01']) == 0
  out = tmp_path / 'report.html'
  # A dataset of other classes is not the table's (tests/test_provenance.py: the section
  # of the table's own dataset).
  capsys.readouterr()
  assert main(['report', '--table', str(paths['table']), '--out', str(out), '--stats',
               str(tmp_path / 'stats'), '--data-dir', str(data)]) == 1
  assert 'has classes' in capsys.readouterr().err
  assert main(['report', '--table', str(paths['table']), '--out', str(out), '--stats',
               str(tmp_path / 'stats')]) == 0
  page = parse(out)
  assert 'fig-rq1-effects' in page.images and 'fig-examples-1' not in page.images
  text = out.read_text()
  for missing in ('No training runs given', 'No HPO annotations given', 'No TABLE.maps.npz',
                  'No benchmark records given'):
    assert missing in text
  assert 'p &lt; 0.01' in text                 # the stats folder's own settings


def test_to_display_inverts_the_model_input():
  rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  model_input = rgb[..., ::-1].astype(np.float32) - np.float32(VGGFACE2_MEAN_BGR)
  np.testing.assert_array_equal(viz.to_display(model_input, VGGFACE2_MEAN_BGR), rgb)


def test_overlay_blends_and_shares_ranges():
  image = np.full((4, 4, 3), 200, np.uint8)
  relevance = np.linspace(0, 1, 16).reshape(4, 4)
  np.testing.assert_allclose(viz.overlay(image, relevance, alpha=0.0), 200 / 255)
  from matplotlib import colormaps
  np.testing.assert_allclose(viz.overlay(image, relevance, alpha=1.0, cmap='viridis', vmin=0,
                                         vmax=2), colormaps['viridis'](relevance / 2)[..., :3])
  with pytest.raises(ValueError, match='does not match'):
    viz.overlay(image, relevance[:2])
  # scale='method': one range over both images' maps; scale='map': each map its own.
  maps = {'m': np.stack([relevance, 4 * relevance])}
  low, high = viz.robust_range(maps['m'])
  for scale, ranges in (('method', [(low, high)] * 2),
                        ('map', [viz.robust_range(relevance), viz.robust_range(4 * relevance)])):
    fig = viz.overlay_grid(np.stack([image, image]), maps, scale=scale)
    drawn = [fig.axes[1].get_images()[0].get_array(), fig.axes[3].get_images()[0].get_array()]
    for shown, values, (vmin, vmax) in zip(drawn, maps['m'], ranges):
      np.testing.assert_allclose(shown, viz.overlay(image, values, vmin=vmin, vmax=vmax))
  with pytest.raises(ValueError, match='scale must be one of'):
    viz.overlay_grid(np.stack([image, image]), maps, scale='image')
