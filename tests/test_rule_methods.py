"""Propagation-rule methods against axioms and hand-written rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from gestaltxai import saliency
from gestaltxai.saliency import lrp
from gestaltxai.saliency.full_gradient import fullgrad_terms
from tests import numpy_lrp
from tests.conftest import randomize_batch_stats
from tests.test_saliency import torch_bicubic_reference
from tests.tolerances import assert_float32_paths_agree
from tests.toy_models import ConvNoPool, TwoLayer

LRP_METHODS = ('lrp_epsilon_plus', 'lrp_epsilon_plus_flat', 'lrp_epsilon_alpha2_beta1',
               'lrp_epsilon_alpha2_beta1_flat', 'excitation_backprop')


@pytest.fixture(scope='module')
def two_layer():
  model = TwoLayer()
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 2, 3))
  variables = model.init(jax.random.PRNGKey(1), x)
  p = variables['params']
  return model, variables, x, {k: (np.asarray(p[k]['kernel'], np.float64),
                                   np.asarray(p[k]['bias'], np.float64)) for k in p}


def stab(z, eps=1e-6):
  return z + np.where(z >= 0, eps, -eps)


def test_zplus_on_two_layers_matches_a_hand_computation(two_layer):
  """Excitation backprop is z+ on every linear layer with ReLU gradients."""
  model, variables, x, w = two_layer
  target = np.array([0, 2, 1])
  (w1, b1), (w2, b2) = w['dense1'], w['dense2']
  xf = np.asarray(x, np.float64).reshape(3, -1)
  h = xf @ w1 + b1
  a = np.maximum(h, 0)
  relevance = np.eye(3)[target]
  pos = lambda v: np.maximum(v, 0)
  neg = lambda v: np.minimum(v, 0)
  z2 = a @ pos(w2) + pos(b2)  # a >= 0: no negative-input term
  r_a = a * ((relevance / stab(z2)) @ pos(w2).T)
  r_h = r_a * (h > 0)
  z1 = pos(xf) @ pos(w1) + neg(xf) @ neg(w1) + pos(b1)
  c1 = r_h / stab(z1)
  expected = pos(xf) * (c1 @ pos(w1).T) + neg(xf) * (c1 @ neg(w1).T)
  got = saliency.attribute('excitation_backprop', model, variables, x, jnp.asarray(target))
  np.testing.assert_allclose(np.asarray(got).reshape(3, -1), expected, rtol=1e-4, atol=1e-7)


def test_guided_backprop_and_deconvnet_match_hand_written_rules(two_layer):
  model, variables, x, w = two_layer
  target = np.array([1, 1, 2])
  (w1, b1), (w2, _) = w['dense1'], w['dense2']
  h = np.asarray(x, np.float64).reshape(3, -1) @ w1 + b1
  upstream = w2[:, target].T  # d logit / d relu(h)
  guided = (upstream * (h > 0) * (upstream > 0)) @ w1.T
  deconv = np.maximum(upstream, 0) @ w1.T
  for method, expected in (('guided_backprop', guided), ('deconvnet', deconv)):
    got = saliency.attribute(method, model, variables, x, jnp.asarray(target))
    np.testing.assert_allclose(np.asarray(got).reshape(3, -1), expected, rtol=1e-5, atol=1e-7)


def bias_free(variables):
  """Zero every bias and BatchNorm mean: folded layers then have no bias."""
  def zero(path, leaf):
    name = path[-1].key
    return jnp.zeros_like(leaf) if name in ('bias', 'mean') else leaf
  return jax.tree_util.tree_map_with_path(zero, variables)


@pytest.mark.parametrize('method', LRP_METHODS)
def test_lrp_conserves_relevance_exactly_on_a_bias_free_network(method):
  """Conv (first) -> ReLU -> conv -> ReLU -> average pool -> dense, every BatchNorm
  folded and bias-free: the relevance of the target (1) reaches the input whole."""
  model = ConvNoPool()
  x = jax.random.normal(jax.random.PRNGKey(3), (3, 12, 12, 3))
  variables = bias_free(randomize_batch_stats(model.init(jax.random.PRNGKey(1), x),
                                              jax.random.PRNGKey(2)))
  relevance = saliency.attribute(method, model, variables, x, jnp.array([1, 3, 0]),
                                 preset='conserving')
  np.testing.assert_allclose(np.asarray(relevance).sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)


def test_residual_sum_splits_relevance_by_contribution():
  """zennit's canonized residual sum: R_a = a R / (a + b), R_b = b R / (a + b)."""
  a = jnp.array([[1.0, -2.0, 3.0]])
  b = jnp.array([[3.0, 4.0, 0.0]])
  relevance = jnp.array([[2.0, 1.0, 5.0]])
  _, vjp = jax.vjp(lrp.norm_sum_rule(), a, b)
  r_a, r_b = vjp(relevance)
  np.testing.assert_allclose(r_a, [[0.5, -1.0, 5.0]], rtol=1e-5)
  np.testing.assert_allclose(r_b, [[1.5, 2.0, 0.0]], rtol=1e-5)


