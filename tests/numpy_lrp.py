"""Layer-wise relevance propagation on a small bottleneck ResNet in float64 NumPy.

An independent transcription of what zennit computes on the reference's
network (zennit's rule definitions: ``Epsilon``, ``ZPlus``, ``AlphaBeta``,
``Flat``, ``Norm``, ``Pass``; its merge ``SequentialMergeBatchNorm``), with
the three canonizer settings of :mod:`gestaltxai.saliency.lrp` spelled out
layer by layer: NCHW activations, OIHW kernels, PyTorch state-dict names.
Each operation returns its output and a function from the relevance at its
output to the relevance at its input; it shares no code with gestaltxai.
"""

import functools
import typing

import numpy as np

from tests.numpy_reference import EPS as BATCHNORM_EPS
from tests.numpy_reference import conv2d, maxpool_ceil

STABILIZER = 1e-6


class Setting(typing.NamedTuple):
  """What a zennit canonizer makes of the network."""
  fold: bool  # each BatchNorm merged into the convolution before it
  keep_eps: bool  # the merged BatchNorm still divides by sqrt(1 + eps) (zennit 0.5)
  norm_sums: bool  # residual sums get the Norm rule (else: plain sums)


SETTINGS = {
    'reference': Setting(fold=True, keep_eps=True, norm_sums=False),  # the reference's network
    True: Setting(fold=True, keep_eps=False, norm_sums=True),  # torchvision's, zennit 1.0's merge
    False: Setting(fold=False, keep_eps=False, norm_sums=False),  # no canonizer
}


def stabilize(z, epsilon=STABILIZER):
  return z + np.where(z >= 0, epsilon, -epsilon)


