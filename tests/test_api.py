"""The functional API as research code uses it: any model, the contract's levels,
checked options, one compiled path and composition with JAX transformations."""

import functools
import os
import subprocess
import sys
import textwrap
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import regions, saliency
from gestaltxai.cli import methods as methods_command
from gestaltxai.models import GRADIENT, FunctionalModel, ModelContractError, Rules, softplus
from gestaltxai.saliency.lrp import DEFAULT_EPSILON, DEFAULT_STABILIZER
from gestaltxai.saliency.execution import relevance_of
from tests.tolerances import assert_float32_paths_agree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserCNN(nn.Module):
  """A researcher's CNN: conv -> ReLU (nn.relu) -> global mean -> dense.

  It has a ``rules`` field and ``start``/``stop`` arguments, but routes nothing
  through them and declares nothing: rule methods must refuse it.
  """

  num_classes: int = 3
  rules: Rules = GRADIENT

  @nn.compact
  def __call__(self, x, start='input', stop='logits'):
    h = nn.relu(nn.Conv(4, (3, 3), padding='SAME', name='conv')(x))
    return nn.Dense(self.num_classes, name='head')(h.mean(axis=(1, 2)))


class RuleCNN(nn.Module):
  """The same network following the protocol: a split at 'features' and rule support."""

  num_classes: int = 3
  rules: Rules = GRADIENT
  routes_rules: ClassVar[bool] = True
  layers: ClassVar[tuple] = ('features',)
  default_layer: ClassVar[str] = 'features'

  @nn.compact
  def __call__(self, x, *, start='input', stop='logits'):
    if start == 'input':
      kernel = self.param('kernel', nn.initializers.normal(0.5), (3, 3, x.shape[-1], 4))
      bias = self.param('bias', nn.initializers.normal(0.1), (4,))
      conv = lambda h, k: jax.lax.conv_general_dilated(h, k, (1, 1), 'SAME',
                                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      x = self.rules.activation(self.rules.first_layer(conv, x, kernel, bias))
      if stop == 'features':
        return x
    pooled = self.rules.average_pool(lambda h: h.mean(axis=(1, 2)), x)
    weight = self.param('weight', nn.initializers.normal(1.0), (4, self.num_classes))
    offset = self.param('offset', nn.initializers.normal(0.1), (self.num_classes,))
    return self.rules.dense(lambda h, w: h @ w, pooled, weight, offset)


@pytest.fixture(scope='module')
def images():
  return jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))


@pytest.fixture(scope='module')
def user_cnn(images):
  model = UserCNN()
  return model, model.init(jax.random.PRNGKey(1), images)


@pytest.fixture(scope='module')
def rule_cnn(images):
  model = RuleCNN()
  return model, model.init(jax.random.PRNGKey(2), images)


TARGET = jnp.array([0, 2])
LEVEL1 = {'gradient': {}, 'input_x_gradient': {}, 'integrated_gradients': {'steps': 5},
          'smoothgrad': {'samples': 3}, 'occlusion': {'window': 3, 'stride': 2}}


@pytest.mark.parametrize('name', sorted(LEVEL1))
def test_level1_methods_take_a_flax_module_or_a_plain_function_alike(user_cnn, images, name):
  model, variables = user_cnn
  from_module = saliency.attribute(name, model, variables, images, TARGET, **LEVEL1[name])
  as_function = lambda v, x: model.apply(v, x)
  from_function = saliency.attribute(name, as_function, variables, images, TARGET,
                                     **LEVEL1[name])
  assert_float32_paths_agree(from_module, from_function)
  assert from_module.shape == images.shape and np.abs(from_module).sum() > 0


@pytest.mark.parametrize('name,level', [('grad_cam', 2), ('guided_backprop', 3),
                                        ('lrp_epsilon_plus', 3), ('deeplift', 3),
                                        ('fullgrad', 3), ('guided_grad_cam', 3)])