def torch_state_dict(variables):
  """Flax variables of a small ResNet -> PyTorch-named float64 arrays (OIHW kernels)."""
  state = {}
  for (_, *modules, leaf), value in flatten_dict(variables).items():
    value = np.asarray(value, np.float64)
    *blocks, layer = [m.replace('_', '.') for m in modules]
    prefix = ''.join(f'{b}.' for b in blocks)
    if layer == 'fc':
      state['fc.weight' if leaf == 'kernel' else 'fc.bias'] = value.T if leaf == 'kernel' else value
    elif leaf == 'kernel':
      conv = 'downsample.0' if layer == 'downsample' else layer
      state[f'{prefix}{conv}.weight'] = value.transpose(3, 2, 0, 1)
    else:
      bn = 'downsample.1' if layer == 'downsample' else layer.replace('conv', 'bn')
      name = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}
      state[f'{prefix}{bn}.{name[leaf]}'] = value
  return state


@pytest.fixture(scope='module')
def lrp_resnet():
  """A two-block bottleneck ResNet, wide enough that z+ rarely drops relevance."""
  from gestaltxai.models import ResNet
  model = ResNet(num_classes=5, stage_sizes=(1, 1), width=16, pool_window=None)
  # Jitted, init takes half the time it takes op by op.
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)))
  variables = randomize_batch_stats(variables, jax.random.PRNGKey(2))
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 32, 32, 3))
  return model, variables, x, np.array([1, 3])


# Options of each setting; the conservation test below uses the same ones, so
# the compiled methods are shared. Defaults are the reference pipeline's: LRP
# with canonize='reference', excitation backprop without a canonizer.
REFERENCE_OPTIONS = {'excitation_backprop': {'canonize': 'reference'}}
CONSERVING = {'preset': 'conserving'}
SETTING_CASES = [
    *((method, {}, 'reference') for method in LRP_METHODS[:4]),
    ('excitation_backprop', {}, False),
    ('excitation_backprop', REFERENCE_OPTIONS['excitation_backprop'], 'reference'),
    ('lrp_epsilon_plus_flat', CONSERVING, True),
]
# float32 against float64 differs by about 5e-7; what zennit 0.5's merge leaves
# (1/sqrt(1 + eps) per BatchNorm) moves these maps by 1e-5 and more.
NUMPY_TOLERANCE = 2e-6


@pytest.mark.parametrize('method, options, setting', SETTING_CASES)
def test_lrp_settings_match_a_numpy_transcription(lrp_resnet, method, options, setting):
  """Each canonizer setting and preset against float64 NumPy, with non-trivial
  BatchNorm and biases; where zennit 0.5's eps is kept, the comparison sees it."""
  model, variables, x, target = lrp_resnet
  got = np.asarray(saliency.attribute(method, model, variables, x, jnp.asarray(target),
                                      **options))

  def error(numpy_setting):
    expected = numpy_lrp.lrp(torch_state_dict(variables),
                             np.asarray(x, np.float64).transpose(0, 3, 1, 2), target,
                             method.removeprefix('lrp_'), numpy_setting, model.stage_sizes)
    expected = expected.transpose(0, 2, 3, 1)
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)

  numpy_setting = numpy_lrp.SETTINGS[setting]
  assert error(numpy_setting) < NUMPY_TOLERANCE
  if numpy_setting.keep_eps:
    assert error(numpy_setting._replace(keep_eps=False)) > 4 * NUMPY_TOLERANCE


@pytest.mark.parametrize('method', LRP_METHODS)
@pytest.mark.parametrize('setting', ['reference', 'conserving'])
def test_lrp_conserves_only_with_norm_rule_sums_on_a_bias_free_resnet(lrp_resnet, method,
                                                                       setting):
  """The Norm rule at residual sums conserves relevance; the reference's plain sums
  hand it whole to both branches, so it doubles at each of the two blocks.

  Some z+/z- denominators vanish on sparse ReLU inputs, which drops a little
  relevance (zennit does the same): the totals hold within a few percent.
  """
  model, variables, x, target = lrp_resnet
  options = CONSERVING if setting == 'conserving' else REFERENCE_OPTIONS.get(method, {})
  relevance = saliency.attribute(method, model, bias_free(variables), x, jnp.asarray(target),
                                 **options)
  blocks = sum(model.stage_sizes)
  expected = 1.0 if setting == 'conserving' else 2.0**blocks
  np.testing.assert_allclose(np.asarray(relevance).sum(axis=(1, 2, 3)), expected, rtol=0.05)