def conv2d_transpose(g, w, stride, padding, input_shape):
  """The input gradient of ``conv2d(x, w, stride, padding)`` for output gradient g."""
  n, c, h, wd = input_shape
  _, _, kh, kw = w.shape
  oh, ow = g.shape[2:]
  out = np.zeros((n, c, h + 2 * padding, wd + 2 * padding))
  for i in range(kh):
    for j in range(kw):
      out[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += (
          np.einsum('noyx,oc->ncyx', g, w[:, :, i, j]))
  return out[:, :, padding:padding + h, padding:padding + wd]


def pos(a):
  return np.maximum(a, 0)


def neg(a):
  return np.minimum(a, 0)


# Rules: (x, w, b, r, f, f_t) -> relevance at x, where f(x, w) is the linear map
# without bias and f_t(g, w) its transpose.
def epsilon_rule(x, w, b, r, f, f_t, epsilon=1e-6):
  return x * f_t(r / stabilize(f(x, w) + b, epsilon), w)


def alpha_beta_rule(alpha, beta):
  def rule(x, w, b, r, f, f_t):
    xp, xn = pos(x), neg(x)
    z_pos = f(xp, pos(w)) + f(xn, neg(w)) + pos(b)
    z_neg = f(xp, neg(w)) + f(xn, pos(w)) + neg(b)
    c_pos, c_neg = r / stabilize(z_pos), r / stabilize(z_neg)
    positive = xp * f_t(c_pos, pos(w)) + xn * f_t(c_pos, neg(w))
    negative = xp * f_t(c_neg, neg(w)) + xn * f_t(c_neg, pos(w))
    return alpha * positive - beta * negative
  return rule


def flat_rule(x, w, b, r, f, f_t):
  del b
  ones = np.ones_like(w)
  return f_t(r / stabilize(f(np.ones_like(x), ones)), ones)


def conv(x, w, b, stride, padding, rule):
  f = lambda h, k: conv2d(h, k, stride, padding)
  f_t = lambda g, k: conv2d_transpose(g, k, stride, padding, x.shape)
  b = b[None, :, None, None]
  return f(x, w) + b, lambda r: rule(x, w, b, r, f, f_t)


def dense(x, w, b, rule):
  return x @ w.T + b, lambda r: rule(x, w, b, r, lambda h, k: h @ k.T, lambda g, k: g @ k)


def conv_bn(x, sd, conv_name, bn_name, stride, padding, rule, setting):
  """Convolution + eval BatchNorm -> (output, backward of the convolution, BatchNorm gain)."""
  w = sd[f'{conv_name}.weight']
  gain = sd[f'{bn_name}.weight'] / np.sqrt(sd[f'{bn_name}.running_var'] + BATCHNORM_EPS)
  shift = sd[f'{bn_name}.bias'] - sd[f'{bn_name}.running_mean'] * gain
  per_channel = lambda v: v[None, :, None, None]
  if not setting.fold:  # BatchNorm is a layer of its own, after the convolution
    y, conv_back = conv(x, w, np.zeros(len(gain)), stride, padding, rule)
    return y * per_channel(gain) + per_channel(shift), conv_back, per_channel(gain)
  y, conv_back = conv(x, w * gain[:, None, None, None], shift, stride, padding, rule)
  # zennit 0.5's merge sets the statistics to mean 0, variance 1 and keeps eps.
  leftover = 1 / np.sqrt(1 + BATCHNORM_EPS) if setting.keep_eps else 1.0
  return y * leftover, conv_back, leftover


def maxpool_backward(x, r, k=3, s=2):
  """The max pool's gradient: each output's relevance to its window's maximum."""
  out = np.zeros_like(x)
  n, c = x.shape[:2]
  rows, cols = np.meshgrid(np.arange(n), np.arange(c), indexing='ij')
  for i in range(r.shape[2]):
    for j in range(r.shape[3]):
      window = x[:, :, i * s:i * s + k, j * s:j * s + k]
      flat = window.reshape(n, c, -1).argmax(-1)
      di, dj = np.unravel_index(flat, window.shape[2:])
      np.add.at(out, (rows, cols, i * s + di, j * s + dj), r[:, :, i, j])
  return out


def sequence(h, *ops):
  """Runs ops (each h -> (output, backward)) in order; returns the output and the
  backward of the whole sequence."""
  backs = []
  for op in ops:
    h, back = op(h)
    backs.append(back)
  return h, lambda r: functools.reduce(lambda acc, back: back(acc), reversed(backs), r)


def lrp(sd, x, target, composite, setting, stage_sizes):
  """Relevance at the input (N, C, H, W) of a bottleneck ResNet, global average pool.

  Args:
    sd: PyTorch-named float64 state dict.
    composite: 'epsilon_plus', 'epsilon_plus_flat', 'epsilon_alpha2_beta1',
      'epsilon_alpha2_beta1_flat' or 'excitation_backprop'.
    setting: a :class:`Setting` (see :data:`SETTINGS`).
  """
  excitation = composite == 'excitation_backprop'
  conv_rule = alpha_beta_rule(2.0, 1.0) if 'alpha2' in composite else alpha_beta_rule(1.0, 0.0)
  first_rule = flat_rule if composite.endswith('flat') else conv_rule
  dense_rule = conv_rule if excitation else epsilon_rule
  # LRP composites: Pass at ReLUs and BatchNorms; excitation backprop: their gradients.
  keep = lambda r: r

  def relu(h):
    return pos(h), keep if not excitation else (lambda r: r * (h > 0))

  def convbn(conv_name, bn_name, stride, padding, rule=conv_rule):
    def op(h):
      y, conv_back, bn_gain = conv_bn(h, sd, conv_name, bn_name, stride, padding, rule, setting)
      bn_back = keep if not excitation else (lambda r: r * bn_gain)
      return y, lambda r: conv_back(bn_back(r))
    return op

  def maxpool(h):
    return maxpool_ceil(h), lambda r: maxpool_backward(h, r)

  def bottleneck(p, stride, downsample):
    def op(h):
      main, main_back = sequence(h, convbn(f'{p}.conv1', f'{p}.bn1', stride, 0), relu,
                                 convbn(f'{p}.conv2', f'{p}.bn2', 1, 1), relu,
                                 convbn(f'{p}.conv3', f'{p}.bn3', 1, 0))
      skip, skip_back = (convbn(f'{p}.downsample.0', f'{p}.downsample.1', stride, 0)(h)
                         if downsample else (h, keep))
      if setting.norm_sums:  # Norm rule: relevance in proportion to each branch's share
        sum_back = lambda r: (main * r / stabilize(main + skip), skip * r / stabilize(main + skip))
      else:  # a plain sum: its gradient hands r whole to both branches
        sum_back = lambda r: (r, r)
      y, relu_back = relu(main + skip)

      def back(r):
        r_main, r_skip = sum_back(relu_back(r))
        return main_back(r_main) + skip_back(r_skip)
      return y, back
    return op

  def average_pool(h):  # Norm rule
    z = h.mean(axis=(2, 3))
    return z, lambda r: h * (r / stabilize(z))[:, :, None, None] / np.prod(h.shape[2:])

  blocks = [bottleneck(f'layer{i + 1}.{j}', 2 if i > 0 and j == 0 else 1, j == 0)
            for i, size in enumerate(stage_sizes) for j in range(size)]
  logits, back = sequence(
      x, convbn('conv1', 'bn1', 2, 3, first_rule), relu, maxpool, *blocks, average_pool,
      lambda h: dense(h, sd['fc.weight'], sd['fc.bias'], dense_rule))
  return back(np.eye(logits.shape[1])[target])
