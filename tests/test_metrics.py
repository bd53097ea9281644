"""Faithfulness and sanity metrics against plain loops, scipy and scikit-image."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

from gestaltxai import metrics, saliency
from gestaltxai.metrics.faithfulness import BLUR_TRUNCATE
from gestaltxai.models import ResNet
from tests.tolerances import assert_float32_paths_agree


class SmallCNN(nn.Module):
  """A level-1 model: conv -> ReLU -> conv -> ReLU -> global mean -> dense."""

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(6, (3, 3), name='conv1')(x))
    h = nn.relu(nn.Conv(8, (3, 3), name='conv2')(h))
    return nn.Dense(4, name='head')(h.mean(axis=(1, 2)))


@pytest.fixture(scope='module')
def cnn():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 12, 12, 3))
  model = SmallCNN()
  return model, model.init(jax.random.PRNGKey(1), x), x


def probabilities(model, variables, images, target):
  logits = np.asarray(model.apply(variables, jnp.asarray(images)), np.float64)
  exp = np.exp(logits - logits.max(-1, keepdims=True))
  return (exp / exp.sum(-1, keepdims=True))[np.arange(len(target)), target]


def loop_curve(model, variables, x, relevance, target, steps, start, end):
  """Step by step in NumPy: after step k the floor(k HW / steps) most relevant pixels
  (stable order) show ``end`` instead of ``start``."""
  x_size = x.shape[1] * x.shape[2]
  order = np.argsort(-relevance.reshape(len(x), -1), axis=1, kind='stable')
  curve = []
  for k in range(steps + 1):
    shown = np.zeros((len(x), x_size), bool)
    np.put_along_axis(shown, order[:, :k * x_size // steps], True, axis=1)
    images = np.where(shown.reshape(x.shape[:3])[..., None], end, start)
    curve.append(probabilities(model, variables, images, target))
  fractions = (np.arange(steps + 1) * x_size // steps) / x_size
  curve = np.stack(curve, 1)
  return curve, np.trapezoid(curve, fractions, axis=1)


def test_deletion_and_insertion_equal_a_loop_over_steps(cnn):
  model, variables, x = cnn
  target = np.array([0, 3, 1])
  relevance = np.array(saliency.relevance('gradient', model, variables, x, target))
  relevance[0, :4, :4] = 0.0  # ties: kept in pixel order
  x = np.asarray(x)
  steps, sigma = 7, 1.5
  deleted = metrics.deletion(model, variables, x, relevance, target, steps=steps,
                             baseline=-0.3, max_batch=6)
  curve, area = loop_curve(model, variables, x, relevance, target, steps, x,
                           np.full_like(x, -0.3))
  # The loop runs the model on other batches than the metric's passes: float32 reordering.
  assert_float32_paths_agree(deleted.probabilities, curve)
  assert_float32_paths_agree(deleted.area, area)
  blurred = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode='reflect',
                                    truncate=BLUR_TRUNCATE)
  np.testing.assert_allclose(metrics.gaussian_blur(jnp.asarray(x), sigma), blurred, atol=1e-5)
  inserted = metrics.insertion(model, variables, x, relevance, target, steps=steps,
                               blur_sigma=sigma)
  curve, area = loop_curve(model, variables, x, relevance, target, steps, blurred, x)
  assert_float32_paths_agree(inserted.probabilities, curve)
  assert_float32_paths_agree(inserted.area, area)
  # The predicted class by default; a function model works as well as the module.
  predicted = np.asarray(saliency.predict(model, variables, x))
  by_default = metrics.deletion(lambda v, h: model.apply(v, h), variables, x, relevance,
                                steps=steps)
  assert_float32_paths_agree(
      by_default.area, metrics.deletion(model, variables, x, relevance, predicted,
                                        steps=steps).area)


def test_region_deletion_equals_a_loop_over_regions(cnn):
  model, variables, x = cnn
  x = np.asarray(x)
  labels = np.zeros((3, 12, 12), np.int32)
  labels[:, 2:6, 2:10], labels[:, 6:9, 3:9], labels[:, 9:11, 4:8] = 1, 2, 3
  coefficients = np.array([[0.0, 0.2, 0.9, 0.5], [0.0, 0.7, np.nan, 0.1],
                           [5.0, -1.0, -3.0, -2.0]], np.float32)
  target = np.array([2, 0, 1])
  curve = metrics.region_deletion(model, variables, x, coefficients, labels, target)
  orders = [[2, 3, 1], [1, 3, 2], [1, 3, 2]]  # highest first, NaN last, column 0 ignored
  expected = []
  for k in range(4):
    images = x.copy()
    for i, order in enumerate(orders):
      images[i][np.isin(labels[i], order[:k])] = 0.0
    expected.append(probabilities(model, variables, images, target))
  expected = np.stack(expected, 1)
  assert_float32_paths_agree(curve.probabilities, expected)
  np.testing.assert_allclose(curve.fractions, np.arange(4) / 3)
  assert_float32_paths_agree(curve.area, np.trapezoid(expected, np.arange(4) / 3, axis=1))
  painted = np.asarray(metrics.coefficient_map(coefficients, labels))
  np.testing.assert_array_equal(painted[1][labels[1] == 1], np.float32(0.7))
  np.testing.assert_array_equal(painted[2][labels[2] == 0], 0.0)


def test_spearman_and_ssim_equal_scipy_and_scikit_image():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(3, 16, 16)).astype(np.float32)
  b = (a + rng.normal(size=a.shape)).astype(np.float32)
  b[0, :8] = 0.0  # ties
  a[1] = np.round(a[1])  # many ties
  got = np.asarray(metrics.spearman(jnp.asarray(a), jnp.asarray(b)))
  expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  scale = lambda m: (m - m.min()) / (m.max() - m.min())
  a01, b01 = np.stack([scale(m) for m in a]), np.stack([scale(m) for m in b])
  got = np.asarray(metrics.ssim(jnp.asarray(a01), jnp.asarray(b01)))
  expected = [structural_similarity(x, y, data_range=1.0) for x, y in zip(a01, b01)]
  np.testing.assert_allclose(got, expected, rtol=1e-4)


def edges(model, variables, x, target, *, key=None):
  """A "method" that ignores the model: gradient magnitude of the grey image (Sobel)."""
  del model, variables, target, key
  grey = x.mean(-1)
  sobel = jnp.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
  conv = lambda k: jax.vmap(lambda g: jax.scipy.signal.convolve2d(g, k, mode='same'))(grey)
  return jnp.hypot(conv(sobel), conv(sobel.T))


def test_randomisation_flags_an_edge_detector_and_passes_the_gradient(cnn):
  model, variables, x = cnn
  check = metrics.model_randomization(edges, model, variables, x)
  assert check.stages == ('head', 'conv2', 'conv1')
  np.testing.assert_allclose(check.spearman, 1.0, rtol=1e-6)
  np.testing.assert_allclose(check.ssim, 1.0, rtol=1e-6)
  assert not check.passed()
  gradient = metrics.model_randomization('gradient', model, variables, x)
  assert gradient.spearman.shape == (3, 3)
  assert float(gradient.similarity) < metrics.SIMILARITY_LIMIT and gradient.passed()
  # Step s leaves the stages after s trained: the last step equals a fully fresh model.
  fresh = model.init(jax.random.split(jax.random.PRNGKey(0))[0], x[:1])
  target = saliency.predict(model, variables, x)
  maps = [saliency.relevance('gradient', model, v, x, target) for v in (variables, fresh)]
  np.testing.assert_allclose(gradient.spearman[:, -1], metrics.spearman(*maps), rtol=1e-5)


def test_stages_come_from_the_model_or_are_refused_with_the_reason(cnn):
  model, variables, x = cnn
  # Declared by the module (ResNet.parameter_stages), input side first.
  resnet, images = ResNet(num_classes=5, stage_sizes=(2, 1)), jnp.zeros((1, 32, 32, 3))
  shapes = jax.eval_shape(resnet.init, jax.random.PRNGKey(0), images)
  assert metrics.parameter_stages(resnet, shapes, images) == (
      ('stem', ('conv1',)), ('layer1', ('layer1_0', 'layer1_1')), ('layer2', ('layer2_0',)),
      ('fc', ('fc',)))
  # Otherwise from the forward pass: the order of first use, whatever the names sort as;
  # a cast of every parameter up front is not a use.
  def cast_first(v, h):
    v = jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), v)
    return model.apply(v, h)

  for fn in (model, cast_first):
    assert [name for name, _ in metrics.parameter_stages(fn, variables, x)] == [
        'conv1', 'conv2', 'head']

  def tangled(v, h):  # both weights first meet in one addition: no order
    return h.reshape(h.shape[0], -1) @ (v['a'] + v['b'])

  weights = {'a': jnp.ones((12 * 12 * 3, 4)), 'b': jnp.ones((12 * 12 * 3, 4))}
  with pytest.raises(ValueError, match="first uses 'a' and 'b' in the same operation"):
    metrics.parameter_stages(tangled, weights, x)
  with pytest.raises(ValueError, match=r"never uses \['b'\]"):
    metrics.parameter_stages(lambda v, h: h.reshape(h.shape[0], -1) @ v['a'], weights, x)
  with pytest.raises(ValueError, match='give random_variables='):
    metrics.model_randomization('gradient', lambda v, h: model.apply(v, h), variables, x)
  with pytest.raises(ValueError, match=r"leave out the variables \['head'\]"):
    metrics.model_randomization('gradient', model, variables, x, stages=('conv1', 'conv2'))
