"""The metric table and the localisation metrics against plain NumPy loops and closed forms;
ROAD's imputation against a direct scipy sparse solve; the random-logit and independent
randomisation tests on toy methods."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import scipy.stats

from gestaltxai import metrics, saliency
from gestaltxai.cli import metrics as metrics_cli
from tests.test_metrics import SmallCNN, edges


def loop_scores(relevance, mask, k):
  """Each localisation score of one image by plain loops (float64), Quantus' definitions."""
  values, truth = relevance.ravel().astype(np.float64), mask.ravel()
  size = int(truth.sum())
  order = sorted(range(len(values)), key=lambda i: (-values[i], i))  # ties in pixel order
  peak = max(values)
  return {'mass': sum(v for v, t in zip(values, truth) if t) / sum(values),
          'rank': sum(truth[i] for i in order[:size]) / size,
          'pointing': float(any(t for v, t in zip(values, truth) if v == peak)),
          'top_k': sum(truth[i] for i in order[:k]) / k}


def test_localisation_metrics_equal_loops_and_closed_forms():
  rng = np.random.default_rng(0)
  relevance = rng.random((5, 6, 7)).astype(np.float32)
  relevance[1, 2:4] = 0.25  # ties
  relevance[2, 0, :3] = relevance[2].max() + 1  # tied maxima, one of them inside the mask
  mask = rng.random((5, 6, 7)) < 0.3
  mask[2, 0, 1] = True
  k = 9
  got = {'mass': metrics.relevance_mass_accuracy(relevance, mask),
         'rank': metrics.relevance_rank_accuracy(relevance, mask),
         'pointing': metrics.pointing_game(relevance, mask),
         'top_k': metrics.top_k_intersection(relevance, mask, k=k)}
  for b in range(5):
    expected = loop_scores(relevance[b], mask[b], k)
    for name, value in got.items():
      # float32 sums against float64 loops: a few ulps of the 42-pixel totals.
      np.testing.assert_allclose(value[b], expected[name], rtol=1e-5, err_msg=name)
  # Closed forms: the mask as the map scores 1 everywhere; a constant map scores the mask's
  # share on mass accuracy; an empty mask is undefined.
  as_map = mask.astype(np.float32)
  for f in (metrics.relevance_mass_accuracy, metrics.relevance_rank_accuracy,
            metrics.pointing_game):
    np.testing.assert_allclose(f(as_map, mask), 1.0)
  np.testing.assert_allclose(metrics.relevance_mass_accuracy(np.ones_like(relevance), mask),
                             mask.mean(axis=(1, 2)), rtol=1e-6)
  empty = np.zeros_like(mask)
  assert np.isnan(metrics.relevance_mass_accuracy(relevance, empty)).all()
  weighted = metrics.pointing_game(as_map, mask, weighted=True)
  np.testing.assert_allclose(weighted, 1 - mask.mean(axis=(1, 2)), rtol=1e-6)
  influence = metrics.top_k_intersection(relevance, mask, k=k, concept_influence=True)
  np.testing.assert_allclose(influence, got['top_k'] / mask.mean(axis=(1, 2)), rtol=1e-5)
  with pytest.raises(ValueError, match='k=43 is more than the 42'):
    metrics.top_k_intersection(relevance, mask, k=43)
  with pytest.raises(ValueError, match='must be bool'):
    metrics.relevance_mass_accuracy(relevance, mask.astype(int))


def test_region_variants_leave_out_label_zero_and_absent_regions():
  coefficients = np.array([[9.0, 1.0, 3.0, 2.0], [9.0, np.nan, 1.0, 4.0]], np.float32)
  truth = np.array([[True, False, True, False], [False, False, True, False]])
  mass = metrics.METRICS['region_mass_accuracy'](coefficients, truth)
  np.testing.assert_allclose(mass, [3 / 6, 1 / 5], rtol=1e-6)  # column 0 ignored, NaN as 0
  np.testing.assert_allclose(metrics.METRICS['region_pointing_game'](coefficients, truth),
                             [1.0, 0.0])
  np.testing.assert_allclose(metrics.METRICS['region_rank_accuracy'](coefficients, truth),
                             [1.0, 0.0])


