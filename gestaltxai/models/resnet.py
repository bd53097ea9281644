"""The VGGFace2 ResNet-50 in Flax (NHWC), with stage access and backward rules.

This is the network of Cao et al. (VGGFace2, 2018) as converted from Caffe
(``resnet50_ft_weight.pkl``), not torchvision's ResNet-50:

* the stride-2 of a bottleneck sits on its first 1x1 convolution;
* the stem max-pool is 3x3, stride 2, no padding, ceil mode;
* the head average-pools 7x7 with stride 1 and flattens (so the input is
  224x224);
* BatchNorm uses eps 1e-5; inputs are BGR minus the channel mean.

Two fields give saliency methods what they need without hooks:

* ``__call__(x, start=..., stop=...)`` runs any contiguous span of
  :data:`STAGES`, so a layer method computes ``stop='layer4'`` activations,
  then differentiates ``start='layer4'`` from them.
* ``rules`` (:class:`~gestaltxai.models.rules.Rules`) decides what the
  backward pass of every activation, linear layer, residual sum and pool
  computes; forward values never change, except by the 1/sqrt(1 + eps) per
  BatchNorm that ``fold_keeps_eps`` keeps to reproduce zennit 0.5.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gestaltxai.models.rules import GRADIENT, Rules

Array = jax.Array

BATCHNORM_EPS = 1e-5
# PyTorch's convention: running = (1 - m) * running + m * batch statistic.
BATCHNORM_MOMENTUM = 0.1
BOTTLENECK_EXPANSION = 4
RESNET50_STAGE_SIZES = (3, 4, 6, 3)
VGGFACE2_POOL_WINDOW = 7
VGGFACE2_CLASSES = 8631

#: Names of the points a forward pass can start from or stop at, in order.
STAGES = ('input', 'stem', 'layer1', 'layer2', 'layer3', 'layer4', 'pool', 'logits')
LAYER_STAGES = ('layer1', 'layer2', 'layer3', 'layer4')

# Caffe/PyTorch VGGFace2 initialisation: N(0, 2 / (k * k * out_channels)).
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _torch_linear_init(fan_in: int):
  """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def max_pool_ceil(x: Array, window: int, stride: int) -> Array:
  """Max-pool (B, H, W, C) without padding, rounding the output size up.

  PyTorch's ``ceil_mode=True``: a last, partial window is kept as long as it
  starts inside the input.
  """
  padding = []
  for size in x.shape[1:3]:
    out = -(-(size - window) // stride) + 1
    if (out - 1) * stride >= size:
      out -= 1
    padding.append((0, (out - 1) * stride + window - size))
  # flax pads with -inf, so the extra cells never win.
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


class ConvBN(nn.Module):
  """A bias-free convolution and the BatchNorm after it (one PyTorch conv+bn pair).

  Parameters: ``kernel`` (kh, kw, in, out) float32, BatchNorm ``scale`` and
  ``bias`` (out,); ``batch_stats``: running ``mean`` and ``var`` (out,).
  With ``perturb_outputs`` the output passes through ``perturb('output')``,
  so a zero ``perturbations`` collection given to ``apply`` exposes its
  gradient.
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  is_first: bool = False
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32
  perturb_outputs: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    k, n = self.kernel_size, self.features
    kernel = self.param('kernel', _conv_init, (k, k, x.shape[-1], n), jnp.float32)
    scale = self.param('scale', nn.initializers.ones, (n,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (n,), jnp.float32)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (n,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (n,), jnp.float32)

    pad = ((self.padding, self.padding),) * 2
    strides = (self.stride, self.stride)

    def conv(inputs, w):
      return lax.conv_general_dilated(
          inputs, w.astype(self.dtype), strides, pad,
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

    rule = self.rules.first_layer if self.is_first else self.rules.conv
    x = x.astype(self.dtype)
    if train:
      y = rule(conv, x, kernel, None)
      y32 = y.astype(jnp.float32)
      mean = y32.mean(axis=(0, 1, 2))
      var = jnp.square(y32 - mean).mean(axis=(0, 1, 2))
      if not self.is_initializing():
        count = y.shape[0] * y.shape[1] * y.shape[2]
        unbiased = var * count / max(count - 1, 1)
        running_mean.value += BATCHNORM_MOMENTUM * (mean - running_mean.value)
        running_var.value += BATCHNORM_MOMENTUM * (unbiased - running_var.value)
    else:
      mean, var = running_mean.value, running_var.value
    gain = scale * lax.rsqrt(var + BATCHNORM_EPS)
    shift = bias - mean * gain
    if train:
      out = y * gain.astype(self.dtype) + shift.astype(self.dtype)
    elif self.rules.fold_batchnorm:
      out = rule(conv, x, kernel * gain, shift.astype(self.dtype))
      if self.rules.fold_keeps_eps:
        leftover = jnp.full((n,), 1.0 / math.sqrt(1.0 + BATCHNORM_EPS), self.dtype)
        out = self.rules.batchnorm(out, leftover, jnp.zeros((n,), self.dtype))
    else:
      out = self.rules.batchnorm(rule(conv, x, kernel, None), gain.astype(self.dtype),
                                 shift.astype(self.dtype))
    # The gradient of a zero perturbation is the gradient at this output
    # (FullGrad's bias terms); off by default so init stores no batch-shaped zeros.
    return self.perturb('output', out) if self.perturb_outputs else out


class Dense(nn.Module):
  """A fully connected layer, ``kernel`` (in, out) and ``bias`` (out,) float32."""

  features: int
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    init = _torch_linear_init(x.shape[-1])
    kernel = self.param('kernel', init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', init, (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    return self.rules.dense(lambda inputs, w: inputs @ w.astype(self.dtype),
                            x, kernel, bias.astype(self.dtype))


class Bottleneck(nn.Module):
  """1x1 (stride) -> 3x3 -> 1x1 with a residual sum; the VGGFace2 variant."""

  planes: int
  stride: int = 1
  downsample: bool = False
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32
  perturb_outputs: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    act = self.rules.activation
    kw = dict(rules=self.rules, dtype=self.dtype, perturb_outputs=self.perturb_outputs)
    out_features = self.planes * BOTTLENECK_EXPANSION
    y = act(ConvBN(self.planes, 1, self.stride, 0, name='conv1', **kw)(x, train))
    y = act(ConvBN(self.planes, 3, 1, 1, name='conv2', **kw)(y, train))
    y = ConvBN(out_features, 1, 1, 0, name='conv3', **kw)(y, train)
    if self.downsample:
      x = ConvBN(out_features, 1, self.stride, 0, name='downsample', **kw)(x, train)
    return act(self.rules.residual_sum(y, x.astype(y.dtype)))


class ResNet(nn.Module):
  """Bottleneck ResNet in the VGGFace2 layout.

  Attributes:
    num_classes: size of the head.
    stage_sizes: bottlenecks per stage (ResNet-50: 3, 4, 6, 3).
    width: channels of the stem (64); stage i has ``width * 2**i`` planes.
    pool_window: the head's average-pool window (VGGFace2: 7, which needs
      a 7x7 layer4, i.e. a 224x224 input); ``None`` averages globally.
    dtype: compute dtype (parameters stay float32; logits are at least float32).
    rules: backward rules of every layer (the true gradient by default).
    perturb_outputs: give every conv+BatchNorm output a 'perturbations'
      variable, whose gradient is the gradient at that output.
  """

  num_classes: int
  stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES
  width: int = 64
  pool_window: Optional[int] = VGGFACE2_POOL_WINDOW
  dtype: Any = jnp.float32
  rules: Rules = GRADIENT
  perturb_outputs: bool = False

  def setup(self):
    kw = dict(rules=self.rules, dtype=self.dtype, perturb_outputs=self.perturb_outputs)
    self.conv1 = ConvBN(self.width, 7, 2, 3, is_first=True, **kw)
    # Blocks are attributes named as PyTorch numbers them ('layer1_0' for
    # 'layer1.0'), which keeps the parameter tree readable and the port simple.
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        stride = 2 if (i > 0 and j == 0) else 1
        setattr(self, f'layer{i + 1}_{j}',
                Bottleneck(self.width * 2**i, stride, downsample=(j == 0), **kw))
    self.fc = Dense(self.num_classes, rules=self.rules, dtype=self.dtype)

  def _stem(self, x, train):
    x = self.rules.activation(self.conv1(x, train))
    return self.rules.max_pool(lambda h: max_pool_ceil(h, window=3, stride=2), x)

  def _pool(self, x, train):
    del train
    window = self.pool_window
    if window is not None and x.shape[1:3] != (window, window):
      raise ValueError(
          f'the VGGFace2 head average-pools a {window}x{window} layer4 (a 224x224 '
          f'input); got layer4 of {x.shape[1]}x{x.shape[2]}. Resize the input, or '
          'build the model with pool_window=None for global average pooling.')
    # A window-sized average pool with stride 1 is the mean over the map.
    return self.rules.average_pool(lambda h: h.mean(axis=(1, 2)), x)

  def __call__(self, x: Array, train: bool = False, *, start: str = 'input',
               stop: str = 'logits') -> Array:
    """Runs the stages after ``start`` up to and including ``stop``.

    Args:
      x: the activation at ``start``: for 'input', images (B, H, W, 3) BGR
        minus the channel mean; for a layer, (B, h, w, C).
      train: BatchNorm uses batch statistics and updates ``batch_stats``
        (pass ``mutable=['batch_stats']`` to ``apply``).
      start, stop: names from :attr:`stage_names`, ``start`` before ``stop``.

    Returns:
      The activation at ``stop``: logits (B, num_classes) float32 by default.
    """
    stages = self.stage_names
    if start not in stages or stop not in stages:
      raise ValueError(f'start and stop must be among {stages}; got {start!r}, {stop!r}')
    first, last = stages.index(start), stages.index(stop)
    if first >= last:
      raise ValueError(f'start {start!r} must come before stop {stop!r}')
    if start == 'input' and (x.ndim != 4 or x.shape[-1] != 3):
      raise ValueError(f'expected images (B, H, W, 3) NHWC, got shape {x.shape}')

    def run_stage(i):
      blocks = [getattr(self, f'layer{i + 1}_{j}') for j in range(self.stage_sizes[i])]
      return lambda h, train: self._run_blocks(blocks, h, train)

    stage_fns = {
        'stem': self._stem,
        **{f'layer{i + 1}': run_stage(i) for i in range(len(self.stage_sizes))},
        'pool': self._pool,
        'logits': lambda h, train: self.fc(h).astype(jnp.promote_types(self.dtype, jnp.float32)),
    }
    for name in stages[first + 1:last + 1]:
      x = stage_fns[name](x, train)
    return x

  @property
  def stage_names(self) -> tuple[str, ...]:
    """The points of this network, in order (:data:`STAGES` for ResNet-50)."""
    layers = tuple(f'layer{i + 1}' for i in range(len(self.stage_sizes)))
    return ('input', 'stem', *layers, 'pool', 'logits')

  @staticmethod
  def _run_blocks(blocks, x, train):
    for block in blocks:
      x = block(x, train)
    return x


def ResNet50(num_classes: int, dtype: Any = jnp.float32, **kwargs) -> ResNet:  # pylint: disable=invalid-name
  """The VGGFace2 ResNet-50; ``apply(variables, x)`` gives logits (B, num_classes)."""
  return ResNet(num_classes=num_classes, dtype=dtype, **kwargs)
