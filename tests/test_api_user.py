"""The research API from a user's side (issue 21): own small linen, NNX and function models,
the public API only. Every item gives the right number (against jax.grad, a brute-force
loop or an axiom) or an error that names the fix."""

import itertools
import math
import warnings
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gestaltxai import saliency
from gestaltxai.models import GRADIENT, ModelContractError, Rules, explainable
from gestaltxai.models.resnet import Dense
from gestaltxai.regions import coefficients

SIDE = 8  # tiny images: every test here compiles in well under a second
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, SIDE, SIDE, 3)).astype(np.float32)
W = (RNG.normal(size=(SIDE * SIDE * 3, 3)) / 8).astype(np.float32)


def tanh_model(w, x):
  """A level-1 model as a plain function: non-linear, so regions interact."""
  return jnp.tanh(x.reshape(x.shape[0], -1) @ w)


def quadrants(first_label: int) -> np.ndarray:
  """(2, SIDE, SIDE) int: four quadrants labelled first_label..first_label + 3."""
  half = SIDE // 2
  labels = np.zeros((SIDE, SIDE), np.int32)
  labels[:half, half:], labels[half:, :half], labels[half:, half:] = 1, 2, 3
  return np.broadcast_to(labels + first_label, (2, SIDE, SIDE)).copy()


def brute_force_shapley(model, w, x, labels, target, players):
  """(B, len(players)) exact Shapley values from every coalition, float64 in NumPy."""
  x64, w64 = np.float64(x), np.float64(w)
  value = {}
  for size in range(len(players) + 1):
    for coalition in itertools.combinations(players, size):
      kept = np.isin(labels, coalition)[..., None]
      logits = np.tanh(np.where(kept, x64, 0.0).reshape(len(x), -1) @ w64)
      value[frozenset(coalition)] = logits[np.arange(len(x)), target]
  n = len(players)
  phi = np.zeros((len(x), n))
  for i, player in enumerate(players):
    others = [p for p in players if p != player]
    for size in range(n):
      weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
      for coalition in itertools.combinations(others, size):
        phi[:, i] += weight * (value[frozenset(coalition) | {player}] - value[frozenset(coalition)])
  return phi


# 1, 12: region players are exactly the labels present or declared; sparse ids remapped.

@pytest.mark.parametrize('first_label', [0, 1])
def test_region_shapley_counts_every_quadrant_whatever_its_labels(first_label):
  labels, target = quadrants(first_label), np.array([0, 2])
  players = list(range(first_label, first_label + 4))
  got = np.asarray(saliency.attribute('region_shapley', tanh_model, W, X, target, regions=labels))
  assert got.shape == (2, first_label + 4)  # column k is label k
  # float32 forwards against a float64 loop: differences of logits of size ~1.
  np.testing.assert_allclose(got[:, players],
                             brute_force_shapley(tanh_model, W, X, labels, target, players),
                             atol=2e-5)
  if first_label:
    assert np.isnan(got[:, 0]).all()  # label 0 is in no image: NaN, as coefficients
  # Efficiency: the values add up to f(x) - f(baseline) over all four quadrants.
  whole = np.tanh(np.float64(X).reshape(2, -1) @ np.float64(W))[np.arange(2), target]
  np.testing.assert_allclose(np.nansum(got, 1), whole - np.tanh(0.0), atol=2e-5)


def test_declared_regions_refuse_a_label_they_would_drop_and_hold_background_on_request():
  with pytest.raises(ValueError, match=r'labels \[4\] that are neither players.*background='):
    saliency.attribute('region_occlusion', tanh_model, W, X, regions=quadrants(1),
                       num_regions=4)
  # Under jit the map is traced: the image with a stray label is NaN, not a dropped region.
  labels = quadrants(0)
  labels[1, 0, 0] = 9
  traced = jax.jit(lambda r: saliency.region_occlusion(tanh_model, W, X, regions=r,
                                                       num_regions=4))(labels)
  assert np.isfinite(traced[0]).all() and np.isnan(traced[1]).all()
  # background=0 holds label 0 fixed: its column is 0, the other three are still exact.
  target = np.array([1, 1])
  held = saliency.attribute('region_shapley', tanh_model, W, X, target, regions=quadrants(0),
                            background=0)
  np.testing.assert_array_equal(held[:, 0], 0)
  x_kept = np.where((quadrants(0) == 0)[..., None], X, 0.0)  # v(no player) keeps label 0
  whole = np.tanh(X.reshape(2, -1) @ W)[:, 1] - np.tanh(x_kept.reshape(2, -1) @ W)[:, 1]
  np.testing.assert_allclose(held.sum(1), whole, atol=2e-5)


