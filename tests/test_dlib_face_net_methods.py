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


def randomize_affines(params, key):
  """Non-trivial scales (some negative, as dlib's are), shifts and biases."""
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    name = path[-1].key
    if name == 'scale':
      leaf = jax.random.uniform(k, leaf.shape, minval=-0.5, maxval=1.5)
    elif name in ('shift', 'bias'):
      leaf = 0.1 * jax.random.normal(k, leaf.shape)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(tree, out)


@pytest.fixture(scope='module')
def shallow():
  model = DlibFaceResNet(num_classes=5, **SHALLOW)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, SIZE, SIZE, 3))
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)
  variables = {'params': randomize_affines(variables['params'], jax.random.PRNGKey(2))}
  return model, variables, x


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
# here the ones that split the network or route its rules, and one of each space.
# (All 23 run on the loaded 150 px network too: benchmarks/dlib_face_net.py --methods.)
INSIDE_METHODS = sorted(n for n, m in saliency.METHODS.items()
                        if m.level > 1 and n != 'fullgrad') + ['gradient', 'region_occlusion']


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


@pytest.mark.parametrize('name', ['lrp_epsilon_plus', 'lrp_epsilon_alpha2_beta1_flat'])
def test_lrp_conserves_relevance_through_padded_sums_and_affines(shallow, name):
  """Bias-free, canonized (affines merged into their convolutions, Norm rule at every
  zero-padded residual sum): the target's relevance 1 reaches the input whole."""
  model, variables, x = shallow
  relevance = saliency.attribute(name, model, bias_free(variables), x, TARGET,
                                 preset='conserving')
  np.testing.assert_allclose(np.asarray(relevance).sum(axis=(1, 2, 3)), 1.0, rtol=1e-3)


def test_fullgrad_terms_complete_the_logit(shallow):
  """Piecewise-linear network: input term + every bias term + head bias = the logit."""
  model, variables, x = shallow
  input_term, bias_terms = fullgrad_terms(model, variables, x, TARGET)
  total = np.asarray(input_term).sum(axis=(1, 2, 3)) + sum(
      np.asarray(t).sum(axis=tuple(range(1, t.ndim))) for t in bias_terms.values())
  head_bias = np.asarray(variables['params']['fc']['bias'])[np.asarray(TARGET)]
  logits = np.asarray(jax.jit(model.apply)(variables, x))[np.arange(2), np.asarray(TARGET)]
  assert len(bias_terms) == 11  # the stem and two convolutions per block
  np.testing.assert_allclose(total + head_bias, logits, rtol=1e-3, atol=1e-4)