def test_canonize_and_preset_refuse_unknown_values(tiny_resnet):
  model, variables = tiny_resnet
  x = jnp.zeros((1, 32, 32, 3))
  for value in ('yes', 'Reference', 1, 0.0):
    with pytest.raises(ValueError, match=r"canonize must be 'reference'.*True.*False"):
      saliency.attribute('lrp_epsilon_plus', model, variables, x, jnp.array([0]), canonize=value)
  with pytest.raises(ValueError, match=r"preset must be one of \('reference', 'conserving'\)"):
    saliency.attribute('excitation_backprop', model, variables, x, jnp.array([0]),
                       preset='zennit')


def test_explicit_canonize_overrides_the_preset():
  assert lrp.resolve_canonize('lrp', 'conserving', 'reference') == 'reference'
  assert lrp.resolve_canonize('excitation_backprop', 'reference', True) is True
  assert lrp.resolve_canonize('lrp', 'conserving', None) is True


def test_uncanonized_batchnorm_passes_relevance_unchanged(two_layer):
  """Without the canonizer a BatchNorm is its own layer with zennit's Pass rule."""
  model = ConvNoPool()
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 12, 12, 3))
  variables = randomize_batch_stats(model.init(jax.random.PRNGKey(1), x), jax.random.PRNGKey(2))
  target = jnp.array([1, 2])
  folded = saliency.attribute('lrp_epsilon_plus', model, variables, x, target, canonize=True)
  unfolded = saliency.attribute('lrp_epsilon_plus', model, variables, x, target, canonize=False)
  assert np.isfinite(np.asarray(unfolded)).all()
  assert not np.allclose(folded, unfolded)
  # With identity BatchNorms (gain 1, shift 0) folding changes nothing.
  def identity(path, leaf):
    name = path[-1].key
    if name in ('scale', 'var'):
      return jnp.full_like(leaf, 1.0 if name == 'scale' else 1.0 - 1e-5)
    return jnp.zeros_like(leaf) if name in ('mean',) or (name == 'bias' and 'fc' not in str(path)) else leaf
  plain = jax.tree_util.tree_map_with_path(identity, variables)
  assert_float32_paths_agree(
      saliency.attribute('lrp_epsilon_plus', model, plain, x, target, canonize=True),
      saliency.attribute('lrp_epsilon_plus', model, plain, x, target, canonize=False))


def test_deeplift_sums_to_delta_without_max_pool():
  model = ConvNoPool()
  x = jax.random.normal(jax.random.PRNGKey(4), (3, 12, 12, 3))
  variables = randomize_batch_stats(model.init(jax.random.PRNGKey(5), x), jax.random.PRNGKey(6))
  target = jnp.array([0, 3, 2])
  per_image = np.array([0.1, -0.2, 0.3], np.float32).reshape(3, 1, 1, 1)
  for baseline in (0.0, 0.3, per_image):
    attribution = saliency.attribute('deeplift', model, variables, x, target, baseline=baseline)
    filled = jnp.broadcast_to(jnp.asarray(baseline, x.dtype).reshape(-1, 1, 1, 1), x.shape)
    delta = model.apply(variables, x) - model.apply(variables, filled)
    np.testing.assert_allclose(np.asarray(attribution).sum(axis=(1, 2, 3)),
                               np.asarray(delta)[np.arange(3), target], rtol=1e-4, atol=1e-6)


def test_deeplift_shared_reference_equals_one_reference_per_image(tiny_resnet):
  """A scalar baseline runs one shared reference row; per-image rows give the same."""
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(11), (3, 32, 32, 3))
  target = jnp.array([0, 1, 4])
  shared = saliency.attribute('deeplift', model, variables, x, target, baseline=0.2)
  per_image = saliency.attribute('deeplift', model, variables, x, target,
                                 baseline=np.full((3, 1, 1, 1), 0.2, np.float32))
  assert_float32_paths_agree(shared, per_image)


