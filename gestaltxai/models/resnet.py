"""The VGGFace2 ResNet-50 in Flax (NHWC), with stage access and backward rules.

This is the network of Cao et al. (VGGFace2, 2018) as converted from Caffe
(``resnet50_ft_weight.pkl``), not torchvision's ResNet-50:

* the stride-2 of a bottleneck sits on its first 1x1 convolution;
* the stem max-pool is 3x3, stride 2, no padding, ceil mode;
* the head average-pools 7x7 with stride 1 and flattens, which at 224x224
  is the global average; other input sizes average globally (set
  ``pool_window=7`` to insist on 224);
* BatchNorm uses eps 1e-5; inputs are BGR minus the channel mean.

The module follows all three levels of the saliency contract
(:mod:`gestaltxai.models.contract`) without hooks:

* ``__call__(x, start=..., stop=...)`` runs any contiguous span of
  :data:`STAGES`, so a layer method computes ``stop='layer4'`` activations,
  then differentiates ``start='layer4'`` from them (``layers``,
  ``default_layer``).
* ``rules`` (:class:`~gestaltxai.models.rules.Rules`) decides what the
  backward pass of every activation, linear layer, residual sum and pool
  computes; forward values never change (``routes_rules``), except by the
  1/sqrt(1 + eps) per BatchNorm that ``fold_keeps_eps`` keeps to reproduce zennit 0.5.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional, Sequence

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


def batchnorm_affine(scale: Array, bias: Array, mean: Array, var: Array) -> tuple[Array, Array]:
  """BatchNorm as the affine map it is: y * gain + shift, both (C,)."""
  gain = scale * lax.rsqrt(var + BATCHNORM_EPS)
  return gain, bias - mean * gain


def probe_bias_output(module: nn.Module, output: Array, bias: Array) -> Array:
  """Exposes a biased layer's output to FullGrad when ``module.rules.probe_biases``.

  The output passes through ``perturb('output')`` (a zero ``perturbations``
  variable given to ``apply`` yields its gradient) and the effective bias is
  sown into the ``biases`` collection; off by default, so ``init`` stores no
  batch-shaped zeros.
  """
  if not module.rules.probe_biases:
    return output
  module.sow('biases', 'bias', bias)
  return module.perturb('output', output)


class ConvBN(nn.Module):
  """A bias-free convolution and the BatchNorm after it (one PyTorch conv+bn pair).

  Parameters: ``kernel`` (kh, kw, in, out) float32, BatchNorm ``scale`` and
  ``bias`` (out,); ``batch_stats``: running ``mean`` and ``var`` (out,).
  Training normalises with the batch's statistics and updates the running
  ones; evaluation applies the running statistics as an affine map, folded
  into the convolution when the rules ask for it (zennit's canonizers).
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  is_first: bool = False
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    k, n = self.kernel_size, self.features
    kernel = self.param('kernel', _conv_init, (k, k, x.shape[-1], n), jnp.float32)
    scale = self.param('scale', nn.initializers.ones, (n,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (n,), jnp.float32)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (n,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (n,), jnp.float32)
    rule = self.rules.first_layer if self.is_first else self.rules.conv
    x = x.astype(self.dtype)
    if train:
      y = rule(self._conv, x, kernel, None)
      mean, var = self._batch_statistics(y, running_mean, running_var)
      gain, shift = batchnorm_affine(scale, bias, mean, var)
      return y * gain.astype(self.dtype) + shift.astype(self.dtype)
    gain, shift = batchnorm_affine(scale, bias, running_mean.value, running_var.value)
    shift = shift.astype(self.dtype)
    if self.rules.fold_batchnorm:
      out = rule(self._conv, x, kernel * gain, shift)
      if self.rules.fold_keeps_eps:  # zennit 0.5's merge leaves the BatchNorm's eps behind
        leftover = jnp.full((n,), 1.0 / math.sqrt(1.0 + BATCHNORM_EPS), self.dtype)
        out = self.rules.batchnorm(out, leftover, jnp.zeros((n,), self.dtype))
    else:
      out = self.rules.batchnorm(rule(self._conv, x, kernel, None), gain.astype(self.dtype), shift)
    return probe_bias_output(self, out, shift)

  def _conv(self, inputs: Array, kernel: Array) -> Array:
    pad = ((self.padding, self.padding),) * 2
    return lax.conv_general_dilated(inputs, kernel.astype(self.dtype), (self.stride,) * 2, pad,
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def _batch_statistics(self, y: Array, running_mean, running_var) -> tuple[Array, Array]:
    """The batch's mean and (biased) variance per channel; updates the running ones.

    Over a batch sharded across devices these are the global batch's
    statistics: the reductions run over the whole (global) array.
    """
    y32 = y.astype(jnp.float32)
    mean = y32.mean(axis=(0, 1, 2))
    var = jnp.square(y32 - mean).mean(axis=(0, 1, 2))
    if not self.is_initializing():
      count = y.shape[0] * y.shape[1] * y.shape[2]
      unbiased = var * count / max(count - 1, 1)
      running_mean.value += BATCHNORM_MOMENTUM * (mean - running_mean.value)
      running_var.value += BATCHNORM_MOMENTUM * (unbiased - running_var.value)
    return mean, var


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

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    act = self.rules.activation
    kw = dict(rules=self.rules, dtype=self.dtype)
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
    pool_window: ``None`` (default) averages layer4 globally, which is the
      VGGFace2 head's 7x7 average at 224x224; an int insists on a layer4 of
      that size.
    dtype: compute dtype (parameters stay float32; logits are at least float32).
    rules: backward rules of every layer (the true gradient by default).
  """

  num_classes: int
  stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES
  width: int = 64
  pool_window: Optional[int] = None
  dtype: Any = jnp.float32
  rules: Rules = GRADIENT

  #: Level 3 of the saliency contract: every activation, linear map,
  #: residual sum and pool runs through ``rules``.
  routes_rules: ClassVar[bool] = True

  def setup(self):
    kw = dict(rules=self.rules, dtype=self.dtype)
    self.conv1 = ConvBN(self.width, 7, 2, 3, is_first=True, **kw)
    # Blocks are attributes named as PyTorch numbers them ('layer1_0' for
    # 'layer1.0'), which keeps the parameter tree readable and the port simple.
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        stride = 2 if (i > 0 and j == 0) else 1
        setattr(self, _block_name(i, j),
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
          f'pool_window={window} needs a {window}x{window} layer4; got '
          f'{x.shape[1]}x{x.shape[2]}. Resize the input, or leave pool_window=None '
          '(global average pooling, the same at 224x224).')
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
      blocks = [getattr(self, _block_name(i, j)) for j in range(self.stage_sizes[i])]
      return lambda h, train: self._run_blocks(blocks, h, train)

    stage_fns = {
        'stem': self._stem,
        **{layer: run_stage(i) for i, layer in enumerate(self.layers)},
        'pool': self._pool,
        'logits': lambda h, train: self.fc(h).astype(jnp.promote_types(self.dtype, jnp.float32)),
    }
    for name in stages[first + 1:last + 1]:
      x = stage_fns[name](x, train)
    return x

  @property
  def layers(self) -> tuple[str, ...]:
    """The layers saliency methods may split the network at (level 2 of the contract)."""
    return tuple(f'layer{i + 1}' for i in range(len(self.stage_sizes)))

  @property
  def default_layer(self) -> str:
    """The last stage (layer4 of ResNet-50), where Grad-CAM looks by default."""
    return self.layers[-1]

  @property
  def parameter_stages(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The top-level variable names of each stage, input side first: ``('stem', ('conv1',))``,
    ``('layer1', ('layer1_0', ...))``, ..., ``('fc', ('fc',))``. The model-randomisation
    check (:mod:`gestaltxai.metrics.sanity`) re-initialises them from the head down."""
    blocks = tuple((layer, tuple(_block_name(i, j) for j in range(size)))
                   for i, (layer, size) in enumerate(zip(self.layers, self.stage_sizes)))
    return (('stem', ('conv1',)), *blocks, ('fc', ('fc',)))

  @property
  def stage_names(self) -> tuple[str, ...]:
    """The points of this network, in order (:data:`STAGES` for ResNet-50)."""
    return ('input', 'stem', *self.layers, 'pool', 'logits')

  @staticmethod
  def _run_blocks(blocks, x, train):
    for block in blocks:
      x = block(x, train)
    return x


def _block_name(stage: int, block: int) -> str:
  """The attribute (and top-level variable) name of a block: 'layer1_0' for PyTorch's
  'layer1.0'."""
  return f'layer{stage + 1}_{block}'


def ResNet50(num_classes: int, dtype: Any = jnp.float32, **kwargs) -> ResNet:  # pylint: disable=invalid-name
  """The VGGFace2 ResNet-50; ``apply(variables, x)`` gives logits (B, num_classes)."""
  return ResNet(num_classes=num_classes, dtype=dtype, **kwargs)
