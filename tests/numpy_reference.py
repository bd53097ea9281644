"""An independent float64 NumPy transcription of the PyTorch VGGFace2 ResNet-50.

Written from the PyTorch definition (NCHW activations, OIHW kernels,
``MaxPool2d(3, 2, padding=0, ceil_mode=True)``, ``AvgPool2d(7, stride=1)``,
eval-mode BatchNorm), reading the PyTorch state dict directly. It shares no
code with gestaltxai, so the port and the Flax model are checked against it.
"""

import numpy as np

EPS = 1e-5


def conv2d(x, w, stride, padding):
  """NCHW x, OIHW w, float64, by im2col."""
  x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
  n, c, h, wd = x.shape
  _, _, kh, kw = w.shape
  oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
  s = x.strides
  cols = np.lib.stride_tricks.as_strided(
      x, (n, c, kh, kw, oh, ow), (s[0], s[1], s[2], s[3], s[2] * stride, s[3] * stride))
  return np.tensordot(w, cols, axes=([1, 2, 3], [1, 2, 3])).transpose(1, 0, 2, 3)


def batchnorm(x, sd, name):
  g, b = sd[f'{name}.weight'], sd[f'{name}.bias']
  m, v = sd[f'{name}.running_mean'], sd[f'{name}.running_var']
  shape = (1, -1, 1, 1)
  return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + EPS) * g.reshape(shape) + b.reshape(shape)


def maxpool_ceil(x, k=3, s=2):
  n, c, h, w = x.shape
  oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
  out = np.full((n, c, oh, ow), -np.inf)
  for i in range(oh):
    for j in range(ow):
      out[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
  return out


def relu(x):
  return np.maximum(x, 0)


def bottleneck(x, sd, p, stride, downsample):
  out = relu(batchnorm(conv2d(x, sd[f'{p}.conv1.weight'], stride, 0), sd, f'{p}.bn1'))
  out = relu(batchnorm(conv2d(out, sd[f'{p}.conv2.weight'], 1, 1), sd, f'{p}.bn2'))
  out = batchnorm(conv2d(out, sd[f'{p}.conv3.weight'], 1, 0), sd, f'{p}.bn3')
  if downsample:
    x = batchnorm(conv2d(x, sd[f'{p}.downsample.0.weight'], stride, 0), sd, f'{p}.downsample.1')
  return relu(out + x)


def forward(sd, x_nchw, stage_sizes=(3, 4, 6, 3), global_pool=False, stop='logits'):
  """Logits (or, with stop='layer4', layer4 activations) for a float64 NCHW batch."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  x = relu(batchnorm(conv2d(x_nchw, sd['conv1.weight'], 2, 3), sd, 'bn1'))
  x = maxpool_ceil(x)
  for i, size in enumerate(stage_sizes):
    for j in range(size):
      stride = 2 if (i > 0 and j == 0) else 1
      x = bottleneck(x, sd, f'layer{i + 1}.{j}', stride, j == 0)
  if stop == 'layer4':
    return x
  if global_pool:
    x = x.mean(axis=(2, 3))
  else:  # AvgPool2d(7, stride=1) on a 7x7 map, then view(B, -1)
    assert x.shape[2:] == (7, 7), x.shape
    x = x.mean(axis=(2, 3))
  return x @ sd['fc.weight'].T + sd['fc.bias']

