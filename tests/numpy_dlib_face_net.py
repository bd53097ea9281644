"""An independent float64 NumPy transcription of dlib's face-recognition ResNet.

Written from dlib's definitions (``dnn_face_recognition_ex.cpp``'s
``anet_type``, ``layers.h``): NCHW activations, OIHW kernels, convolutions
with bias, ``affine`` as gamma * x + beta, unpadded stride-2 convolutions and
pools with floor sizes, stride-1 3x3 convolutions padded by 1, and
``add_prev`` adding two tensors of different shapes as if both were
zero-padded at the end to the larger one. It reads the Flax parameter tree
(kernels HWIO) but shares no code with gestaltxai.
"""

import numpy as np

from tests.numpy_reference import conv2d, relu


def conv_affine(x, p, stride):
  kernel = np.asarray(p['kernel'], np.float64).transpose(3, 2, 0, 1)  # HWIO -> OIHW
  pad = kernel.shape[-1] // 2 if stride == 1 else 0
  y = conv2d(x, kernel, stride, pad) + np.asarray(p['bias'], np.float64)[None, :, None, None]
  gamma, beta = (np.asarray(p[k], np.float64)[None, :, None, None] for k in ('scale', 'shift'))
  return gamma * y + beta


def pool(x, window, stride, reduce):
  n, c, h, w = x.shape
  oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
  out = np.empty((n, c, oh, ow))
  for i in range(oh):
    for j in range(ow):
      out[:, :, i, j] = reduce(x[:, :, i * stride:i * stride + window,
                                 j * stride:j * stride + window], axis=(2, 3))
  return out


def add_prev(a, b):
  """dlib's tt::add: the sum over the larger shape, each operand zero outside its own."""
  out = np.zeros([max(s, t) for s, t in zip(a.shape, b.shape)])
  out[tuple(slice(0, s) for s in a.shape)] += a
  out[tuple(slice(0, s) for s in b.shape)] += b
  return out


def forward(params, x_nhwc, stage_sizes=(3, 4, 3, 3, 1), stop='output'):
  """The descriptor (or logits with a 'head') of float64 NHWC preprocessed chips;
  stop='layer4' gives that stage's activations, NHWC."""
  x = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)
  x = pool(relu(conv_affine(x, params['stem'], 2)), 3, 2, np.max)
  for i, size in enumerate(stage_sizes):
    for j in range(size):
      down = i > 0 and j == 0
      block = params[f'layer{i + 1}_{j}']
      y = relu(conv_affine(x, block['conv1'], 2 if down else 1))
      y = conv_affine(y, block['conv2'], 1)
      shortcut = pool(x, 2, 2, np.mean) if down else x
      x = relu(add_prev(y, shortcut))
    if stop == f'layer{i + 1}':
      return x.transpose(0, 2, 3, 1)
  descriptor = x.mean(axis=(2, 3)) @ np.asarray(params['descriptor']['kernel'], np.float64)
  if 'fc' not in params:
    return descriptor
  head = params['fc']
  return descriptor @ np.asarray(head['kernel'], np.float64) + np.asarray(head['bias'], np.float64)
