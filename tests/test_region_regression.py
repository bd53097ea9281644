"""region_kernel_shap and region_lime against brute force and float64 NumPy fits.

All coalitions with the Shapley kernel give the exact Shapley value (each
order of the players in a loop, and region_shapley at eight players); on an
additive game any full-rank set of coalitions recovers each region's
contribution; sampled fits match a NumPy solve of the same coalitions.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from gestaltxai.saliency import region_regression

TARGET = np.array([0, 2])


def two_layer(variables, x):
  """flatten -> dense -> ReLU -> dense: the regions interact."""
  hidden = jax.nn.relu(x.reshape(x.shape[0], -1) @ variables['w1'] + variables['b1'])
  return hidden @ variables['w2']


def grid_labels(batch, side, players):
  """(B, side, side) labels: one row of pixels per player cycling 1..players, row 0 label 0."""
  rows = np.arange(side * side).reshape(side, side) % (players + 1)
  return np.broadcast_to(rows, (batch, side, side)).astype(np.int32).copy()


@pytest.fixture(scope='module')
def game():
  rng = np.random.default_rng(0)
  side, hidden = 6, 32
  x = rng.normal(size=(2, side, side, 3))
  variables = {'w1': rng.normal(size=(side * side * 3, hidden)) / 8,
               'b1': rng.normal(size=hidden) / 8, 'w2': rng.normal(size=(hidden, 3)) / 4}
  return variables, x


def values_of(variables, x, labels, coalitions, players):
  """(len(coalitions), B) target logits, each coalition a set of labels kept, built in NumPy."""
  is_player = (labels > 0) & (labels <= players)
  images = [np.where((~is_player | np.isin(labels, list(c)))[..., None], x, 0.0)
            for c in coalitions]
  with jax.enable_x64(True):
    logits = np.asarray(two_layer(variables, jnp.asarray(np.concatenate(images))))
  return logits.reshape(len(coalitions), x.shape[0], -1)[:, np.arange(x.shape[0]), TARGET]


def test_all_coalitions_give_the_shapley_value_of_every_order(game):
  variables, x = game
  players = 4
  labels = grid_labels(2, 6, players)
  orders = list(itertools.permutations(range(1, players + 1)))
  subsets = [frozenset(s) for k in range(players + 1)
             for s in itertools.combinations(range(1, players + 1), k)]
  value = dict(zip(subsets, values_of(variables, x, labels, subsets, players)))
  expected = np.zeros((2, players))
  for order in orders:
    for k, player in enumerate(order):
      expected[:, player - 1] += (value[frozenset(order[:k + 1])] - value[frozenset(order[:k])])
  expected /= len(orders)
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('region_kernel_shap', two_layer, variables, x, TARGET,
                                        regions=labels, num_regions=players + 1, background=0,
                                        coalitions=2**players, max_batch=6))
  np.testing.assert_allclose(got[:, 1:], expected, rtol=1e-9, atol=1e-12)
  assert (got[:, 0] == 0).all()


def test_all_coalitions_equal_region_shapley_at_eight_regions(game):
  variables, x = game
  players = 8
  labels = grid_labels(2, 6, players)
  options = dict(regions=labels, num_regions=players + 1, background=0, max_batch=64)
  with jax.enable_x64(True):
    kernel = saliency.attribute('region_kernel_shap', two_layer, variables, x, TARGET,
                                coalitions=2**players - 2, **options)
    shapley = saliency.attribute('region_shapley', two_layer, variables, x, TARGET, **options)
  np.testing.assert_allclose(np.asarray(kernel), np.asarray(shapley), rtol=1e-9, atol=1e-11)


def test_sampled_kernel_shap_recovers_an_additive_game_over_19_regions():
  """A linear model's region game is additive: v(S) - v(none) = sum over S of each region's
  w . x, which any full-rank set of coalitions recovers exactly."""
  rng = np.random.default_rng(1)
  players, side = 19, 10
  x = rng.normal(size=(2, side, side, 3)).astype(np.float32)
  w = rng.normal(size=(side * side * 3, 3)).astype(np.float32)
  linear = lambda v, images: images.reshape(images.shape[0], -1) @ v
  labels = grid_labels(2, side, players)
  got = np.asarray(saliency.attribute('region_kernel_shap', linear, w, x, TARGET,
                                      regions=labels, num_regions=players + 1, background=0,
                                      coalitions=200))
  contribution = (x[..., None] * w.reshape(side, side, 3, 3)).sum(3)  # (B, H, W, classes)
  expected = [[contribution[b][labels[b] == r][:, TARGET[b]].sum() for r in range(1, players + 1)]
              for b in range(2)]
  # float32 fits of ~20 unknowns from logits of size ~20: rounding near 1e-5.
  np.testing.assert_allclose(got[:, 1:], expected, rtol=1e-4, atol=2e-4)


def test_sampled_kernel_shap_solves_the_constrained_fit_of_its_coalitions(game):
  variables, x = game
  players, count, key = 6, 20, jax.random.PRNGKey(5)
  labels = grid_labels(2, 6, players)
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('region_kernel_shap', two_layer, variables, x, TARGET,
                                        key=key, regions=labels, num_regions=players + 1,
                                        background=0, coalitions=count))
    present = np.asarray(region_regression.sampled_kernel_coalitions(key, players, count, True))
  assert (present[count // 2:] == ~present[:count // 2]).all()  # paired
  kept = [frozenset(np.flatnonzero(z) + 1) for z in present]
  values = values_of(variables, x, labels, [frozenset(), frozenset(range(1, players + 1)), *kept],
                     players)
  for b in range(2):
    # Eliminate the constraint: phi_R = total - sum of the others, then plain least squares.
    gains, total = values[2:, b] - values[0, b], values[1, b] - values[0, b]
    z = present.astype(float)
    design = z[:, :-1] - z[:, -1:]
    rest, *_ = np.linalg.lstsq(design, gains - z[:, -1] * total, rcond=None)
    np.testing.assert_allclose(got[b, 1:], np.r_[rest, total - rest.sum()], rtol=1e-8,
                               atol=1e-10)


def test_region_lime_is_a_weighted_ridge_fit_of_its_coalitions(game):
  variables, x = game
  players, count, key = 5, 30, jax.random.PRNGKey(9)
  labels = grid_labels(2, 6, players)
  with jax.enable_x64(True):
    got = np.asarray(saliency.attribute('region_lime', two_layer, variables, x, TARGET, key=key,
                                        regions=labels, num_regions=players + 1, background=0,
                                        coalitions=count, max_batch=8))
    present = np.asarray(region_regression.lime_coalitions(key, players, count, True))
  assert present[0].all() and len(present) == count + 1
  z = present.astype(float)
  values = values_of(variables, x, labels, [frozenset(np.flatnonzero(r) + 1) for r in present],
                     players)
  similarity = z @ np.ones(players) / (np.linalg.norm(z, axis=1) * np.sqrt(players) + 1e-300)
  weights = np.sqrt(np.exp(-(1 - similarity)**2 / 0.25**2))
  for b in range(2):
    # scikit-learn's Ridge with sample weights: centre by the weighted means, then solve.
    z_mean = weights @ z / weights.sum()
    y_mean = weights @ values[:, b] / weights.sum()
    centred = z - z_mean
    gram = centred.T @ (weights[:, None] * centred) + 1.0 * np.eye(players)
    expected = np.linalg.solve(gram, centred.T @ (weights * (values[:, b] - y_mean)))
    np.testing.assert_allclose(got[b, 1:], expected, rtol=1e-8, atol=1e-10)


def test_paired_sampling_needs_an_even_number_of_coalitions(game):
  variables, x = game
  with pytest.raises(ValueError, match='even'):
    saliency.attribute('region_lime', two_layer, variables, x, TARGET,
                       regions=grid_labels(2, 6, 3), coalitions=7)