def test_methods_refuse_a_model_that_does_not_declare_what_they_need(user_cnn, images, name,
                                                                     level):
  model, variables = user_cnn
  # A Flax module reaches level 2 through its submodules, but names no default layer.
  expected = f'{name} needs level {level}' if level == 3 else 'has no default layer'
  with pytest.raises(ModelContractError, match=expected) as error:
    saliency.attribute(name, model, variables, images, TARGET)
  assert ('provides level 2' if level == 3 else 'layer="conv1"') in str(error.value)
  assert ('routes_rules' if level == 3 else 'default_layer') in str(error.value)


def conv_same(x, kernel):
  """float64 NumPy 3x3 'SAME' correlation, (B, H, W, C) x (3, 3, C, F), by kernel offsets."""
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  height, width = x.shape[1:3]
  return sum(np.einsum('bhwc,cf->bhwf', padded[:, i:i + height, j:j + width], kernel[i, j])
             for i in range(3) for j in range(3))


def conv_same_adjoint(grad, kernel):
  """The transpose of :func:`conv_same`: (B, H, W, F) -> (B, H, W, C)."""
  height, width = grad.shape[1:3]
  padded = np.zeros((grad.shape[0], height + 2, width + 2, kernel.shape[2]))
  for i in range(3):
    for j in range(3):
      padded[:, i:i + height, j:j + width] += np.einsum('bhwf,cf->bhwc', grad, kernel[i, j])
  return padded[:, 1:-1, 1:-1]


def _numpy_forward(variables, x):
  p = {k: np.asarray(v, np.float64) for k, v in variables['params'].items()}
  z = conv_same(np.asarray(x, np.float64), p['kernel']) + p['bias']
  a = np.maximum(z, 0)
  pooled = a.mean(axis=(1, 2))
  return p, z, a, pooled, pooled @ p['weight'] + p['offset']


def _stabilize(z, epsilon):
  return z + np.where(z >= 0, epsilon, -epsilon)


def test_rule_cnn_guided_backprop_equals_a_hand_computation(rule_cnn, images):
  model, variables = rule_cnn
  p, z, _, _, _ = _numpy_forward(variables, images)
  area = z.shape[1] * z.shape[2]
  grad_a = np.broadcast_to((p['weight'][:, np.asarray(TARGET)].T / area)[:, None, None, :], z.shape)
  grad_z = grad_a * (z > 0) * (grad_a > 0)
  expected = conv_same_adjoint(grad_z, p['kernel'])
  result = saliency.attribute('guided_backprop', model, variables, images, TARGET)
  np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('name,flat_first', [('lrp_epsilon_plus', False),
                                             ('lrp_epsilon_plus_flat', True)])
def test_rule_cnn_lrp_equals_a_hand_computation(rule_cnn, images, name, flat_first):
  model, variables = rule_cnn
  x = np.asarray(images, np.float64)
  p, z, a, pooled, logits = _numpy_forward(variables, images)
  relevance_out = np.eye(3)[np.asarray(TARGET)]
  # Dense: epsilon rule; average pool: Norm rule; ReLU: pass.
  relevance_pooled = pooled * ((relevance_out / _stabilize(logits, DEFAULT_EPSILON)) @ p['weight'].T)
  area = a.shape[1] * a.shape[2]
  relevance_z = a / area * (relevance_pooled / _stabilize(pooled, DEFAULT_STABILIZER))[:, None, None]
  if flat_first:  # every input weighs 1 in every window it falls in
    ones = np.ones_like(p['kernel'])
    share = relevance_z / _stabilize(conv_same(np.ones_like(x), ones), DEFAULT_STABILIZER)
    expected = conv_same_adjoint(share, ones)
  else:  # z+ with negative inputs: W+ x+ + W- x- + b+
    kp, kn, xp, xn = (np.maximum(p['kernel'], 0), np.minimum(p['kernel'], 0), np.maximum(x, 0),
                      np.minimum(x, 0))
    positive = conv_same(xp, kp) + conv_same(xn, kn) + np.maximum(p['bias'], 0)
    share = relevance_z / _stabilize(positive, DEFAULT_STABILIZER)
    expected = xp * conv_same_adjoint(share, kp) + xn * conv_same_adjoint(share, kn)
  result = saliency.attribute(name, model, variables, images, TARGET)
  np.testing.assert_allclose(result, expected, rtol=2e-4, atol=1e-6)