def test_deeplift_sums_to_delta_on_a_resnet(tiny_resnet):
  """With a constant baseline the max pool's gradient conserves too: exact."""
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(7), (2, 32, 32, 3))
  target = jnp.array([2, 4])
  attribution = saliency.attribute('DeepLIFT', model, variables, x, target)
  delta = np.asarray(model.apply(variables, x) - model.apply(variables, jnp.zeros_like(x)))
  np.testing.assert_allclose(np.asarray(attribution).sum(axis=(1, 2, 3)),
                             delta[np.arange(2), np.asarray(target)], rtol=1e-4)


def test_layer_deeplift_by_hand_on_a_global_pool_head(tiny_resnet):
  """Above layer2 the head is linear: multipliers are W[:, t] / (h w)."""
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(8), (2, 32, 32, 3))
  target = np.array([0, 3])
  a_x = np.asarray(model.apply(variables, x, stop='layer2'), np.float64)
  a_r = np.asarray(model.apply(variables, jnp.zeros_like(x), stop='layer2'), np.float64)
  fc = np.asarray(variables['params']['fc']['kernel'], np.float64)
  _, h, w, c = a_x.shape
  attribution = (a_x - a_r) * fc[:, target].T[:, None, None, :] / (h * w)
  expected = sum(np.abs(torch_bicubic_reference(attribution[..., k], 32, 32)) for k in range(c))
  got = saliency.attribute('layer_deeplift', model, variables, x, jnp.asarray(target),
                           layer='layer2')
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  signed = saliency.attribute('layer_deeplift', model, variables, x, jnp.asarray(target),
                              layer='layer2', channels='sum')
  np.testing.assert_allclose(signed, torch_bicubic_reference(attribution.sum(-1), 32, 32),
                             rtol=1e-4, atol=1e-6)


def test_guided_grad_cam_is_guided_backprop_times_nearest_relu_cam(tiny_resnet):
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(9), (2, 32, 32, 3))
  target = np.array([1, 2])
  acts = np.asarray(model.apply(variables, x, stop='layer2'), np.float64)
  fc = np.asarray(variables['params']['fc']['kernel'], np.float64)
  cam = np.maximum((fc[:, target].T[:, None, None, :] / 16 * acts).sum(-1), 0)
  nearest = cam.repeat(8, axis=1).repeat(8, axis=2)  # 4x4 -> 32x32
  guided = np.asarray(saliency.attribute('guided_backprop', model, variables, x,
                                         jnp.asarray(target)))
  got = saliency.attribute('guided_grad_cam', model, variables, x, jnp.asarray(target),
                           layer='layer2')
  np.testing.assert_allclose(got, guided * nearest[..., None], rtol=1e-4, atol=1e-8)


def test_fullgrad_completeness_on_a_piecewise_linear_resnet(tiny_resnet):
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(10), (2, 32, 32, 3))
  target = jnp.array([3, 0])
  input_term, bias_terms = fullgrad_terms(model, variables, x, target)
  assert len(bias_terms) == 1 + 2 * 3 + 2  # stem, 3 convs a block, 2 downsamples
  total = np.asarray(input_term).sum(axis=(1, 2, 3)) + sum(
      np.asarray(t).sum(axis=(1, 2, 3)) for t in bias_terms.values())
  total += np.asarray(variables['params']['fc']['bias'])[np.asarray(target)]
  logits = np.asarray(model.apply(variables, x))[np.arange(2), np.asarray(target)]
  np.testing.assert_allclose(total, logits, rtol=1e-4, atol=1e-5)
  saliency_map = np.asarray(saliency.attribute('fullgrad', model, variables, x, target))
  assert saliency_map.shape == (2, 32, 32)
  np.testing.assert_allclose(saliency_map.min(axis=(1, 2)), 0.0, atol=1e-6)
  np.testing.assert_allclose(saliency_map.max(axis=(1, 2)), 1.0, atol=1e-5)


def test_rule_methods_on_the_full_resnet50(resnet50, faces224):
  """Full size: LRP conserves without biases; DeepLIFT sums to delta."""
  model, variables = resnet50
  x = faces224[:1]
  target = jnp.array([4])
  relevance = saliency.attribute('LRP-EpsilonPlusFlat', model, bias_free(variables), x, target,
                                 preset='conserving')
  print('LRP-EpsilonPlusFlat relevance total, bias-free ResNet-50:', float(np.asarray(relevance).sum()))
  assert float(np.asarray(relevance).sum()) == pytest.approx(1.0, rel=1e-3)
  attribution = saliency.attribute('deeplift', model, variables, x, target)
  delta = float(model.apply(variables, x)[0, 4] - model.apply(variables, jnp.zeros_like(x))[0, 4])
  assert float(np.asarray(attribution).sum()) == pytest.approx(delta, rel=1e-3)
