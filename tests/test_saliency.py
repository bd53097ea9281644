"""Saliency methods against independent references: finite differences, axioms,
closed forms, brute-force loops and a float64 NumPy ResNet-50."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from gestaltxai.saliency import execution
from gestaltxai.saliency.resize import resize_matrix
from tests import numpy_reference
from tests.tolerances import assert_float32_paths_agree
from tests.toy_models import Linear, Quadratic


@pytest.fixture(scope='module')
def images():
  return jax.random.normal(jax.random.PRNGKey(10), (2, 32, 32, 3)) * 2.0


def test_gradient_matches_central_differences_in_float64(tiny_resnet, images):
  model, variables = tiny_resnet
  with jax.enable_x64(True):
    model64 = model.clone(dtype=jnp.float64)
    v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    x = jnp.asarray(images, jnp.float64)
    target = jnp.array([1, 3])
    grad = saliency.gradient(model64, v64, x, target)
    rng = np.random.default_rng(0)
    eps = 1e-5
    for _ in range(12):
      b, i, j, c = rng.integers(2), rng.integers(32), rng.integers(32), rng.integers(3)
      e = jnp.zeros_like(x).at[b, i, j, c].set(eps)
      up, down = model64.apply(v64, x + e), model64.apply(v64, x - e)
      fd = (up[b, target[b]] - down[b, target[b]]) / (2 * eps)
      assert abs(float(grad[b, i, j, c]) - float(fd)) <= 1e-6 + 1e-5 * abs(float(fd))


def test_input_x_gradient_is_input_times_closed_form_gradient():
  model = Linear()
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  variables = model.init(jax.random.PRNGKey(1), x)
  target = jnp.array([0, 2])
  w = np.asarray(variables['params']['w'])
  np.testing.assert_allclose(saliency.attribute('gradient', model, variables, x, target),
                             w[[0, 2]], rtol=1e-6)
  np.testing.assert_allclose(saliency.attribute('input_x_gradient', model, variables, x, target),
                             np.asarray(x) * w[[0, 2]], rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_at_256_steps(tiny_resnet, images):
  model, variables = tiny_resnet
  target = jnp.array([0, 4])
  baseline = 0.5
  attribution = saliency.attribute('integrated_gradients', model, variables, images, target,
                                   steps=256, baseline=baseline, max_batch=64)
  logits = model.apply(variables, images)
  base_logits = model.apply(variables, jnp.full_like(images, baseline))
  delta = np.asarray(logits[jnp.arange(2), target] - base_logits[jnp.arange(2), target])
  total = np.asarray(attribution).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(total, delta, rtol=0.01)


# Closed forms of sum_k w_k alpha_k for each rule (Captum's definitions).
RULE_MOMENTS = {
    'riemann_right': lambda n: (n + 1) / (2 * n),
    'riemann_left': lambda n: (n - 1) / (2 * n),
    'riemann_middle': lambda n: 0.5,
    'riemann_trapezoid': lambda n: 0.5 - 1 / (2 * n),
    'gausslegendre': lambda n: 0.5,
}


@pytest.mark.parametrize('rule', sorted(RULE_MOMENTS))
def test_each_riemann_rule_matches_its_formula(rule):
  """For f = <w, x^2>, IG = 2 w x (x - b)... with b = 0: 2 w x^2 sum_k w_k alpha_k."""
  model = Quadratic()
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 4, 3))
  variables = model.init(jax.random.PRNGKey(3), x)
  target = jnp.array([1, 2])
  steps = 7
  attribution = saliency.attribute('integrated_gradients', model, variables, x, target,
                                   steps=steps, rule=rule)
  w = np.asarray(variables['params']['w'])[[1, 2]]
  expected = 2 * w * np.square(np.asarray(x)) * RULE_MOMENTS[rule](steps)
  np.testing.assert_allclose(attribution, expected, rtol=1e-5, atol=1e-6)


def test_unknown_rule_is_an_error(tiny_resnet, images):
  model, variables = tiny_resnet
  with pytest.raises(ValueError, match='riemann_sideways'):
    saliency.attribute('integrated_gradients', model, variables, images, rule='riemann_sideways')


def test_smoothgrad_with_zero_noise_equals_the_gradient(tiny_resnet, images):
  model, variables = tiny_resnet
  target = jnp.array([2, 2])
  grad = saliency.attribute('gradient', model, variables, images, target)
  smooth = saliency.attribute('smoothgrad', model, variables, images, target, noise_level=0.0,
                              samples=5)
  assert_float32_paths_agree(smooth, grad)
  # zennit: with one sample, that sample is the clean input.
  one = saliency.attribute('smoothgrad', model, variables, images, target, samples=1)
  assert_float32_paths_agree(one, grad)


def test_noise_family_on_a_linear_model():
  """The gradient of a linear model is constant: mean w, mean square w^2, variance 0."""
  model = Linear()
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 4, 4, 3))
  variables = model.init(jax.random.PRNGKey(5), x)
  target = jnp.array([1, 0])
  w = np.asarray(variables['params']['w'])[[1, 0]]
  kw = dict(sigma=0.7, samples=6, key=jax.random.PRNGKey(9))
  np.testing.assert_allclose(saliency.attribute('smoothgrad', model, variables, x, target, **kw),
                             w, rtol=1e-5)
  np.testing.assert_allclose(saliency.attribute('squaregrad', model, variables, x, target, **kw),
                             w**2, rtol=1e-5)
  np.testing.assert_allclose(saliency.attribute('vargrad', model, variables, x, target, **kw),
                             0.0, atol=1e-5)


def test_smoothgrad_noise_scale_follows_noise_level():
  """On f = <w, x^2>, E[2 w (x + e)] = 2 w x, but E[(2 w (x+e))^2] grows by 4 w^2 sigma^2."""
  model = Quadratic(num_classes=1)
  x = jnp.zeros((1, 8, 8, 3)).at[0, 0, 0, 0].set(10.0)  # max - min = 10
  variables = model.init(jax.random.PRNGKey(6), x)
  w = np.asarray(variables['params']['w'])[0]
  square = saliency.attribute('squaregrad', model, variables, x, jnp.array([0]),
                              samples=4000, noise_level=0.1, key=jax.random.PRNGKey(1),
                              max_batch=4000)
  sigma = 0.1 * 10.0
  expected = 4 * w**2 * (np.asarray(x[0])**2 + sigma**2)
  np.testing.assert_allclose(np.asarray(square[0]).mean(), expected.mean(), rtol=0.1)


def brute_force_occlusion(model, variables, x, target, window, stride, fill):
  """Captum's occlusion, one window at a time with Python loops."""
  _, h, w, _ = x.shape
  total = np.zeros(x.shape[:3])
  count = np.zeros(x.shape[:3])
  clean = np.asarray(model.apply(variables, x))[np.arange(len(x)), target]
  for top in range(0, h - window + stride, stride):
    rows = slice(top, min(top + window, h))
    for left in range(0, w - window + stride, stride):
      cols = slice(left, min(left + window, w))
      occluded = np.array(x)
      occluded[:, rows, cols, :] = fill
      scores = np.asarray(model.apply(variables, occluded))[np.arange(len(x)), target]
      total[:, rows, cols] += (clean - scores)[:, None, None]
      count[:, rows, cols] += 1
  return total / count