def test_a_misspelled_option_names_the_closest_one(rule_cnn, images):
  model, variables = rule_cnn
  with pytest.raises(ValueError, match=r"no option 'step'; did you mean 'steps'\?"):
    saliency.attribute('integrated_gradients', model, variables, images, TARGET, step=5)
  with pytest.raises(ValueError, match=r"no option 'steps'.*layer, relu"):
    saliency.compiled('grad_cam', model, steps=5)
  with pytest.raises(ValueError, match="did you mean 'integrated_gradients'"):
    saliency.attribute('integrated_gradient', model, variables, images, TARGET)


@pytest.mark.parametrize('name,options,message', [
    ('smoothgrad', {'samples': 0}, 'samples must be a positive int'),
    ('occlusion', {'stride': 0}, 'stride must be a positive int'),
    ('integrated_gradients', {'max_batch': 0}, 'max_batch must be a positive int'),
    ('integrated_gradients', {'rule': 'simpson'}, 'rule must be one of'),
    ('smoothgrad', {'noise_level': -0.1}, 'noise_level must be non-negative'),
])
def test_option_values_are_checked_before_tracing(rule_cnn, images, name, options, message):
  model, variables = rule_cnn
  with pytest.raises(ValueError, match=message):
    saliency.attribute(name, model, variables, images, TARGET, **options)


def test_baselines_broadcast_by_numpy_rules_and_a_per_image_vector_is_refused(rule_cnn):
  model, variables = rule_cnn
  x = jax.random.normal(jax.random.PRNGKey(3), (3, 8, 8, 3))
  target = jnp.array([0, 1, 2])
  per_image = np.array([0.1, -0.2, 0.3], np.float32).reshape(3, 1, 1, 1)
  both = saliency.attribute('integrated_gradients', model, variables, x, target, steps=4,
                            baseline=per_image)
  for i in range(3):
    one = saliency.attribute('integrated_gradients', model, variables, x[i:i + 1], target[i:i + 1],
                             steps=4, baseline=float(per_image[i, 0, 0, 0]))
    assert_float32_paths_agree(both[i:i + 1], one)
  x4 = jnp.concatenate([x, x[:1]])
  with pytest.raises(ValueError, match=r'baseline of shape \(4,\) does not broadcast.*\(B, 1, 1, 1\)'):
    saliency.attribute('occlusion', model, variables, x4, jnp.array([0, 1, 2, 0]), window=4,
                       stride=4, baseline=np.zeros(4, np.float32))


def counting_model(model):
  """A FunctionalModel of ``model`` that counts how often its logits are traced."""
  traces = []

  def logits(variables, x):
    traces.append(x.shape)
    return model.apply(variables, x)

  return FunctionalModel(logits), traces


def test_compiled_traces_once_and_traced_options_do_not_recompile(rule_cnn, images):
  model, variables = rule_cnn
  counted, traces = counting_model(model)
  ig = saliency.compiled('integrated_gradients', counted, steps=4)
  first = ig(variables, images, TARGET)
  after_first = len(traces)
  second = ig(variables, images, TARGET)
  np.testing.assert_array_equal(first, second)
  ig(variables, images, TARGET, baseline=0.3)
  ig(variables, images, TARGET, baseline=0.7)
  assert len(traces) == after_first
  # attribute() shares the compiled computation and the logits' shape (traced once per
  # shapes, to check targets), and a new baseline value retraces nothing.
  saliency.attribute('integrated_gradients', counted, variables, images, TARGET, steps=4,
                     baseline=0.1)
  assert len(traces) == after_first
  saliency.attribute('integrated_gradients', counted, variables, images, TARGET, steps=4,
                     baseline=0.2)
  assert len(traces) == after_first
  # A traced option's value is used: 0.3 against a direct call.
  assert_float32_paths_agree(
      ig(variables, images, TARGET, baseline=0.3),
      saliency.integrated_gradients(model, variables, images, TARGET, steps=4, baseline=0.3))
  # A per-image baseline is another shape: one more compilation, then none.
  per_image = np.full((2, 1, 1, 1), 0.5, np.float32)
  assert_float32_paths_agree(ig(variables, images, TARGET, baseline=per_image),
                             ig(variables, images, TARGET, baseline=0.5))
  with_per_image = len(traces)
  assert with_per_image > after_first
  ig(variables, images, TARGET, baseline=per_image + 0.1)
  assert len(traces) == with_per_image
  # The target is optional: the predicted class.
  predicted = saliency.predict(model, variables, images)
  assert_float32_paths_agree(ig(variables, images), ig(variables, images, predicted))