def test_sparse_region_ids_play_as_three_players_exactly():
  sparse = np.choose(quadrants(0), [0, 5, 10, 20]).astype(np.int32)
  target = np.array([0, 1])
  got = saliency.attribute('region_shapley', tanh_model, W, X, target, regions=sparse,
                           background=0, key=jax.random.key(1))
  dense = saliency.attribute('region_shapley', tanh_model, W, X, target, regions=quadrants(0),
                             background=0)
  assert got.shape == (2, 21)
  np.testing.assert_allclose(got[:, [5, 10, 20]], dense[:, 1:], atol=1e-6)
  assert np.isnan(np.delete(got, [0, 5, 10, 20], axis=1)).all()  # no such label
  # 2^3 coalitions, not permutation sampling: no dependence on the key.
  assert saliency.METHODS['region_shapley'].passes(SIDE, SIDE, region_ids=(5, 10, 20)) == (8, 0)
  again = saliency.attribute('region_shapley', tanh_model, W, X, target, regions=sparse,
                             background=0, key=jax.random.key(2))
  np.testing.assert_array_equal(got, again)


def test_coefficients_share_the_convention_and_refuse_float_maps():
  relevance = np.abs(X).sum(-1)
  labels = quadrants(1)
  coefs = np.asarray(coefficients(relevance, labels, 6))
  loop = [[relevance[b][labels[b] == k].mean() if (labels[b] == k).any() else np.nan
           for k in range(6)] for b in range(2)]
  np.testing.assert_allclose(coefs, loop, rtol=1e-6)  # label 0 and 5: no pixel, NaN
  with pytest.raises(TypeError, match='int label map'):
    coefficients(relevance, labels.astype(np.float32), 6)


# 2, 6: targets out of range are errors on every path; binary models.

def test_out_of_range_targets_raise_on_host_paths_and_give_nan_under_jit():
  bad = np.array([0, 3])  # 3 classes: 1-based labels
  for call in (lambda: saliency.attribute('gradient', tanh_model, W, X, bad),
               lambda: saliency.compiled('gradient', tanh_model)(W, X, bad),
               lambda: saliency.gradient(tanh_model, W, X, bad),
               lambda: saliency.attribute('gradient', tanh_model, W, X, np.array([-1, 0]))):
    with pytest.raises(ValueError, match=r'target classes must lie in \[0, 3\)'):
      call()
  traced = jax.jit(lambda t: saliency.gradient(tanh_model, W, X, t))(bad)
  assert np.isfinite(traced[0]).all() and np.isnan(traced[1]).all()
  # A regulariser with a bad label is NaN with a NaN gradient, never a silent 0.
  loss = lambda w, t: jnp.abs(saliency.gradient(tanh_model, w, X, t)).mean()
  value, grad = jax.jit(jax.value_and_grad(loss))(W, bad)
  assert np.isnan(value) and np.isnan(grad).any()
  shapley = jax.jit(lambda t: saliency.region_shapley(tanh_model, W, X, t, regions=quadrants(0),
                                                      num_regions=4))(bad)
  assert np.isnan(shapley[1]).all() and np.isfinite(shapley[0]).all()