def test_registry_checks_options_before_anything_runs_and_lists_every_metric():
  with pytest.raises(ValueError, match="did you mean 'weighted'"):
    metrics.METRICS['pointing_game'](np.ones((1, 2, 2)), np.ones((1, 2, 2), bool), weigted=True)
  with pytest.raises(ValueError, match="did you mean 'road'"):
    metrics.get_metric('raod')
  with pytest.raises(ValueError, match='steps must be a positive int'):
    metrics.get_metric('deletion').resolve({'steps': 0})
  assert metrics.get_metric('road').passes(fractions=(0.5,)) == (2, 0)
  assert {r[0] for r in metrics_cli.rows()} == set(metrics.METRICS)
  with pytest.raises(TypeError, match='not metric inputs'):
    metrics.registry.declare(lambda scores, mask: scores, name='bad', direction='higher')


def scipy_imputation(image, removed):
  """ROAD's linear system for one image, built entry by entry and solved directly."""
  height, width, channels = image.shape
  points = [tuple(p) for p in np.argwhere(removed)]
  index = {p: n for n, p in enumerate(points)}
  system = scipy.sparse.lil_matrix((len(points), len(points)))
  rhs = np.zeros((len(points), channels))
  for n, (i, j) in enumerate(points):
    for di in (-1, 0, 1):
      for dj in (-1, 0, 1):
        a, c = i + di, j + dj
        if (di, dj) == (0, 0) or not (0 <= a < height and 0 <= c < width):
          continue
        weight = 1 / 6 if 0 in (di, dj) else 1 / 12
        system[n, n] += weight
        if removed[a, c]:
          system[n, index[(a, c)]] -= weight
        else:
          rhs[n] += weight * image[a, c]
  out = image.astype(np.float64).copy()
  out[removed] = scipy.sparse.linalg.spsolve(system.tocsc(), rhs)
  return out


def test_road_imputation_equals_a_direct_sparse_solve_and_the_curves_a_loop():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  removed = rng.random((2, 9, 11)) < 0.7
  imputed = metrics.linear_imputation(jnp.asarray(x), jnp.asarray(removed))
  for b in range(2):
    # Conjugate gradients to a 1e-5 relative residual in float32 against a float64 solve.
    np.testing.assert_allclose(imputed[b], scipy_imputation(x[b], removed[b]), atol=1e-4)
  model = SmallCNN()
  images = rng.normal(size=(2, 10, 10, 3)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), images)
  relevance = rng.random((2, 10, 10)).astype(np.float32)
  target = np.array([1, 2])
  result = metrics.road(model, variables, images, relevance, target, fractions=[0.3, 0.6],
                        noise_level=0.0)
  order = np.argsort(-relevance.reshape(2, -1), axis=1, kind='stable')
  for f, fraction in enumerate((0.3, 0.6)):
    count = int(np.floor(fraction * 100))
    for most_first, curve in ((True, result.most_relevant_first),
                              (False, result.least_relevant_first)):
      for b in range(2):
        chosen = order[b, :count] if most_first else order[b, 100 - count:]
        hole = np.zeros(100, bool)
        hole[chosen] = True
        filled = scipy_imputation(images[b], hole.reshape(10, 10))
        logits = np.asarray(model.apply(variables, filled[None].astype(np.float32)), np.float64)
        probability = np.exp(logits[0, target[b]]) / np.exp(logits[0]).sum()
        np.testing.assert_allclose(curve[b, f], probability, atol=1e-5)
  np.testing.assert_allclose(result.score, (result.least_relevant_first.mean(1)
                                            - result.most_relevant_first.mean(1)) / 2)
  # The noise: sigma noise_level x the image's range, on removed pixels only.
  key = jax.random.PRNGKey(3)
  hole = jnp.asarray(removed)
  noisy = metrics.noisy_linear_imputation(jnp.asarray(x), hole, key, noise_level=0.5)
  noise = np.asarray(noisy - imputed)
  assert (noise[~removed] == 0).all()
  spread = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))
  np.testing.assert_allclose(noise[removed].std() / (0.5 * spread.mean()), 1.0, atol=0.1)


