"""A pure-Python reader of dlib's serialised face-recognition ResNet (``.dat``).

dlib writes a network with its own format (``dlib/serialize.h``):

* integers: a control byte (low nibble: the byte count, 0x80: negative),
  then the magnitude little-endian;
* floating point numbers: ``float_details``, an int64 mantissa and an int16
  exponent, value = mantissa * 2**exponent;
* booleans: the character '0' or '1'; strings: a length, then the bytes;
* tensors (version 2): n, k, nr, nc, then raw little-endian float32 data.

A layer wrapper writes its version, then its whole subnetwork, then its own
details, so the file holds the wrappers' versions from the output down, then
the input layer, then each layer's details from the input up. The reader
therefore needs the architecture in advance: :func:`face_net_layout` spells
out ``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``. The
tags it accepts are the older ones that file was written with (``con_4``,
``affine_``, ``relu_``, ``max_pool_2``, ``avg_pool_2``, ``add_prev_``,
``fc_2``) and their successors. Nothing is unpickled or executed.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

#: The face network's blocks, input side first: (filters, is a down-sampling block).
FACE_NET_BLOCKS = ((32, False),) * 3 + ((64, True),) + ((64, False),) * 3 + (
    (128, True),) + ((128, False),) * 2 + ((256, True),) + ((256, False),) * 2 + ((256, True),)
FACE_NET_STEM = 32
FACE_NET_DESCRIPTOR = 128
FACE_NET_INPUT_SIZE = 150
# float_details' exponents that stand for inf, -inf and NaN.
_SPECIAL_EXPONENTS = {32000: np.inf, 32001: -np.inf, 32002: np.nan}
_TENSOR_VERSION = 2
_ALIAS_TENSOR_VERSION = 1


class DlibFormatError(ValueError):
  """The file is not the dlib network the reader expects."""


@dataclasses.dataclass(frozen=True)
class Layer:
  """One ``add_layer`` of the network: its kind and, for a layer with parameters, what they are.

  Attributes:
    kind: 'con', 'affine', 'relu', 'max_pool', 'avg_pool', 'add_prev', 'fc'.
    window, stride: of a convolution or pooling (square); 0 for a global pool.
    filters: output channels of a convolution, outputs of a dense layer.
  """

  kind: str
  window: int = 0
  stride: int = 0
  filters: int = 0


@dataclasses.dataclass
class FaceNetWeights:
  """What the ``.dat`` file holds, as NumPy float32 arrays.

  Attributes:
    input_mean: (3,) the RGB means subtracted from the pixels (before / 256).
    convs: per convolution, input side first: (kernel (kh, kw, in, out), bias (out,)).
    affines: per affine layer, input side first: (gamma (C,), beta (C,)).
    fc_kernel: (256, 128), the descriptor's dense layer (no bias).
    num_bytes: the file's size; the reader consumed all of it.
  """

  input_mean: np.ndarray
  convs: list
  affines: list
  fc_kernel: np.ndarray
  num_bytes: int

  @property
  def num_params(self) -> int:
    arrays = [a for pair in self.convs + self.affines for a in pair] + [self.fc_kernel]
    return int(sum(a.size for a in arrays))


def _block_layers(filters: int, down: bool) -> list:
  """One residual block output-down: ('add', Layer) for add_layers, ('tag',) and ('skip',)."""
  stride = 2 if down else 1
  branch = [('add', Layer('affine')), ('add', Layer('con', 3, 1, filters)),
            ('add', Layer('relu')), ('add', Layer('affine')),
            ('add', Layer('con', 3, stride, filters)), ('tag',)]
  if down:  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<tag1<...>>>>>>>
    return [('add', Layer('relu')), ('add', Layer('add_prev')),
            ('add', Layer('avg_pool', 2, 2)), ('skip',), ('tag',)] + branch
  return [('add', Layer('relu')), ('add', Layer('add_prev'))] + branch  # relu<add_prev1<...>>


def face_net_layout() -> list:
  """The wrappers of ``anet_type`` from the output down (the loss layer excluded)."""
  layout = [('add', Layer('fc', filters=FACE_NET_DESCRIPTOR)), ('add', Layer('avg_pool'))]
  for filters, down in reversed(FACE_NET_BLOCKS):
    layout += _block_layers(filters, down)
  return layout + [('add', Layer('max_pool', 3, 2)), ('add', Layer('relu')),
                   ('add', Layer('affine')), ('add', Layer('con', 7, 2, FACE_NET_STEM))]


class _Stream:
  """Reads dlib's primitives from bytes, naming the file and offset on any mismatch."""

  def __init__(self, data: bytes, path: str):
    self.data, self.path, self.pos = data, path, 0

  def fail(self, what: str) -> DlibFormatError:
    return DlibFormatError(
        f'{self.path} is not dlib\'s face-recognition ResNet '
        f'(dlib_face_recognition_resnet_model_v1.dat from face_recognition_models): {what} '
        f'at byte {self.pos} of {len(self.data)}')

  def take(self, n: int) -> bytes:
    if self.pos + n > len(self.data):
      raise self.fail(f'the file ends early (wanted {n} more bytes)')
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def int(self) -> int:
    control = self.take(1)[0]
    size = control & 0x0F
    if size > 8 or control & 0x70:
      raise self.fail(f'bad integer control byte 0x{control:02x}')
    value = int.from_bytes(self.take(size), 'little')
    return -value if control & 0x80 else value

  def float(self) -> float:
    mantissa, exponent = self.int(), self.int()
    if exponent in _SPECIAL_EXPONENTS:
      return float(_SPECIAL_EXPONENTS[exponent])
    return float(np.ldexp(np.float64(mantissa), exponent))

  def bool(self) -> bool:
    char = self.take(1)
    if char not in (b'0', b'1'):
      raise self.fail(f'bad boolean {char!r}')
    return char == b'1'

  def string(self) -> str:
    size = self.int()
    if not 0 <= size <= 256:
      raise self.fail(f'implausible string length {size}')
    return self.take(size).decode('latin1')

  def tensor(self) -> np.ndarray:
    version = self.int()
    if version != _TENSOR_VERSION:
      raise self.fail(f'tensor version {version} (expected {_TENSOR_VERSION})')
    shape = tuple(self.int() for _ in range(4))
    count = int(np.prod(shape))
    return np.frombuffer(self.take(4 * count), '<f4').reshape(shape).astype(np.float32)

  def alias_tensor(self) -> tuple:
    version = self.int()
    if version != _ALIAS_TENSOR_VERSION:
      raise self.fail(f'alias tensor version {version} (expected {_ALIAS_TENSOR_VERSION})')
    return tuple(self.int() for _ in range(4))

  def tag(self, accepted: tuple) -> str:
    found = self.string()
    if found not in accepted:
      raise self.fail(f'layer tag {found!r} where the network has {" or ".join(accepted)}')
    return found

  def expect(self, found, wanted, what: str):
    if found != wanted:
      raise self.fail(f'{what} {found} (the face network has {wanted})')