def test_images_and_targets_are_checked_once_on_every_path(monkeypatch):
  """saliency.checks is the one place images and targets are checked, once per call."""
  from gestaltxai.saliency import checks
  counts = {}
  for name in ('images', 'targets'):
    def counted(*args, _name=name, _check=getattr(checks, name)):
      counts[_name] = counts.get(_name, 0) + 1
      return _check(*args)
    monkeypatch.setattr(checks, name, counted)
  target = np.array([0, 2])
  f = saliency.compiled('gradient', tanh_model)
  for call in (lambda: saliency.attribute('gradient', tanh_model, W, X, target),
               lambda: saliency.relevance('gradient', tanh_model, W, X, target),
               lambda: f(W, X, target),
               lambda: jax.jit(lambda x: f(W, x, target))(X),
               lambda: saliency.gradient(tanh_model, W, X, target),
               lambda: jax.jit(lambda x: saliency.gradient(tanh_model, W, x, target))(X)):
    counts.clear()
    call()
    assert counts == {'images': 1, 'targets': 1}
  counts.clear()
  saliency.predict(tanh_model, W, X)
  assert counts == {'images': 1}


def test_binary_model_explains_the_sign_and_both_classes():
  w = W[:, :1]
  binary = lambda v, x: x.reshape(x.shape[0], -1) @ v  # (B, 1) logit
  z = (X.reshape(2, -1) @ w)[:, 0]
  grad_z = jax.grad(lambda x: binary(w, x).sum())(X)
  predicted = saliency.predict(binary, w, X)
  np.testing.assert_array_equal(predicted, (z > 0).astype(int))
  got = saliency.attribute('gradient', binary, w, X)  # the predicted class of each image
  sign = np.where(z > 0, 1.0, -1.0)[:, None, None, None]
  np.testing.assert_allclose(got, sign * grad_z, rtol=1e-6)
  np.testing.assert_allclose(saliency.gradient(binary, w, X, np.array([1, 1])), grad_z, rtol=1e-6)
  np.testing.assert_allclose(saliency.compiled('gradient', binary)(w, X, np.array([0, 0])),
                             -grad_z, rtol=1e-6)
  with pytest.raises(ValueError, match='class 1 is the positive logit'):
    saliency.attribute('gradient', binary, w, X, np.array([2, 0]))


# 3: a (B,) baseline at B == C.

def test_a_vector_baseline_at_b_equal_c_is_refused_with_both_spellings():
  x3 = np.concatenate([X, X[:1]])  # B = C = 3
  with pytest.raises(ValueError, match=r'\(1, 1, 1, 3\).*\(3, 1, 1, 1\)'):
    saliency.attribute('integrated_gradients', tanh_model, W, x3, baseline=np.ones(3))
  per_image = saliency.attribute('integrated_gradients', tanh_model, W, x3,
                                 baseline=np.ones((3, 1, 1, 1)), steps=2)
  image_shaped = saliency.attribute('integrated_gradients', tanh_model, W, x3,
                                    baseline=np.ones_like(x3), steps=2)
  np.testing.assert_allclose(per_image, image_shaped, rtol=1e-6)


# 4: max_batch bounds the images of one pass at any batch size.

def fanout(v, x):
  """Each pixel through WIDTH units: a pass's temporaries grow with its images."""
  return jnp.tanh(x[..., None] * v['w']).mean(axis=(1, 2, 3)) @ v['head']


def test_max_batch_bounds_images_per_pass_below_the_batch_size():
  v = {'w': jnp.linspace(-1.0, 1.0, 32), 'head': jnp.ones((32, 3)) / 32}

  def temp_bytes(batch, max_batch):
    f = saliency.compiled('integrated_gradients', fanout, steps=4, max_batch=max_batch)
    images = jnp.ones((batch, 16, 16, 3))
    compiled = f.lower(v, images, jnp.zeros(batch, jnp.int32)).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  two = temp_bytes(2, 2)
  assert temp_bytes(8, 2) < 1.25 * two  # passes of 2 images, one after another
  assert temp_bytes(8, 8) > 3 * two  # passes of 8 images hold 4x
  x8 = RNG.normal(size=(8, SIDE, SIDE, 3)).astype(np.float32)
  np.testing.assert_allclose(
      saliency.attribute('integrated_gradients', tanh_model, W, x8, max_batch=3, steps=4),
      saliency.attribute('integrated_gradients', tanh_model, W, x8, steps=4), rtol=1e-5,
      atol=1e-7)