def test_occlusion_matches_a_brute_force_loop(tiny_resnet, images):
  model, variables = tiny_resnet
  target = np.array([3, 1])
  # 32 px, window 7, stride 4: ceil(25 / 4) + 1 = 8 windows a side, the last cut at the border.
  attribution = saliency.attribute('occlusion', model, variables, images, jnp.asarray(target),
                                   window=7, stride=4, baseline=0.25, max_batch=16)
  expected = brute_force_occlusion(model, variables, np.asarray(images), target, 7, 4, 0.25)
  np.testing.assert_allclose(attribution[..., 0], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(attribution[..., 0], attribution[..., 2])
  assert saliency.METHODS['occlusion'].passes(224, 224) == (785, 0)


def torch_bicubic_reference(maps, out_h, out_w):
  """PyTorch's upsample_bicubic2d (align_corners=False, A=-0.75), pixel by pixel."""
  a = -0.75

  def weights(t):
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    w3 = ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a
    return [w0, w1, w2, w3]

  b, h, w = maps.shape
  out = np.zeros((b, out_h, out_w))
  for i in range(out_h):
    sy = (i + 0.5) * h / out_h - 0.5
    y0 = int(np.floor(sy))
    wy = weights(sy - y0)
    for j in range(out_w):
      sx = (j + 0.5) * w / out_w - 0.5
      x0 = int(np.floor(sx))
      wx = weights(sx - x0)
      for m in range(4):
        for n in range(4):
          yy = min(max(y0 - 1 + m, 0), h - 1)
          xx = min(max(x0 - 1 + n, 0), w - 1)
          out[:, i, j] += wy[m] * wx[n] * maps[:, yy, xx]
  return out


def test_grad_cam_by_hand_on_a_global_pool_head(tiny_resnet, images):
  """With layer2 -> global mean -> fc, d logit_t / d A = W[:, t] / (h w) everywhere."""
  model, variables = tiny_resnet
  target = np.array([4, 0])
  activations = np.asarray(model.apply(variables, images, stop='layer2'), np.float64)
  fc = np.asarray(variables['params']['fc']['kernel'], np.float64)
  _, h, w, _ = activations.shape
  grads = np.broadcast_to(fc[:, target].T[:, None, None, :] / (h * w), activations.shape)
  cam = (grads.mean(axis=(1, 2), keepdims=True) * activations).sum(-1)
  expected = torch_bicubic_reference(cam, 32, 32)
  got = saliency.attribute('grad_cam', model, variables, images, jnp.asarray(target),
                           layer='layer2')
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  hires = saliency.attribute('hires_cam', model, variables, images, jnp.asarray(target),
                             layer='layer2')
  np.testing.assert_allclose(hires, torch_bicubic_reference((grads * activations).sum(-1), 32, 32),
                             rtol=1e-4, atol=1e-6)
  # Grad-CAM++ with constant gradients g: alpha = g^2 / (2 g^2 + S g^3 + eps) on g != 0.
  s = activations.sum(axis=(1, 2), keepdims=True)
  alpha = grads**2 / (2 * grads**2 + s * grads**3 + 1e-6)
  weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)
  plus = saliency.attribute('grad_cam_plus_plus', model, variables, images, jnp.asarray(target),
                            layer='layer2')
  np.testing.assert_allclose(plus, torch_bicubic_reference((weights * activations).sum(-1), 32, 32),
                             rtol=1e-3, atol=1e-6)


