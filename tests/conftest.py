"""Shared fixtures: real faces from ../shared, small models, one full ResNet-50."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest


SHARED = pathlib.Path(__file__).resolve().parents[2] / 'shared'
FAIRFACE = SHARED / 'data' / 'fairface400'
VGGFACE2_MEAN_BGR = np.array([91.4953, 103.8827, 131.0912], np.float32)


@pytest.fixture(scope='session')
def fairface_dir():
  """The 400 FairFace photos; missing under CI is a failure, never a skip."""
  if not (FAIRFACE / 'train').is_dir():
    message = f'shared test data missing: {FAIRFACE} (see ../shared/README.md)'
    if os.environ.get('CI'):
      pytest.fail(message)
    pytest.skip(message)
  return FAIRFACE


def load_faces(directory, names, size=224):
  """RGB uint8 photos -> (N, size, size, 3) float32 BGR minus the VGGFace2 mean."""
  from PIL import Image
  images = []
  for name in names:
    with Image.open(directory / name) as im:
      rgb = np.asarray(im.convert('RGB').resize((size, size), Image.BILINEAR), np.float32)
    images.append(rgb[..., ::-1] - VGGFACE2_MEAN_BGR)
  return np.stack(images)


@pytest.fixture(scope='session')
def faces224(fairface_dir):
  return load_faces(fairface_dir / 'train', ['1.jpg', '2.jpg', '3.jpg', '4.jpg'])


@pytest.fixture(scope='session')
def resnet50_state_dict():
  """Random PyTorch-named ResNet-50 weights with non-trivial BatchNorm, 12 classes."""
  from gestaltxai.models import random_vggface2_state_dict
  return random_vggface2_state_dict(0, num_classes=12)


@pytest.fixture(scope='session')
def resnet50(resnet50_state_dict):
  """(model, variables) of the full ResNet-50, ported from the random state dict."""
  from gestaltxai.models import ResNet50, port_vggface2
  return ResNet50(12), port_vggface2(resnet50_state_dict)


@pytest.fixture(scope='session')
def tiny_resnet():
  """A two-stage bottleneck ResNet with random BatchNorm statistics (float32)."""
  from gestaltxai.models import ResNet
  model = ResNet(num_classes=5, stage_sizes=(1, 1), width=4, pool_window=None)
  variables = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)))
  variables = randomize_batch_stats(variables, jax.random.PRNGKey(2))
  return model, variables


def randomize_batch_stats(variables, key):
  """Gives every BatchNorm a non-trivial mean, variance, scale and bias."""
  leaves, tree = jax.tree_util.tree_flatten_with_path(variables)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    name = path[-1].key
    if name == 'mean':
      leaf = 0.2 * jax.random.normal(k, leaf.shape)
    elif name == 'var':
      leaf = jax.random.uniform(k, leaf.shape, minval=0.5, maxval=2.0)
    elif name == 'scale':
      leaf = jax.random.uniform(k, leaf.shape, minval=0.5, maxval=1.5)
    elif name == 'bias' and leaf.ndim == 1 and len(path) > 2:
      leaf = 0.1 * jax.random.normal(k, leaf.shape)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(tree, out)


#: Test files slowest first (measured on 2 cores: the demo about 5 minutes, the extraction
#: study, training across processes and devices, the benchmark smoke runs about 2 to 4 each).
#: xdist's --dist loadfile hands files to its workers in collection order and the suite ends
#: with its last file, so the long ones start at once and the short ones fill in beside them.
SLOWEST_FILES = ('test_demo.py', 'test_extract.py', 'test_train.py', 'test_benchmarks.py',
                 'test_faces.py', 'test_provenance.py', 'test_protocol.py', 'test_cost.py')


def pytest_collection_modifyitems(items):
  rank = {name: position for position, name in enumerate(SLOWEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FILES)))  # stable
