"""LayerCAM, XGrad-CAM, Eigen-CAM, Score-CAM and Ablation-CAM against float64 NumPy.

The model is a level-2 function pair whose layer activations, head and
gradients have closed forms, so every reference below is NumPy alone: the
weights by their published formulas, Score-CAM's masks with np.interp, one
forward per channel in a plain loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from gestaltxai.saliency.resize import resize_matrix

SIDE = (8, 10)  # images; the layer is 4 x 5
CHANNELS, HIDDEN, CLASSES = 6, 5, 3
TARGET = np.array([1, 2])


def features(variables, x, layer):
  """2x2 average pool -> 1x1 projection -> ReLU: (B, 4, 5, CHANNELS)."""
  del layer
  b, h, w, c = x.shape
  pooled = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return jax.nn.relu(pooled @ variables['p'] + variables['q'])


def head(variables, activations, layer):
  del layer
  return jnp.tanh(activations.mean(axis=(1, 2)) @ variables['w1']) @ variables['w2']


MODEL = saliency.FunctionalModel(lambda v, x: head(v, features(v, x, 'block'), 'block'),
                                 features=features, head=head, layers=('block',))


@pytest.fixture(scope='module')
def setup():
  rng = np.random.default_rng(0)
  variables = {'p': rng.normal(size=(3, CHANNELS)), 'q': rng.normal(size=CHANNELS) * 0.3,
               'w1': rng.normal(size=(CHANNELS, HIDDEN)), 'w2': rng.normal(size=(HIDDEN, CLASSES))}
  return variables, rng.normal(size=(2, *SIDE, 3))


def numpy_features(v, x):
  b, h, w, c = x.shape
  pooled = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return np.maximum(pooled @ v['p'] + v['q'], 0)


def numpy_logits_from(v, a):
  return np.tanh(a.mean(axis=(1, 2)) @ v['w1']) @ v['w2']


def numpy_gradients(v, a, target):
  """d logit[target] / d A, (B, h, w, C): the mean spreads dz / d pooled evenly."""
  z = a.mean(axis=(1, 2)) @ v['w1']  # (B, HIDDEN)
  d_pooled = ((1 - np.tanh(z)**2) * v['w2'][:, target].T) @ v['w1'].T  # (B, C)
  return np.broadcast_to(d_pooled[:, None, None, :] / (a.shape[1] * a.shape[2]), a.shape)


def upsampled(cam):
  rows, cols = resize_matrix(cam.shape[1], SIDE[0]), resize_matrix(cam.shape[2], SIDE[1])
  return np.einsum('Hh,bhw,Ww->bHW', rows, cam, cols)


def attribute(name, variables, x, **options):
  with jax.enable_x64(True):
    return np.asarray(saliency.attribute(name, MODEL, variables, x, TARGET, **options))


def test_layer_cam_and_xgrad_cam_weigh_activations_by_their_formulas(setup):
  variables, x = setup
  a = numpy_features(variables, x)
  g = numpy_gradients(variables, a, TARGET)
  layer = (np.maximum(g, 0) * a).sum(-1)
  xgrad = ((g * a).sum(axis=(1, 2)) / (a.sum(axis=(1, 2)) + 1e-7))[:, None, None, :]
  np.testing.assert_allclose(attribute('layer_cam', variables, x), upsampled(layer), rtol=1e-10)
  np.testing.assert_allclose(attribute('xgrad_cam', variables, x),
                             upsampled((xgrad * a).sum(-1)), rtol=1e-10)
  np.testing.assert_allclose(attribute('xgrad_cam', variables, x, relu=True),
                             upsampled(np.maximum((xgrad * a).sum(-1), 0)), rtol=1e-10)


def test_eigen_cam_is_the_first_principal_component(setup):
  variables, x = setup
  a = numpy_features(variables, x)
  expected = []
  for image in a:
    flat = image.reshape(-1, CHANNELS)
    centred = flat - flat.mean(0)
    axis = np.linalg.svd(centred)[2][0]
    expected.append((centred @ (axis if axis.sum() >= 0 else -axis)).reshape(image.shape[:2]))
  np.testing.assert_allclose(attribute('eigen_cam', variables, x), upsampled(np.stack(expected)),
                             rtol=1e-8, atol=1e-12)


def aligned_bilinear(image, size):
  """(h, w) -> size, corners aligned, by np.interp along each axis."""
  rows = np.linspace(0, image.shape[0] - 1, size[0])
  cols = np.linspace(0, image.shape[1] - 1, size[1])
  along_cols = np.stack([np.interp(cols, np.arange(image.shape[1]), row) for row in image])
  return np.stack([np.interp(rows, np.arange(image.shape[0]), col) for col in along_cols.T]).T


def test_score_cam_softmaxes_the_masked_logits_channel_by_channel(setup):
  variables, x = setup
  a = numpy_features(variables, x)
  scores = np.zeros((2, CHANNELS))
  for b in range(2):
    for c in range(CHANNELS):
      mask = aligned_bilinear(a[b, :, :, c], SIDE)
      mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
      masked = x[b:b + 1] * mask[None, :, :, None]
      scores[b, c] = numpy_logits_from(variables, numpy_features(variables, masked))[0, TARGET[b]]
  weights = np.exp(scores - scores.max(1, keepdims=True))
  weights /= weights.sum(1, keepdims=True)
  expected = upsampled(np.einsum('bc,bhwc->bhw', weights, a))
  # max_batch 4: passes of two channels for the two images, three passes.
  np.testing.assert_allclose(attribute('score_cam', variables, x, max_batch=4), expected,
                             rtol=1e-10)


def test_ablation_cam_weighs_channels_by_the_relative_drop(setup):
  variables, x = setup
  a = numpy_features(variables, x)
  original = numpy_logits_from(variables, a)[np.arange(2), TARGET]
  weights = np.zeros((2, CHANNELS))
  for c in range(CHANNELS):
    ablated = a.copy()
    ablated[..., c] = 0
    dropped = numpy_logits_from(variables, ablated)[np.arange(2), TARGET]
    weights[:, c] = (original - dropped) / original
  expected = upsampled(np.einsum('bc,bhwc->bhw', weights, a))
  np.testing.assert_allclose(attribute('ablation_cam', variables, x, max_batch=6), expected,
                             rtol=1e-10)