def test_dtype_and_low_precision_inputs(rule_cnn, images):
  model, variables = rule_cnn
  half = saliency.attribute('gradient', model, variables, images.astype(jnp.float16), TARGET)
  assert half.dtype == jnp.float32
  bf16 = saliency.compiled('gradient', model, dtype='bfloat16')
  with pytest.raises(ModelContractError, match='no compute dtype'):
    bf16(variables, images, TARGET)


def test_non_finite_weights_are_reported_with_the_images(rule_cnn, images):
  model, variables = rule_cnn
  broken = jax.tree.map(lambda a: a, variables)
  broken['params']['weight'] = broken['params']['weight'].at[0, 0].set(jnp.nan)
  with pytest.raises(FloatingPointError, match=r"images \[0, 1\].*'weight'"):
    saliency.attribute('gradient', model, broken, images, TARGET)


METHODS_FOR_TARGETS = {'gradient': {}, 'integrated_gradients': {'steps': 3},
                       'smoothgrad': {'samples': 2}, 'occlusion': {'window': 4, 'stride': 4},
                       'grad_cam': {}, 'guided_backprop': {}, 'deeplift': {}}


@pytest.mark.parametrize('name', sorted(METHODS_FOR_TARGETS))
def test_several_targets_per_image_equal_separate_calls(rule_cnn, images, name):
  model, variables = rule_cnn
  targets = jnp.array([[0, 1, 2], [2, 0, 1]])
  key = jax.random.PRNGKey(7)
  together = saliency.attribute(name, model, variables, images, targets, key=key,
                                **METHODS_FOR_TARGETS[name])
  assert together.shape[:2] == (2, 3)
  for t in range(3):
    alone = saliency.attribute(name, model, variables, images, targets[:, t], key=key,
                               **METHODS_FOR_TARGETS[name])
    assert_float32_paths_agree(together[:, t], alone)


def test_jit_and_vmap_compose_with_methods(rule_cnn, images):
  model, variables = rule_cnn
  jitted = jax.jit(functools.partial(saliency.integrated_gradients, model, steps=4))
  # The same numbers up to float32 reordering: jit and vmap compile other programs
  # than attribute's (tests/tolerances.py says how far reordering can move them).
  assert_float32_paths_agree(
      jitted(variables, images, TARGET),
      saliency.attribute('integrated_gradients', model, variables, images, TARGET, steps=4))
  targets = jnp.array([[0, 1, 2], [2, 0, 1]])
  vmapped = jax.vmap(lambda t: saliency.gradient(model, variables, images, t), in_axes=1,
                     out_axes=1)(targets)
  assert_float32_paths_agree(vmapped, saliency.attribute('gradient', model, variables, images,
                                                         targets))


