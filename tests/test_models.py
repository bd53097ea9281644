"""The Flax VGGFace2 ResNet-50 and its port, against a float64 NumPy PyTorch transcription."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai.models import (ResNet, ResNet50, load_vggface2, port_vggface2,
                               random_vggface2_state_dict)
from tests import numpy_reference
from tests.tolerances import assert_float32_paths_agree


def nchw(x):
  return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


def test_ported_resnet50_matches_float64_pytorch_transcription(resnet50, resnet50_state_dict,
                                                               faces224):
  model, variables = resnet50
  logits = np.asarray(jax.jit(model.apply)(variables, faces224))
  expected = numpy_reference.forward(resnet50_state_dict, nchw(faces224))
  assert logits.shape == (4, 12)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_bfloat16_compute_keeps_top1_and_logits_close(resnet50, faces224):
  model, variables = resnet50
  f32 = np.asarray(jax.jit(model.apply)(variables, faces224))
  bf16_model = ResNet50(12, dtype=jnp.bfloat16)
  bf16 = np.asarray(jax.jit(bf16_model.apply)(variables, faces224))
  assert bf16.dtype == np.float32
  assert jax.tree.leaves(variables)[0].dtype == jnp.float32
  np.testing.assert_array_equal(bf16.argmax(-1), f32.argmax(-1))
  assert np.abs(bf16 - f32).max() <= 2e-2 * np.abs(f32).max()


def test_new_head_when_num_classes_differs_and_backbone_is_ported():
  rng = np.random.default_rng(3)
  sd = random_vggface2_state_dict(rng, num_classes=8631)
  variables = port_vggface2(sd, num_classes=12, rng=jax.random.PRNGKey(7))
  assert variables['params']['fc']['kernel'].shape == (2048, 12)
  bound = 1 / np.sqrt(2048)
  assert np.abs(variables['params']['fc']['kernel']).max() <= bound
  x = rng.normal(0, 40, (1, 224, 224, 3)).astype(np.float32)
  features = ResNet50(12).apply(variables, x, stop='pool')
  sd_no_head = dict(sd, **{'fc.weight': np.eye(2048, dtype=np.float32),
                           'fc.bias': np.zeros(2048, np.float32)})
  expected = numpy_reference.forward(sd_no_head, nchw(x))
  np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_load_vggface2_reads_latin1_pickle_and_npz(tmp_path, resnet50_state_dict, resnet50):
  _, variables = resnet50
  pkl = tmp_path / 'resnet50_ft_weight.pkl'
  with open(pkl, 'wb') as f:
    pickle.dump(resnet50_state_dict, f, protocol=2)
  npz = tmp_path / 'finetuned.npz'
  np.savez(npz, **{f'module.{k}': v for k, v in resnet50_state_dict.items()})
  for path in (pkl, npz):
    loaded = load_vggface2(path)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
      np.testing.assert_array_equal(a, b)


@pytest.fixture(scope='module')
def small_state_dict():
  return random_vggface2_state_dict(5, num_classes=12)


def test_port_errors_name_the_key_and_shapes(small_state_dict):
  bad = dict(small_state_dict)
  bad['layer9.0.conv1.weight'] = np.zeros((1,))
  with pytest.raises(KeyError, match=r"layer9\.0\.conv1\.weight"):
    port_vggface2(bad)
  missing = dict(small_state_dict)
  del missing['layer2.1.bn2.running_var']
  with pytest.raises(KeyError, match=r"layer2\.1\.bn2\.running_var"):
    port_vggface2(missing)
  wrong = dict(small_state_dict)
  wrong['layer3.0.conv2.weight'] = np.zeros((256, 256, 1, 1), np.float32)
  with pytest.raises(ValueError, match=r"layer3\.0\.conv2\.weight.*\(256, 256, 1, 1\).*\(256, 256, 3, 3\)"):
    port_vggface2(wrong)


def test_load_vggface2_bad_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothing.pkl'):
    load_vggface2(tmp_path / 'nothing.pkl')
  broken = tmp_path / 'broken.pkl'
  broken.write_bytes(b'not a pickle')
  with pytest.raises(ValueError, match='broken.pkl'):
    load_vggface2(broken)


def test_ceil_mode_maxpool_and_stage_sizes():
  """A 224 input gives 112 after conv1, 56 after the ceil-mode pool, 7 at layer4."""
  model = ResNet50(3)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  out = {s: jax.eval_shape(lambda v, x, s=s: model.apply(v, x, stop=s), shapes,
                           jnp.zeros((1, 224, 224, 3))).shape
         for s in ('stem', 'layer1', 'layer2', 'layer3', 'layer4')}
  assert out == {'stem': (1, 56, 56, 64), 'layer1': (1, 56, 56, 256),
                 'layer2': (1, 28, 28, 512), 'layer3': (1, 14, 14, 1024),
                 'layer4': (1, 7, 7, 2048)}
  # An odd size shows ceil mode: 113 -> conv1 57 -> pool ceil((57-3)/2)+1 = 28.
  tiny = ResNet(num_classes=2, stage_sizes=(1,), width=4, pool_window=None)
  v = tiny.init(jax.random.PRNGKey(0), jnp.zeros((1, 113, 113, 3)))
  assert tiny.apply(v, jnp.zeros((1, 113, 113, 3)), stop='stem').shape == (1, 28, 28, 4)


def test_stages_compose_and_bad_input_is_a_clear_error(tiny_resnet):
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  full = model.apply(variables, x)
  mid = model.apply(variables, x, stop='layer1')
  assert_float32_paths_agree(model.apply(variables, mid, start='layer1'), full)
  with pytest.raises(ValueError, match='NHWC'):
    model.apply(variables, jnp.zeros((2, 3, 32, 32)))
  with pytest.raises(ValueError, match='pool_window=7 needs a 7x7 layer4'):
    ResNet50(2, pool_window=7).init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  # By default the head averages globally: at 64 px, the mean of the 2x2 layer4.
  small = ResNet50(2)
  small_vars = small.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  x64 = jax.random.normal(jax.random.PRNGKey(1), (1, 64, 64, 3))
  layer4 = small.apply(small_vars, x64, stop='layer4')
  assert layer4.shape == (1, 2, 2, 2048)
  fc = small_vars['params']['fc']
  expected = np.asarray(layer4).mean(axis=(1, 2)) @ np.asarray(fc['kernel']) + np.asarray(fc['bias'])
  np.testing.assert_allclose(small.apply(small_vars, x64), expected, rtol=1e-4, atol=1e-4)


def test_train_mode_batchnorm_matches_numpy_and_updates_running_stats(tiny_resnet):
  model, variables = tiny_resnet
  x = jax.random.normal(jax.random.PRNGKey(3), (4, 32, 32, 3))
  stem_out, updates = model.apply(variables, x, train=True, stop='stem', mutable=['batch_stats'])
  # Hand computation of conv1 + batch-statistics BatchNorm + ReLU + ceil pool.
  params = variables['params']['conv1']
  w = np.asarray(params['kernel'], np.float64).transpose(3, 2, 0, 1)
  y = numpy_reference.conv2d(nchw(x), w, 2, 3)
  mean, var = y.mean(axis=(0, 2, 3)), y.var(axis=(0, 2, 3))
  y = (y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
  y = y * np.asarray(params['scale'])[None, :, None, None] + np.asarray(params['bias'])[None, :, None, None]
  expected = numpy_reference.maxpool_ceil(np.maximum(y, 0)).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(stem_out, expected, rtol=1e-4, atol=1e-4)
  n = y.shape[0] * y.shape[2] * y.shape[3]
  old = variables['batch_stats']['conv1']
  new = updates['batch_stats']['conv1']
  np.testing.assert_allclose(new['mean'], 0.9 * np.asarray(old['mean']) + 0.1 * mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(new['var'], 0.9 * np.asarray(old['var']) + 0.1 * var * n / (n - 1),
                             rtol=1e-4, atol=1e-5)
