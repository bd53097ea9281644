"""XRAI over a label map against a float64 NumPy loop of the published greedy algorithm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from tests.toy_models import Quadratic

SHAPE = (2, 16, 15, 3)
TARGET = np.array([1, 0])
NUM_REGIONS = 5


def numpy_xrai(attribution, masks, min_pixels):
  """The greedy loop: add the remaining segment of highest density (over its new pixels)
  until none is left; pixels never added share the density of their union."""
  heat = np.full(attribution.shape, -np.inf)
  current = np.zeros(attribution.shape, bool)
  remaining, order = dict(enumerate(masks)), []
  while remaining:
    gains = {}
    for k, mask in list(remaining.items()):
      new = mask & ~current
      if new.sum() < min_pixels:
        del remaining[k]
      else:
        gains[k] = attribution[new].mean()
    if not gains:
      break
    best = max(gains, key=gains.get)
    heat[remaining[best] & ~current] = gains[best]
    current |= remaining.pop(best)
    order.append(best)
  rest = heat == -np.inf
  if rest.any():
    heat[rest] = attribution[rest].mean()
  return heat, order


def test_xrai_ranks_regions_by_ig_density_as_the_greedy_loop(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=SHAPE)
  model = Quadratic(3)
  variables = jax.tree.map(lambda a: np.asarray(a, np.float64),
                           model.init(jax.random.PRNGKey(1), jnp.zeros(SHAPE)))
  w = variables['params']['w'][TARGET]
  labels = rng.integers(0, NUM_REGIONS + 1, size=SHAPE[:3]).astype(np.int32)  # label 5: no player
  labels[0, :6, :5] = 3  # a large region; in image 1 region 3 stays small (< min_pixels)
  labels[1][labels[1] == 3] = 0
  labels[1, 0, 0] = 3
  steps, min_pixels = 6, 20
  with jax.enable_x64(True):
    got = saliency.attribute('xrai', model, variables, x, TARGET, regions=labels,
                             num_regions=NUM_REGIONS, steps=steps, min_pixels=min_pixels,
                             max_batch=4)
    heat = np.asarray(saliency.region_pixel_map(got, labels))
    ranking = np.asarray(saliency.region_ranking(got, labels, min_pixels))
  for b in range(2):
    ig = np.zeros(SHAPE[1:])
    for baseline in (x[b].min(), x[b].max()):
      delta = x[b] - baseline
      ig += sum(delta * 2 * w[b] * (baseline + a * delta) for a in np.linspace(0, 1, steps)) / (
          2 * steps)
    masks = [labels[b] == r for r in range(1, NUM_REGIONS)]
    expected_heat, order = numpy_xrai(ig.max(-1), masks, min_pixels)
    np.testing.assert_allclose(heat[b], expected_heat, rtol=1e-10)
    np.testing.assert_array_equal(ranking[b][:len(order)], np.array(order) + 1)
    assert len(order) == NUM_REGIONS - 1 - b  # image 1's region 3 is too small to rank


def test_xrai_without_regions_says_how_to_get_them():
  model = Quadratic(3)
  x = np.zeros((1, 4, 4, 3), np.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='regions=.*reference_region_map'):
    saliency.attribute('xrai', model, variables, x, np.array([0]))