def _read_con(s: _Stream, layer: Layer) -> tuple:
  version = s.tag(('con_4', 'con_5', 'con_6'))
  params = s.tensor()
  filters, rows, cols = s.int(), s.int(), s.int()
  stride_y, stride_x, pad_y, pad_x = s.int(), s.int(), s.int(), s.int()
  s.expect((filters, rows, cols, stride_y, stride_x), (layer.filters, layer.window, layer.window,
                                                       layer.stride, layer.stride),
           'convolution (filters, rows, cols, strides)')
  # dlib pads a stride-1 convolution by half its window and a strided one not at all.
  s.expect((pad_y, pad_x), (layer.window // 2 if layer.stride == 1 else 0,) * 2, 'padding')
  kernel_shape, bias_shape = s.alias_tensor(), s.alias_tensor()
  for _ in range(4):  # learning-rate and weight-decay multipliers
    s.float()
  if version in ('con_5', 'con_6'):
    s.expect(s.bool(), True, 'use_bias')
  if version == 'con_6':
    s.bool()
  kernel_size = int(np.prod(kernel_shape))
  flat = params.reshape(-1)
  s.expect(flat.size, kernel_size + int(np.prod(bias_shape)), 'convolution parameter count')
  kernel = flat[:kernel_size].reshape(kernel_shape).transpose(2, 3, 1, 0)  # OIHW -> HWIO
  return np.ascontiguousarray(kernel), flat[kernel_size:].copy()


def _read_affine(s: _Stream, layer: Layer) -> tuple:
  del layer
  version = s.tag(('affine_', 'affine_2'))
  params = s.tensor().reshape(-1)  # gamma, then beta
  gamma_size, beta_size = (int(np.prod(s.alias_tensor())) for _ in range(2))
  s.expect(params.size, gamma_size + beta_size, 'affine parameter count')
  s.int()  # mode: convolutional or fully connected
  if version == 'affine_2':
    s.expect(s.bool(), False, 'affine disabled')
  return params[:gamma_size].copy(), params[gamma_size:].copy()


def _read_relu(s: _Stream, layer: Layer):
  del layer
  if s.tag(('relu_', 'relu_2')) == 'relu_2':
    s.expect(s.bool(), False, 'relu disabled')


def _read_pool(s: _Stream, layer: Layer):
  s.tag((f'{layer.kind}_2',))
  rows, cols, stride_y, stride_x, pad_y, pad_x = (s.int() for _ in range(6))
  s.expect((rows, cols, stride_y, stride_x, pad_y, pad_x),
           (layer.window, layer.window, max(layer.stride, 1), max(layer.stride, 1), 0, 0),
           f'{layer.kind} (rows, cols, strides, padding)')


def _read_add_prev(s: _Stream, layer: Layer):
  del layer
  s.tag(('add_prev_',))


def _read_fc(s: _Stream, layer: Layer) -> np.ndarray:
  version = s.tag(('fc_2', 'fc_3'))
  outputs, inputs = s.int(), s.int()
  params = s.tensor()
  weight_shape = s.alias_tensor()
  s.alias_tensor()  # biases: empty without a bias
  bias_mode = s.int()
  for _ in range(4):
    s.float()
  if version == 'fc_3':
    s.bool()
  s.expect(outputs, layer.filters, 'descriptor size')
  s.expect(bias_mode, 1, 'fc bias mode (1: no bias)')
  s.expect(params.size, inputs * outputs, 'fc parameter count')
  s.expect(weight_shape[:2], (inputs, outputs), 'fc weight shape')
  return params.reshape(inputs, outputs).copy()


_READERS = {'con': _read_con, 'affine': _read_affine, 'relu': _read_relu,
            'max_pool': _read_pool, 'avg_pool': _read_pool, 'add_prev': _read_add_prev,
            'fc': _read_fc}


def _read_layer_state(s: _Stream, version: int, is_bottom: bool):
  """What an add_layer writes after its details: flags and its (empty) work tensors."""
  for _ in range(3):  # setup called, gradient stale, output and gradient disabled
    s.bool()
  s.tensor()  # x_grad
  s.tensor()  # cached_output
  if is_bottom:
    s.tensor()  # grad_final
    if version >= 3:
      s.int()  # sample expansion factor
  elif version >= 2:
    s.tensor()  # params_grad


def read_face_net(path: str) -> FaceNetWeights:
  """Reads ``dlib_face_recognition_resnet_model_v1.dat``; raises :class:`DlibFormatError`
  (naming the file and the byte) on any other file, and when bytes are left over."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no dlib network file at {path}')
  with open(path, 'rb') as f:
    s = _Stream(f.read(), path)
  s.expect(s.int(), 1, 'loss layer version')
  s.tag(('loss_metric_', 'loss_metric_2'))
  s.float(), s.float()  # margin, distance threshold
  layout = face_net_layout()
  versions = []
  for entry in layout:
    version = s.int()
    accepted = (1, 2, 3) if entry[0] == 'add' else (1,)
    if version not in accepted:
      raise s.fail(f'{entry[0]} layer version {version}')
    versions.append(version)
  s.tag(('input_rgb_image_sized',))
  input_mean = np.array([s.float() for _ in range(3)], np.float32)
  s.expect((s.int(), s.int()), (FACE_NET_INPUT_SIZE,) * 2, 'input size')
  found = {'con': [], 'affine': [], 'fc': []}
  adds = [(entry[1], version) for entry, version in zip(layout, versions) if entry[0] == 'add']
  for i, (layer, version) in enumerate(reversed(adds)):
    value = _READERS[layer.kind](s, layer)
    if layer.kind in found:
      found[layer.kind].append(value)
    _read_layer_state(s, version, is_bottom=(i == 0))
  if s.pos != len(s.data):
    raise s.fail(f'{len(s.data) - s.pos} bytes left after the network')
  return FaceNetWeights(input_mean=input_mean, convs=found['con'], affines=found['affine'],
                        fc_kernel=found['fc'][0], num_bytes=len(s.data))