def test_bicubic_matrix_matches_pytorch_transcription():
  maps = np.random.default_rng(1).normal(size=(1, 5, 4))
  expected = torch_bicubic_reference(maps, 13, 9)
  got = np.einsum('Hh,bhw,Ww->bHW', resize_matrix(5, 13), maps, resize_matrix(4, 9))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_grad_cam_on_the_full_resnet50_against_float64_numpy(resnet50, resnet50_state_dict,
                                                            faces224):
  """VGGFace2 head: layer4 (7x7) -> 7x7 average -> fc, so G = W[:, t] / 49."""
  model, variables = resnet50
  x = faces224[:2]
  target = np.array([5, 9])
  layer4 = numpy_reference.forward(resnet50_state_dict, x.astype(np.float64).transpose(0, 3, 1, 2),
                                   stop='layer4').transpose(0, 2, 3, 1)
  fc = resnet50_state_dict['fc.weight'].astype(np.float64)  # (classes, 2048)
  cam = (fc[target][:, None, None, :] / 49 * layer4).sum(-1)
  expected = torch_bicubic_reference(cam, 224, 224)
  got = saliency.attribute('LayerGradCam', model, variables, x, jnp.asarray(target))
  np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_relevance_is_channel_sum_of_absolute_attribution(tiny_resnet, images):
  model, variables = tiny_resnet
  attribution = saliency.attribute('input_x_gradient', model, variables, images)
  rel = saliency.relevance('input_x_gradient', model, variables, images)
  assert_float32_paths_agree(rel, np.abs(np.asarray(attribution)).sum(-1))
  assert rel.shape == (2, 32, 32)