def test_grad_of_a_grad_cam_region_coefficient_equals_finite_differences(images):
  """Attacks on explanations differentiate through them: d coefficient / d x."""
  with jax.enable_x64(True):
    model = RuleCNN(rules=Rules(activation=softplus(4.0)))
    x = jnp.asarray(images[:1], jnp.float64)
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                             model.init(jax.random.PRNGKey(4), x))
    labels = jnp.asarray(np.repeat(np.arange(4), 16).reshape(1, 8, 8))
    target = jnp.array([1])

    def eye_coefficient(h):
      cam = saliency.grad_cam(model, variables, h, target)
      return regions.coefficients(relevance_of(cam, 'layer'), labels, 4)[0, 2]

    grad = jax.grad(eye_coefficient)(x)
    rng = np.random.default_rng(0)
    step = 1e-6
    for _ in range(6):
      i, j, c = rng.integers(8), rng.integers(8), rng.integers(3)
      e = jnp.zeros_like(x).at[0, i, j, c].set(step)
      fd = (eye_coefficient(x + e) - eye_coefficient(x - e)) / (2 * step)
      assert abs(float(grad[0, i, j, c]) - float(fd)) <= 1e-6 + 1e-5 * abs(float(fd))


def test_softplus_gives_gradient_maps_a_second_derivative(images):
  """Through ReLU the gradient of a gradient map is zero; through softplus it is not."""
  with jax.enable_x64(True):
    x = jnp.asarray(images, jnp.float64)

    def second(rules):
      model = RuleCNN(rules=rules)
      variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                               model.init(jax.random.PRNGKey(5), x))
      map_sum = lambda h: saliency.gradient(model, variables, h, TARGET).sum()
      return jax.grad(map_sum)(x), map_sum

    relu_second, _ = second(GRADIENT)
    assert float(jnp.abs(relu_second).max()) == 0.0
    smooth_second, map_sum = second(Rules(activation=softplus(3.0)))
    e = jnp.zeros_like(x).at[1, 4, 4, 0].set(1e-6)
    fd = (map_sum(x + e) - map_sum(x - e)) / 2e-6
    assert abs(float(smooth_second[1, 4, 4, 0]) - float(fd)) <= 1e-6 + 1e-5 * abs(float(fd))
    assert float(jnp.abs(smooth_second).max()) > 0


def test_an_nnx_module_works_at_level_one():
  from flax import nnx
  linear = nnx.Linear(2 * 2 * 3, 3, rngs=nnx.Rngs(0))

  class Flat(nnx.Module):
    def __init__(self):
      self.linear = linear

    def __call__(self, x):
      return self.linear(x.reshape(x.shape[0], -1))

  model = Flat()
  x = jax.random.normal(jax.random.PRNGKey(6), (2, 2, 2, 3))
  grad = saliency.attribute('gradient', model, nnx.state(model), x, TARGET)
  kernel = np.asarray(linear.kernel.value)  # (in, out): the gradient of logit k is column k
  np.testing.assert_allclose(grad, kernel[:, np.asarray(TARGET)].T.reshape(2, 2, 2, 3),
                             rtol=1e-6)
  # Level 2 through its submodules, but with no default layer it names the fix.
  with pytest.raises(ModelContractError, match='no default layer: name one'):
    saliency.attribute('grad_cam', model, nnx.state(model), x, TARGET)


def test_a_batch_sharded_over_four_devices_gives_the_one_device_maps(tmp_path):
  script = textwrap.dedent('''
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec
      from gestaltxai import saliency
      from tests.tolerances import assert_float32_paths_agree
      from gestaltxai.models import ResNet
      assert jax.device_count() == 4
      model = ResNet(num_classes=5, stage_sizes=(1, 1), width=4)
      x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 3))
      variables = model.init(jax.random.PRNGKey(1), x)
      target = jnp.arange(8) % 5
      mesh = Mesh(np.array(jax.devices()), ('data',))
      sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec('data')))
      for name in ('gradient', 'grad_cam', 'lrp_epsilon_plus'):
        f = saliency.compiled(name, model)
        one = np.asarray(f(variables, jax.device_put(x, jax.devices()[0]), target))
        spread = f(variables, sharded, target)
        assert len(spread.sharding.device_set) == 4, spread.sharding
        assert_float32_paths_agree(np.asarray(spread), one)
      print('ok')
  ''')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-3000:]


def test_the_readme_method_table_is_the_registry():
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  assert methods_command.markdown() in readme, 'regenerate with `gestaltxai methods --markdown`'