def test_region_road_removes_whole_regions_in_coefficient_order():
  rng = np.random.default_rng(2)
  model = SmallCNN()
  images = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), images)
  regions = np.zeros((1, 8, 8), np.int32)
  regions[0, 1:3, 1:4], regions[0, 4:6, 1:3], regions[0, 5:7, 5:7] = 1, 2, 3
  coefficients = np.array([[0.0, 0.2, 0.9, 0.5]], np.float32)
  result = metrics.region_road(model, variables, images, coefficients, regions,
                               np.array([0]), noise_level=0.0)
  for k, (morf, lerf) in enumerate((([2], [1]), ([2, 3], [1, 3]))):
    for removed_labels, curve in ((morf, result.most_relevant_first),
                                  (lerf, result.least_relevant_first)):
      filled = scipy_imputation(images[0], np.isin(regions[0], removed_labels))
      logits = np.asarray(model.apply(variables, filled[None].astype(np.float32)), np.float64)
      np.testing.assert_allclose(curve[0, k], np.exp(logits[0, 0]) / np.exp(logits[0]).sum(),
                                 atol=1e-5)


@pytest.fixture(scope='module')
def cnn():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 12, 12, 3))
  model = SmallCNN()
  return model, model.init(jax.random.PRNGKey(1), x), x


def test_random_logit_flags_a_method_that_ignores_the_class_and_passes_the_gradient(cnn):
  model, variables, x = cnn
  target = np.array([0, 1, 2, 3])
  key = jax.random.PRNGKey(5)
  others = np.asarray(metrics.other_classes(jax.random.split(key)[0], jnp.asarray(target), 4))
  assert (others != target).all() and ((0 <= others) & (others < 4)).all()
  ignoring = metrics.random_logit(edges, model, variables, x, target, key=key)
  np.testing.assert_allclose(ignoring, 1.0, rtol=1e-6)  # the same map for every class
  gradient = metrics.random_logit('gradient', model, variables, x, target, key=key,
                                  similarity='spearman')
  maps = [np.asarray(saliency.relevance('gradient', model, variables, x, t))
          for t in (target, others)]
  expected = [scipy.stats.spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(*maps)]
  np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
  # On an untrained toy CNN the classes' gradients share their ReLU masks, so the maps stay
  # alike (about 0.6); what the test asks is that they are no copy of each other.
  assert (np.asarray(gradient) < 0.9).all()


def test_independent_randomisation_changes_one_stage_at_a_time(cnn):
  model, variables, x = cnn
  key = jax.random.PRNGKey(0)
  check = metrics.model_randomization(edges, model, variables, x, independent=True, key=key)
  assert not check.passed()
  gradient = metrics.model_randomization('gradient', model, variables, x, independent=True,
                                         key=key)
  assert gradient.passed()
  # Step s: stage s fresh, every other stage trained (not the cascade's s and above).
  fresh = model.init(jax.random.split(key)[0], x[:1])
  target = saliency.predict(model, variables, x)
  trained = np.asarray(saliency.relevance('gradient', model, variables, x, target))
  for step, stage in enumerate(gradient.stages):
    mixed = {'params': {**variables['params'], stage: fresh['params'][stage]}}
    randomised = np.asarray(saliency.relevance('gradient', model, mixed, x, target))
    expected = [scipy.stats.spearmanr(a.ravel(), b.ravel())[0]
                for a, b in zip(trained, randomised)]
    np.testing.assert_allclose(gradient.spearman[:, step], expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gradient.per_image, gradient.spearman.mean(1), rtol=1e-6)
