"""Region-native methods against brute force: Shapley values over every order of the
players (itertools) and occlusion by a plain loop."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from gestaltxai.cli import methods as methods_command

NUM_REGIONS = 5  # labels 0..4, label 0 held fixed: four players
OUTSIDE = 7  # a label beyond num_regions, held fixed too: its pixels stay
HELD = (0, OUTSIDE)  # background= of every call (label 0 plays unless it is declared here)


def two_layer(variables, x):
  """A level-1 model as a plain function: flatten -> dense -> ReLU -> dense (float64 safe)."""
  hidden = jax.nn.relu(x.reshape(x.shape[0], -1) @ variables['w1'] + variables['b1'])
  return hidden @ variables['w2']


@pytest.fixture(scope='module')
def game():
  """A model with interactions between regions (ReLU), two images, a region map with label 0,
  a label out of range, and a region absent from the second image. float64 throughout."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 6, 3))
  hidden = 64  # large enough that the forwards, not the masking, dominate XLA's FLOP count
  variables = {'w1': rng.normal(size=(6 * 6 * 3, hidden)) / 10, 'b1': rng.normal(size=hidden) / 10,
               'w2': rng.normal(size=(hidden, 3)) / 4}
  labels = np.zeros((2, 6, 6), np.int32)
  labels[:, :3, :3], labels[:, :3, 3:], labels[:, 3:, :3], labels[:, 3:, 3:5] = 1, 2, 3, 4
  labels[:, 5, 5] = OUTSIDE
  labels[1][labels[1] == 2] = 0  # region 2 absent from image 1
  return two_layer, variables, x, labels, np.array([0, 2])


def coalition_values(model, variables, x, labels, target, coalitions, baseline=0.0):
  """v(S) for each coalition (a set of labels present), each image: (len(coalitions), B).

  Images are built in NumPy: a pixel keeps its value when its label is in S or
  is no player (0 or out of range), else takes the baseline.
  """
  players = (labels > 0) & (labels < NUM_REGIONS)
  images = []
  for present in coalitions:
    keep = ~players | np.isin(labels, list(present))
    images.append(np.where(keep[..., None], x, baseline))
  logits = np.asarray(model(variables, jnp.asarray(np.concatenate(images))))
  logits = logits.reshape(len(coalitions), x.shape[0], -1)
  return logits[:, np.arange(x.shape[0]), target]


def brute_force_shapley(model, variables, x, labels, target, baseline=0.0):
  """(B, R) mean marginal contributions over all R! orders, and their (B, R) variance."""
  players = list(range(1, NUM_REGIONS))
  orders = list(itertools.permutations(players))
  prefixes = [frozenset(order[:k]) for order in orders for k in range(len(players) + 1)]
  unique = sorted(set(prefixes), key=sorted)
  values = dict(zip(unique, coalition_values(model, variables, x, labels, target, unique,
                                             baseline)))
  marginals = np.zeros((len(orders), x.shape[0], len(players)))
  for n, order in enumerate(orders):
    for k, player in enumerate(order):
      before = frozenset(order[:k])
      marginals[n, :, player - 1] = values[before | {player}] - values[before]
  return marginals.mean(0), marginals.var(0), values


def test_region_shapley_equals_the_sum_over_all_orders_and_is_efficient(game):
  model, variables, x, labels, target = game
  with jax.enable_x64(True):
    for baseline in (0.0, np.float64(0.7)):
      expected, _, values = brute_force_shapley(model, variables, x, labels, target, baseline)
      got = np.asarray(saliency.attribute('region_shapley', model, variables, x, target,
                                          regions=labels, num_regions=NUM_REGIONS,
                                          background=HELD, baseline=baseline, max_batch=6))
      assert got.shape == (2, OUTSIDE + 1) and got.dtype == np.float64
      np.testing.assert_array_equal(got[:, [0, OUTSIDE]], 0)  # held labels: no share
      assert np.isnan(got[:, NUM_REGIONS:OUTSIDE]).all()  # no such label declared
      got = got[:, :NUM_REGIONS]
      assert np.isnan(got[1, 2]) and expected[1, 1] == 0  # absent: NaN (a null player)
      np.testing.assert_allclose(got[:, 1:], np.where(np.isnan(got[:, 1:]), np.nan, expected),
                                 rtol=1e-10, atol=1e-12)
      full, empty = values[frozenset(range(1, NUM_REGIONS))], values[frozenset()]
      np.testing.assert_allclose(np.nansum(got, 1), full - empty, rtol=1e-10)
      # v(all) is the model's own logit: label 0 and the out-of-range label stayed.
      logits = np.asarray(model(variables, jnp.asarray(x)))[np.arange(2), target]
      np.testing.assert_allclose(full, logits, rtol=1e-12)