def test_default_target_is_the_predicted_class(tiny_resnet, images):
  model, variables = tiny_resnet
  predicted = np.asarray(model.apply(variables, images)).argmax(-1)
  np.testing.assert_array_equal(
      saliency.attribute('gradient', model, variables, images),
      saliency.attribute('gradient', model, variables, images, jnp.asarray(predicted)))


def test_bad_inputs_are_clear_errors(tiny_resnet, images):
  model, variables = tiny_resnet
  with pytest.raises(ValueError, match=r'images \[1\].*NaN'):
    saliency.attribute('gradient', model, variables, images.at[1, 3, 3, 0].set(jnp.nan))
  with pytest.raises(ValueError, match='NHWC'):
    saliency.attribute('gradient', model, variables, jnp.zeros((2, 3, 32, 32)))
  with pytest.raises(TypeError, match='floating'):
    saliency.attribute('gradient', model, variables, jnp.zeros((2, 32, 32, 3), jnp.int32))
  with pytest.raises(ValueError, match='target'):
    saliency.attribute('gradient', model, variables, images, jnp.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r'\[0, 5\)'):
    saliency.attribute('gradient', model, variables, images, jnp.array([0, 7]))
  with pytest.raises(ValueError, match='unknown saliency method'):
    saliency.attribute('gradcam', model, variables, images)


def test_same_shapes_do_not_recompile(tiny_resnet, images):
  model, variables = tiny_resnet
  saliency.attribute('integrated_gradients', model, variables, images, steps=4)
  before = execution._run_top._cache_size()
  saliency.attribute('integrated_gradients', model, variables, images * 0.5 + 1.0, steps=4)
  saliency.attribute('integrated_gradients', model, variables, -images, steps=4)
  assert execution._run_top._cache_size() == before


# The method table of ../shared/DESIGN.md ("Contract"): canonical name -> reference alias.
DESIGN_METHODS = {
    'gradient': 'Gradient', 'input_x_gradient': None,
    'integrated_gradients': 'IntegratedGradients', 'smoothgrad': 'SmoothGrad', 'vargrad': None,
    'squaregrad': None, 'occlusion': 'Occlusion', 'grad_cam': 'LayerGradCam',
    'grad_cam_plus_plus': None, 'hires_cam': None, 'guided_backprop': 'GuidedBackprop',
    'deconvnet': 'DeconvNet', 'guided_grad_cam': 'GuidedGradCam',
    'excitation_backprop': 'ExcitationBackprop', 'lrp_epsilon_plus': 'LRP-EpsilonPlus',
    'lrp_epsilon_plus_flat': 'LRP-EpsilonPlusFlat',
    'lrp_epsilon_alpha2_beta1': 'LRP-EpsilonAlpha2Beta1',
    'lrp_epsilon_alpha2_beta1_flat': 'LRP-EpsilonAlpha2Beta1Flat', 'deeplift': 'DEEPLIFT',
    'layer_deeplift': 'LayerDeepLIFT', 'fullgrad': None,
}


def test_every_design_method_and_alias_is_registered():
  assert set(DESIGN_METHODS) <= set(saliency.METHODS)
  for name, alias in DESIGN_METHODS.items():
    assert saliency.get_method(name).name == name
    if alias:
      assert saliency.get_method(alias).name == name
  assert saliency.get_method('DeepLIFT').name == 'deeplift'  # the reference script's spelling
