"""dlib's face-recognition ResNet: the reader, the Flax module against dlib itself and
against a float64 NumPy transcription."""

import os
import shutil

import jax
import numpy as np
import pytest

from gestaltxai.models import DlibFormatError, dlib_face_net_path, load_dlib_face_net, read_face_net
from gestaltxai.models.dlib_face_net import (DLIB_STAGE_FEATURES, _stage_of_blocks,
                                             bgr_input_params, count_params)
from gestaltxai.models.dlib_format import FACE_NET_BLOCKS
from tests import numpy_dlib_face_net

# The count dlib's own net.print() ends with for this file (num_computational_layers 57).
DLIB_PARAMS = 5_614_592
PARITY_FACES = 12
# Both run the same float32 network; they differ by summation order only (dlib: its own
# CPU convolutions; ours: XLA's). Descriptors are O(0.1); the bar is 1e-5.
PARITY_ATOL = 1e-5


@pytest.fixture(scope='module')
def face_net():
  return load_dlib_face_net()


@pytest.fixture(scope='module')
def dlib_chips(fairface_dir):
  """PARITY_FACES (chip, dlib descriptor) pairs: dlib finds, aligns and describes each face."""
  import dlib
  from PIL import Image
  from gestaltxai.data.detect import PREDICTOR_5, model_path
  detector = dlib.get_frontal_face_detector()
  predictor = dlib.shape_predictor(model_path(PREDICTOR_5))
  recognizer = dlib.face_recognition_model_v1(dlib_face_net_path())
  chips, descriptors = [], []
  for name in sorted(os.listdir(fairface_dir / 'val'), key=lambda n: int(n.split('.')[0])):
    with Image.open(fairface_dir / 'val' / name) as im:
      image = np.asarray(im.convert('RGB'))
    faces = detector(image, 1)
    if not faces:
      continue
    shape = predictor(image, faces[0])
    chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
    descriptors.append(np.array(recognizer.compute_face_descriptor(image, shape)))
    if len(chips) == PARITY_FACES:
      break
  return np.stack(chips), np.stack(descriptors)


def test_reader_consumes_every_byte_and_counts_dlibs_parameters(face_net):
  path = dlib_face_net_path()
  weights = read_face_net(path)
  assert weights.num_bytes == os.path.getsize(path)
  assert weights.num_params == DLIB_PARAMS
  assert count_params(face_net[1]) == DLIB_PARAMS
  np.testing.assert_allclose(weights.input_mean, [122.782, 117.001, 104.298], atol=1e-3)


def test_reader_refuses_other_files_naming_them(tmp_path):
  path = dlib_face_net_path()
  with open(path, 'rb') as f:
    data = f.read()
  cases = {'truncated.dat': (data[:-100], 'ends early'),
           'longer.dat': (data + b'\x00', '1 bytes left'),
           'other.dat': (b'\x01\x01\x01\x0dloss_metric_2', 'ends early')}
  for name, (content, reason) in cases.items():
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DlibFormatError, match=reason) as error:
      read_face_net(str(tmp_path / name))
    assert name in str(error.value)
  from gestaltxai.data.detect import PREDICTOR_5, model_path
  shutil.copy(model_path(PREDICTOR_5), tmp_path / 'predictor.dat')
  with pytest.raises(DlibFormatError, match='predictor.dat'):
    read_face_net(str(tmp_path / 'predictor.dat'))


def test_stage_table_is_dlibs_block_layout():
  assert tuple((DLIB_STAGE_FEATURES[i], i > 0 and j == 0)
               for i, j in _stage_of_blocks()) == FACE_NET_BLOCKS


def test_descriptor_equals_dlibs_on_real_faces(face_net, dlib_chips):
  module, variables = face_net
  chips, expected = dlib_chips
  assert len(chips) >= 10
  got = np.asarray(jax.jit(module.apply)(variables, module.preprocess(chips)))
  np.testing.assert_allclose(got, expected, atol=PARITY_ATOL, rtol=0)
  distances = lambda d: np.linalg.norm(d[:, None] - d[None], axis=-1)
  np.testing.assert_allclose(distances(got), distances(expected), atol=2 * PARITY_ATOL, rtol=0)


def test_forward_matches_float64_numpy_transcription(face_net, dlib_chips):
  module, variables = face_net
  x = np.asarray(module.preprocess(dlib_chips[0][:2]))
  params = jax.tree.map(np.asarray, variables['params'])
  expected = numpy_dlib_face_net.forward(params, x)
  # float32 through 29 convolutions against float64: relative error ~1e-6 per layer.
  both = jax.jit(lambda v, x: (module.apply(v, x), module.apply(v, x, stop='layer4')))
  descriptor, layer4 = (np.asarray(a) for a in both(variables, x))
  np.testing.assert_allclose(descriptor, expected, atol=1e-5)
  assert layer4.shape == (2, 4, 4, 256)  # 3 x 3 branch zero-padded to the 4 x 4 shortcut
  np.testing.assert_allclose(layer4, numpy_dlib_face_net.forward(params, x, stop='layer4'),
                             atol=1e-4, rtol=1e-4)


def test_new_head_gives_logits_and_keeps_the_descriptor(face_net):
  module, variables = face_net
  head_module, head_variables = load_dlib_face_net(num_classes=5, rng=jax.random.PRNGKey(3))
  assert head_module.stage_names[-2:] == ('descriptor', 'logits')
  body = {k: v for k, v in head_variables['params'].items() if k != 'fc'}
  jax.tree.map(np.testing.assert_array_equal, body, variables['params'])
  descriptor = np.random.default_rng(0).normal(size=(3, 128))
  logits = head_module.apply(head_variables, descriptor, start='descriptor')
  head = jax.tree.map(lambda a: np.asarray(a, np.float64), head_variables['params']['fc'])
  np.testing.assert_allclose(logits, descriptor @ head['kernel'] + head['bias'], atol=1e-5)


def test_preprocess_is_dlibs_input_layer_and_refuses_floats(face_net):
  module, _ = face_net
  chips = np.zeros((1, 150, 150, 3), np.uint8)
  chips[..., 0] = 255
  got = np.asarray(module.preprocess(chips))[0, 0, 0]
  np.testing.assert_allclose(got, (np.array([255, 0, 0]) - module.input_mean) / 256, rtol=1e-6)
  with pytest.raises(ValueError, match='uint8'):
    module.preprocess(chips.astype(np.float32))


def test_bgr_input_params_take_the_packages_convention_exactly(face_net, dlib_chips):
  """The stem converted for BGR minus a mean gives dlib's descriptor from that input."""
  module, variables = face_net
  chips, expected = dlib_chips
  mean_bgr = np.array([91.4953, 103.8827, 131.0912], np.float32)
  bgr = chips[..., ::-1].astype(np.float32) - mean_bgr
  converted = {'params': bgr_input_params(variables['params'], mean_bgr)}
  got = np.asarray(jax.jit(module.apply)(converted, bgr))
  np.testing.assert_allclose(got, expected, atol=PARITY_ATOL, rtol=0)