def test_sampled_region_shapley_is_efficient_and_within_its_standard_error(game):
  model, variables, x, labels, target = game
  permutations = 400
  with jax.enable_x64(True):
    expected, variance, values = brute_force_shapley(model, variables, x, labels, target)
    sample = lambda key: np.asarray(saliency.attribute(
        'region_shapley', model, variables, x, target, key=key, regions=labels,
        num_regions=NUM_REGIONS, background=HELD, max_exact_regions=2,
        permutations=permutations))[:, :NUM_REGIONS]
    got = sample(jax.random.PRNGKey(3))
    full, empty = values[frozenset(range(1, NUM_REGIONS))], values[frozenset()]
    # Each order's contributions telescope: efficiency holds for every sample.
    np.testing.assert_allclose(np.nansum(got, 1), full - empty, rtol=1e-10)
    standard_error = np.sqrt(variance / permutations)
    error = np.abs(got[:, 1:] - expected)
    assert (np.isnan(error) | (error <= 5 * standard_error + 1e-12)).all()
    np.testing.assert_array_equal(sample(jax.random.PRNGKey(3)), got)
    assert not np.allclose(sample(jax.random.PRNGKey(4)), got, equal_nan=True)
  entry = saliency.METHODS['region_shapley']
  assert entry.passes(224, 224, num_regions=NUM_REGIONS, background=0) == (2**4, 0)
  assert entry.passes(224, 224, num_regions=NUM_REGIONS, background=0, max_exact_regions=2,
                      permutations=permutations) == (permutations * 3 + 2, 0)


def test_region_occlusion_equals_a_loop_over_regions(game):
  model, variables, x, labels, target = game
  with jax.enable_x64(True):
    players = (labels > 0) & (labels < NUM_REGIONS)
    logits = lambda images: np.asarray(model(variables, jnp.asarray(images)))[
        np.arange(2), target]
    expected = np.zeros((2, NUM_REGIONS))
    for region in range(1, NUM_REGIONS):
      occluded = np.where((players & (labels == region))[..., None], -0.5, x)
      expected[:, region] = logits(x) - logits(occluded)
    expected[1, 2] = np.nan  # region 2 is absent from image 1 (as regions.coefficients)
    got = saliency.attribute('FeatureAblation', model, variables, x, target, regions=labels,
                             num_regions=NUM_REGIONS, background=HELD, baseline=-0.5)
    np.testing.assert_allclose(got[:, :NUM_REGIONS], expected, rtol=1e-10, atol=1e-12)
  assert saliency.METHODS['region_occlusion'].passes(224, 224) == (4, 0)


def float32(game):
  model, variables, x, labels, target = game
  return model, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables), jnp.asarray(
      x, jnp.float32), labels, target


def test_regions_is_a_required_option_reported_by_name(game):
  model, variables, x, labels, target = float32(game)
  with pytest.raises(ValueError, match=r'region_shapley needs regions= \(no default\): '
                                       r'regions: \(B, H, W\) int label map'):
    saliency.attribute('region_shapley', model, variables, x, target)
  with pytest.raises(ValueError, match=r'regions must be a \(B, H, W\) int label map'):
    saliency.attribute('region_occlusion', model, variables, x, target,
                       regions=labels.astype(np.float32))
  with pytest.raises(ValueError, match=r'regions must be \(B, H, W\) = \(2, 6, 6\)'):
    saliency.attribute('region_occlusion', model, variables, x, target, regions=labels[:, :5])
  with pytest.raises(ValueError, match=r'labels \[1, 2, 3, 4, 7\] that are neither players \[0\]'):
    saliency.attribute('region_occlusion', model, variables, x, target, regions=labels,
                       num_regions=1)
  # A compiled method takes the map per call (traced: a new map does not recompile).
  compiled = saliency.compiled('region_occlusion', model, num_regions=NUM_REGIONS,
                               background=HELD)
  np.testing.assert_allclose(
      compiled(variables, x, target, regions=labels),
      saliency.attribute('region_occlusion', model, variables, x, target, regions=labels,
                         num_regions=NUM_REGIONS, background=HELD), rtol=1e-6)
  with pytest.raises(ValueError, match='needs regions='):
    compiled(variables, x, target)
  assert "`regions=<required>, num_regions=None" in methods_command.markdown()



def flops(compiled):
  analysis = compiled.cost_analysis()
  return (analysis[0] if isinstance(analysis, list) else analysis)['flops']


@pytest.mark.parametrize('name,options', [
    ('region_occlusion', {'region_ids': (1, 2, 3), 'background': (0, 4, OUTSIDE)}),
    ('region_shapley', {'region_ids': (1, 2, 3), 'background': (0, 4, OUTSIDE)}),
    ('region_shapley', {'num_regions': 6, 'background': HELD}),
    ('region_shapley', {'num_regions': 6, 'background': HELD, 'max_exact_regions': 2,
                        'permutations': 10})])
def test_xla_counts_the_declared_forwards(game, name, options):
  """XLA's FLOP count of the whole method is its declared forwards (plus the masking)."""
  model, variables, x, labels, target = float32(game)
  forward = flops(jax.jit(model).lower(variables, x).compile())
  method = flops(saliency.compiled(name, model, **options).lower(
      variables, x, target, regions=labels).compile())
  passes, _ = saliency.METHODS[name].passes(6, 6, **options)
  assert passes <= method / forward <= 1.05 * passes
