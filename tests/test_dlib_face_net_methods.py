"""Every saliency method on dlib's face ResNet: the loaded network for its layer split,
a shallow variant (one block per stage, the same kinds of layers and zero-padded sums)
for the whole table, LRP conservation and FullGrad completeness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from gestaltxai.models import DlibFaceResNet
from gestaltxai.models.contract import Capability, explainable
from gestaltxai.saliency.full_gradient import fullgrad_terms
from tests import numpy_dlib_face_net

# The smallest input whose every strided convolution sees a full window; at this size
# the branch of the layer2, layer3 and layer4 down-sampling blocks is one pixel smaller
# than the pooled shortcut, so every sum is zero-padded in space as well as channels.
SIZE = 104
SHALLOW = dict(stage_sizes=(1, 1, 1, 1, 1), stage_features=(8, 16, 16, 32, 32), stem_features=8)
TARGET = jnp.array([1, 4])
CHEAP_OPTIONS = {'integrated_gradients': {'steps': 2}, 'smoothgrad': {'samples': 2},
                 'squaregrad': {'samples': 2}, 'vargrad': {'samples': 2},
                 'occlusion': {'window': 52, 'stride': 52}}


def random_params(model, x, seed):
  """Parameters of ``model`` drawn in NumPy from its shapes (jitting ``init`` compiles the
  whole forward, 14 s here): He-scaled kernels, scales in [-0.5, 1.5] (dlib's include
  negative ones), shifts and biases N(0, 0.1)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)['params']

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
    if name == 'scale':
      return rng.uniform(-0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope='module')
def shallow():
  model = DlibFaceResNet(num_classes=5, **SHALLOW)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, SIZE, SIZE, 3))
  return model, {'params': random_params(model, x, seed=2)}, x


def regions():
  labels = np.zeros((2, SIZE, SIZE), np.int32)
  labels[:, 30:50] = 1
  labels[:, 55:70, 30:70] = 2
  labels[:, 75:90, 30:75] = 3
  return jnp.asarray(labels)


def test_shallow_variant_matches_float64_numpy(shallow):
  model, variables, x = shallow
  params = jax.tree.map(np.asarray, variables['params'])
  expected = numpy_dlib_face_net.forward(params, np.asarray(x), stage_sizes=SHALLOW['stage_sizes'])
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), expected, rtol=1e-4, atol=1e-5)


def test_module_provides_every_level_of_the_contract(shallow):
  model, _, _ = shallow
  adapted = explainable(model)
  assert adapted.capabilities == {Capability.FORWARD, Capability.LAYERS, Capability.RULES}
  assert adapted.layers == ('layer1', 'layer2', 'layer3', 'layer4', 'layer5')
  assert adapted.default_layer == 'layer4'


# Methods that see only the logits run the same on any model (tests/test_saliency.py);
# here one of each way a method reaches inside (a layer split, each kind of rule), and one
# of each result space; LRP with the conserving preset and FullGrad are tested below.
# (All 23 run on the loaded 150 px network: benchmarks/dlib_face_net.py --methods.)
INSIDE_METHODS = ['deeplift', 'excitation_backprop', 'grad_cam_plus_plus', 'guided_grad_cam',
                  'layer_deeplift', 'lrp_epsilon_plus_flat', 'region_occlusion']


@pytest.mark.parametrize('name', INSIDE_METHODS)
def test_methods_that_use_the_inside_give_finite_maps_of_the_right_shape(shallow, name):
  model, variables, x = shallow
  entry = saliency.METHODS[name]
  options = dict(CHEAP_OPTIONS.get(name, {}))
  if 'regions' in entry.options:
    options['regions'] = regions()
  out = np.asarray(saliency.attribute(name, model, variables, x, TARGET, **options))
  shape = {'input': x.shape, 'layer': x.shape[:3], 'region': (2, 4)}[entry.space]
  assert out.shape == shape
  assert np.isfinite(out).all()
  assert np.abs(out).max() > 0


def bias_free(variables):
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: jnp.zeros_like(leaf) if path[-1].key in ('bias', 'shift') else leaf,
      variables)


def test_lrp_conserves_relevance_through_padded_sums_and_affines(shallow):
  """Bias-free, canonized (affines merged into their convolutions, Norm rule at every
  zero-padded residual sum): the target's relevance 1 reaches the input whole."""
  model, variables, x = shallow
  # Flat first layer, alpha-beta convolutions, epsilon dense layers: each rule conserves.
  relevance = saliency.attribute('lrp_epsilon_alpha2_beta1_flat', model, bias_free(variables),
                                 x, TARGET, preset='conserving')
  np.testing.assert_allclose(np.asarray(relevance).sum(axis=(1, 2, 3)), 1.0, rtol=1e-3)


def test_fullgrad_terms_complete_the_logit(shallow):
  """Piecewise-linear network: input term + every bias term + head bias = the logit."""
  model, variables, x = shallow
  input_term, bias_terms = jax.jit(fullgrad_terms, static_argnums=0)(model, variables, x, TARGET)
  total = np.asarray(input_term).sum(axis=(1, 2, 3)) + sum(
      np.asarray(t).sum(axis=tuple(range(1, t.ndim))) for t in bias_terms.values())
  head_bias = np.asarray(variables['params']['fc']['bias'])[np.asarray(TARGET)]
  logits = np.asarray(jax.jit(model.apply)(variables, x))[np.arange(2), np.asarray(TARGET)]
  assert len(bias_terms) == 11  # the stem and two convolutions per block
  np.testing.assert_allclose(total + head_bias, logits, rtol=1e-3, atol=1e-4)