# 5: LRP canonization on a user's rule-routed model.

class RoutedWithBatchNorm(nn.Module):
  """Routes its dense layers and activation through rules; its BatchNorm is Flax's own."""

  rules: Rules = GRADIENT
  routes_rules: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x):
    h = Dense(6, rules=self.rules, name='dense1')(x.reshape(x.shape[0], -1))
    h = nn.BatchNorm(use_running_average=True, name='bn')(h)
    return Dense(3, rules=self.rules, name='dense2')(self.rules.activation(h))


def test_lrp_refuses_a_fold_the_model_cannot_do():
  model = RoutedWithBatchNorm()
  variables = model.init(jax.random.PRNGKey(0), X)
  for options in ({}, {'preset': 'conserving'}, {'canonize': True}):
    with pytest.raises(ModelContractError, match='canonize=False'):
      saliency.attribute('lrp_epsilon_plus', model, variables, X, **options)
  assert saliency.attribute('lrp_epsilon_plus', model, variables, X,
                            canonize=False).shape == X.shape


# 7, 8: Flax layers named as written (linen and NNX); NNX as first-class.

class LinenCnn(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Conv(4, (3, 3), padding='SAME', name='conv1')(x)
    return nn.Dense(3, name='head')(nn.relu(h).mean(axis=(1, 2)))


def manual_grad_cam(activations, head, target):
  """Grad-CAM by hand: channel weights = spatial mean of d logit / d A."""
  grads = jax.grad(lambda a: head(a)[jnp.arange(len(target)), target].sum())(activations)
  return (grads.mean(axis=(1, 2), keepdims=True) * activations).sum(-1)


def test_grad_cam_on_a_linen_submodule_of_the_model_as_written():
  model = LinenCnn()
  variables = model.init(jax.random.PRNGKey(0), X)
  target = np.array([0, 2])
  params = variables['params']
  conv = lambda x: jax.lax.conv_general_dilated(
      x, params['conv1']['kernel'], (1, 1), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + params['conv1']['bias']
  head = lambda a: jax.nn.relu(a).mean(axis=(1, 2)) @ params['head']['kernel'] + params[
      'head']['bias']
  expected = manual_grad_cam(conv(X), head, target)  # same size as the input: no resize
  got = saliency.attribute('grad_cam', model, variables, X, target, layer='conv1')
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  with pytest.raises(ModelContractError, match=r"no submodule 'conv9'.*conv1"):
    saliency.attribute('grad_cam', model, variables, X, layer='conv9')
  with pytest.raises(ModelContractError, match='no default layer'):
    saliency.attribute('grad_cam', model, variables, X)


class NnxCnn(nnx.Module):
  """An NNX model following the layer protocol, with BatchNorm."""

  layers = ('features',)
  default_layer = 'features'

  def __init__(self, rngs):
    self.conv1 = nnx.Conv(3, 4, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.head = nnx.Linear(4, 3, rngs=rngs)

  def __call__(self, x, *, start='input', stop='logits'):
    if start == 'input':
      x = self.bn(self.conv1(x))
      if stop == 'features':
        return x
    return self.head(nnx.relu(x).mean(axis=(1, 2)))


def test_nnx_protocol_submodules_eval_mode_and_the_module_as_variables():
  model = NnxCnn(nnx.Rngs(0))
  with pytest.raises(ModelContractError, match=r'model.eval\(\)'):
    saliency.attribute('gradient', model, nnx.state(model), X)
  model.eval()
  target = np.array([1, 0])
  expected = manual_grad_cam(model(jnp.asarray(X), stop='features'),
                             lambda a: model(a, start='features'), target)
  for variables in (nnx.state(model), model):
    got = saliency.attribute('grad_cam', model, variables, X, target)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  # A submodule of the NNX model as written: the conv output before the BatchNorm.
  pre_bn = manual_grad_cam(model.conv1(jnp.asarray(X)),
                           lambda a: model(model.bn(a), start='features'), target)
  np.testing.assert_allclose(saliency.attribute('grad_cam', model, model, X, target,
                                                layer='conv1'), pre_bn, rtol=1e-4, atol=1e-6)
  gradient = jax.grad(lambda x: model(x)[jnp.arange(2), target].sum())(jnp.asarray(X))
  np.testing.assert_allclose(saliency.gradient(model, model, X, target), gradient, rtol=1e-5)


# 9: outputs that are not (B, K).

def test_output_selector_and_errors_that_name_it():
  as_dict = lambda w, x: {'logits': tanh_model(w, x), 'features': x}
  as_tuple = lambda w, x: (tanh_model(w, x), x)
  expected = saliency.attribute('gradient', tanh_model, W, X)
  np.testing.assert_allclose(saliency.attribute('gradient', as_dict, W, X, output='logits'),
                             expected)
  np.testing.assert_allclose(saliency.gradient(as_tuple, W, X, output=0), expected)
  np.testing.assert_allclose(saliency.compiled('gradient', explainable(as_dict, 'logits'))(W, X),
                             expected)
  for model in (as_dict, as_tuple, lambda w, x: tanh_model(w, x)[:, 0],
                lambda w, x: jnp.broadcast_to(x[..., :1], (*x.shape[:3], 3))):
    with pytest.raises(ModelContractError, match='output='):
      saliency.attribute('gradient', model, W, X)


# 10, 11, 13: a noise tunnel of any method, an empty batch, help.

def test_noise_tunnel_of_integrated_gradients_runs_on_every_path():
  tunnel = saliency.noise_tunnel(saliency.integrated_gradients, 'mean')
  key, options = jax.random.key(3), dict(steps=3, samples=2)
  pure = jax.jit(lambda x: tunnel(tanh_model, W, x, key=key, **options))(X)
  # Separately compiled float32 paths: sums of ~1e-3 gradients may differ in the last bits.
  tolerance = dict(rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(saliency.attribute(tunnel, tanh_model, W, X, key=key, **options),
                             pure, **tolerance)
  np.testing.assert_allclose(saliency.compiled(tunnel, tanh_model, **options)(W, X, key=key),
                             pure, **tolerance)


def test_an_empty_batch_gives_an_empty_result():
  assert saliency.attribute('integrated_gradients', tanh_model, W, X[:0]).shape == (0, SIDE,
                                                                                   SIDE, 3)
  assert saliency.relevance('gradient', tanh_model, W, X[:0]).shape == (0, SIDE, SIDE)


def test_help_shows_the_method_its_options_and_shapes():
  import pydoc
  text = pydoc.render_doc(saliency.integrated_gradients)
  assert 'Integrated gradients, (B, H, W, 3)' in text and 'steps = 20' in text


# 14: rough edges.

def test_rough_edges_are_clear_errors():
  with pytest.raises(TypeError, match=r'saliency.compiled'):
    jax.jit(lambda x: saliency.attribute('gradient', tanh_model, W, x))(X)
  with pytest.raises(TypeError, match=r'saliency.compiled'):
    jax.vmap(lambda x: saliency.attribute('gradient', tanh_model, W, x[None]))(X)
  with pytest.raises(ValueError, match=r'is \(8, 8\) here'):
    saliency.attribute('occlusion', tanh_model, W, X, window=(3, 8, 8))
  model = LinenCnn()
  variables = model.init(jax.random.PRNGKey(0), X)
  with pytest.raises(ValueError, match='relu must be True or False'):
    saliency.attribute('grad_cam', model, variables, X, layer='conv1', relu='no')
  functional = saliency.FunctionalModel(logits=tanh_model, features=lambda v, x, l: x,
                                        head=tanh_model, layers='conv')
  assert functional.layers == ('conv',) and functional.default_layer == 'conv'
  with pytest.warns(UserWarning, match='same noise on every call'):
    saliency.attribute('smoothgrad', tanh_model, W, X, samples=2)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    saliency.attribute('smoothgrad', tanh_model, W, X, samples=2, key=jax.random.key(0))
