"""dlib's face-recognition ResNet in Flax (NHWC), equal to dlib's ``compute_face_descriptor``.

The network of ``dlib_face_recognition_resnet_model_v1.dat`` (shipped in
``face_recognition_models``; ``anet_type`` of dlib's
``examples/dnn_face_recognition_ex.cpp``), trained on about 3 million faces:

* a 7x7 stride-2 convolution (32), affine, ReLU, 3x3 stride-2 max pool;
* residual blocks of two 3x3 convolutions, each followed by an affine layer
  (a learned scale and shift, not BatchNorm): 3 x 32; down to 64 + 3 x 64;
  down to 128 + 2 x 128; down to 256 + 2 x 256; down to 256;
* the mean over space and a 128-wide dense layer without bias: the descriptor.

dlib's geometry, which parity depends on: convolutions have biases;
stride-2 convolutions and pools are unpadded, stride-1 3x3 convolutions pad
by 1; a down-sampling block average-pools its shortcut 2x2 (stride 2), and
where the branch and the shortcut differ in size (channels always, space at
the last two down-sampling blocks) dlib's ``add_prev`` adds them zero-padded
at the end to the larger shape. Inputs are RGB, (pixel - mean) / 256
(:meth:`DlibFaceResNet.preprocess`).

The module follows all three levels of the saliency contract
(:mod:`gestaltxai.models.contract`) as :class:`gestaltxai.models.ResNet`
does: ``__call__(x, start=, stop=)`` runs any span of its stages, and every
activation, convolution, affine layer, dense layer, residual sum and pool runs
through ``rules``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gestaltxai.models.dlib_format import FACE_NET_STEM, read_face_net
from gestaltxai.models.resnet import Dense, probe_bias_output
from gestaltxai.models.rules import GRADIENT, Rules

Array = jax.Array

DLIB_FACE_NET_FILE = 'dlib_face_recognition_resnet_model_v1.dat'
#: The RGB means the file stores (the reader returns the file's own).
DLIB_INPUT_MEAN = (122.782, 117.001, 104.298)
#: dlib divides the mean-subtracted pixels by this (``input_rgb_image_sized``).
DLIB_INPUT_SCALE = 256.0
#: The chip dlib's descriptor was trained on: ``get_face_chip(size=150, padding=0.25)``.
DLIB_CHIP_SIZE = 150
#: Blocks per stage, input side first (``layer1`` .. ``layer5``); each stage after the
#: first starts with a down-sampling block.
DLIB_STAGE_SIZES = (3, 4, 3, 3, 1)
DLIB_STAGE_FEATURES = (32, 64, 128, 256, 256)


def _stage_of_blocks(stage_sizes=DLIB_STAGE_SIZES):
  """(stage, block) of each block, input side first; a stage's block 0 down-samples
  (but the first stage's)."""
  return [(i, j) for i, size in enumerate(stage_sizes) for j in range(size)]



def zero_pad_to(x: Array, shape: tuple) -> Array:
  """Pads (B, h, w, C) with zeros at the end of each axis up to ``shape`` (dlib's add_prev)."""
  return jnp.pad(x, [(0, want - have) for have, want in zip(x.shape, shape)])


def average_pool_2x2(x: Array) -> Array:
  """dlib's ``avg_pool<2,2,2,2>``: 2x2 windows, stride 2, no padding (floor)."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding='VALID')


def max_pool_3x3(x: Array) -> Array:
  """dlib's ``max_pool<3,3,2,2>``: 3x3 windows, stride 2, no padding (floor)."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class ConvAffine(nn.Module):
  """A dlib convolution (with bias) and the affine layer after it.

  Parameters: ``kernel`` (k, k, in, out), ``bias``, ``scale`` and ``shift``
  (out,), float32. The output is ``scale * (conv(x) + bias) + shift``; under
  ``rules.fold_batchnorm`` the affine map is merged into the convolution
  (zennit's canonizers), otherwise it runs through ``rules.batchnorm``.
  """

  features: int
  kernel_size: int
  stride: int = 1
  is_first: bool = False
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, n = self.kernel_size, self.features
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, k, x.shape[-1], n),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (n,), jnp.float32)
    scale = self.param('scale', nn.initializers.ones, (n,), jnp.float32)
    shift = self.param('shift', nn.initializers.zeros, (n,), jnp.float32)
    rule = self.rules.first_layer if self.is_first else self.rules.conv
    x = x.astype(self.dtype)
    effective_bias = (bias * scale + shift).astype(self.dtype)
    if self.rules.fold_batchnorm:
      out = rule(self._conv, x, kernel * scale, effective_bias)
    else:
      out = self.rules.batchnorm(rule(self._conv, x, kernel, bias.astype(self.dtype)),
                                 scale.astype(self.dtype), shift.astype(self.dtype))
    return probe_bias_output(self, out, effective_bias)

  def _conv(self, inputs: Array, kernel: Array) -> Array:
    # dlib pads a stride-1 convolution by half its window and a strided one not at all.
    pad = self.kernel_size // 2 if self.stride == 1 else 0
    return lax.conv_general_dilated(inputs, kernel.astype(self.dtype), (self.stride,) * 2,
                                    ((pad, pad),) * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class ResidualBlock(nn.Module):
  """relu(add_prev(affine(conv3x3(relu(affine(conv3x3/s(x))))), shortcut)), dlib's ``ares``.

  A down-sampling block has a stride-2 first convolution and a 2x2 average-pooled
  shortcut; branch and shortcut are zero-padded to the larger shape before the sum.
  """

  features: int
  down: bool = False
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    act = self.rules.activation
    kw = dict(rules=self.rules, dtype=self.dtype)
    y = act(ConvAffine(self.features, 3, 2 if self.down else 1, name='conv1', **kw)(x))
    y = ConvAffine(self.features, 3, 1, name='conv2', **kw)(y)
    shortcut = self.rules.average_pool(average_pool_2x2, x) if self.down else x
    shape = tuple(max(a, b) for a, b in zip(y.shape, shortcut.shape))
    summed = self.rules.residual_sum(zero_pad_to(y, shape),
                                     zero_pad_to(shortcut.astype(y.dtype), shape))
    return act(summed)


class DlibFaceResNet(nn.Module):
  """dlib's face-recognition ResNet; ``apply(variables, x)`` gives the 128-d descriptor
  (``num_classes=None``) or the logits of a head on it.

  Attributes:
    num_classes: ``None``: the output is dlib's raw (not normalised) 128-d
      descriptor; an int: a dense head (with bias) on the descriptor.
    input_mean: the RGB means :meth:`preprocess` subtracts (the file's own).
    stage_sizes, stage_features, stem_features: the layout; dlib's by default
      (the file holds only that one; smaller ones serve cheap tests).
    dtype: compute dtype (parameters stay float32; outputs are at least float32).
    rules: backward rules of every layer (the true gradient by default).
  """

  num_classes: Optional[int] = None
  input_mean: tuple = DLIB_INPUT_MEAN
  stage_sizes: tuple = DLIB_STAGE_SIZES
  stage_features: tuple = DLIB_STAGE_FEATURES
  stem_features: int = FACE_NET_STEM
  dtype: Any = jnp.float32
  rules: Rules = GRADIENT

  #: Level 3 of the saliency contract: every activation, linear map,
  #: residual sum and pool runs through ``rules``.
  routes_rules: ClassVar[bool] = True

  def setup(self):
    kw = dict(rules=self.rules, dtype=self.dtype)
    self.stem = ConvAffine(self.stem_features, 7, 2, is_first=True, **kw)
    if len(self.stage_sizes) != len(self.stage_features):
      raise ValueError(f'stage_sizes {self.stage_sizes} and stage_features '
                       f'{self.stage_features} must have one entry per stage')
    for i, j in _stage_of_blocks(self.stage_sizes):
      setattr(self, _block_name(i, j),
              ResidualBlock(self.stage_features[i], down=(i > 0 and j == 0), **kw))
    self.descriptor = DescriptorDense(**kw)
    if self.num_classes is not None:  # named as the ResNet's head: training's head rate finds it
      self.fc = Dense(self.num_classes, **kw)

  def preprocess(self, chips) -> Array:
    """(B, H, W, 3) uint8 RGB chips (dlib's 150 x 150) -> (B, H, W, 3) float32 model input,
    (pixel - mean) / 256 as dlib's ``input_rgb_image_sized``."""
    chips = jnp.asarray(chips)
    if chips.ndim != 4 or chips.shape[-1] != 3 or chips.dtype != jnp.uint8:
      raise ValueError(f'preprocess expects (B, H, W, 3) uint8 RGB chips, got {chips.dtype} '
                       f'{chips.shape}; make them with dlib.get_face_chip(img, shape, '
                       f'size={DLIB_CHIP_SIZE}, padding=0.25)')
    mean = jnp.asarray(self.input_mean, jnp.float32)
    return (chips.astype(jnp.float32) - mean) / DLIB_INPUT_SCALE

  def __call__(self, x: Array, train: bool = False, *, start: str = 'input',
               stop: Optional[str] = None) -> Array:
    """Runs the stages after ``start`` up to and including ``stop`` (default: the output).

    Args:
      x: the activation at ``start``: for 'input', :meth:`preprocess`'d chips
        (B, H, W, 3); for a layer, (B, h, w, C).
      train: accepted for the training loop; affine layers have no batch
        statistics, so training and evaluation compute the same.
      start, stop: names from :attr:`stage_names`, ``start`` before ``stop``.

    Returns:
      The activation at ``stop``: the descriptor (B, 128) or logits (B, num_classes).
    """
    del train
    stages = self.stage_names
    stop = stages[-1] if stop is None else stop
    if start not in stages or stop not in stages:
      raise ValueError(f'start and stop must be among {stages}; got {start!r}, {stop!r}')
    first, last = stages.index(start), stages.index(stop)
    if first >= last:
      raise ValueError(f'start {start!r} must come before stop {stop!r}')
    if start == 'input' and (x.ndim != 4 or x.shape[-1] != 3):
      raise ValueError(f'expected images (B, H, W, 3) NHWC, got shape {x.shape}')
    out_dtype = jnp.promote_types(self.dtype, jnp.float32)
    stage_fns = {
        'stem': self._stem,
        **{layer: self._stage(i) for i, layer in enumerate(self.layers)},
        'pool': self._pool,
        'descriptor': lambda h: self.descriptor(h).astype(out_dtype),
        'logits': lambda h: self.fc(h).astype(out_dtype),
    }
    for name in stages[first + 1:last + 1]:
      x = stage_fns[name](x)
    return x

  def _stem(self, x):
    x = self.rules.activation(self.stem(x))
    return self.rules.max_pool(max_pool_3x3, x)

  def _stage(self, i):
    blocks = [getattr(self, _block_name(i, j)) for j in range(self.stage_sizes[i])]

    def run(h):
      for block in blocks:
        h = block(h)
      return h

    return run

  def _pool(self, x):
    if x.shape[1] < 1 or x.shape[2] < 1:
      raise ValueError(f'the input is too small for the dlib network (layer5 is {x.shape}); '
                       f'give {DLIB_CHIP_SIZE} x {DLIB_CHIP_SIZE} chips')
    return self.rules.average_pool(lambda h: h.mean(axis=(1, 2)), x)

  @property
  def layers(self) -> tuple[str, ...]:
    """The stages saliency methods may split the network at (level 2 of the contract)."""
    return tuple(f'layer{i + 1}' for i in range(len(self.stage_sizes)))

  @property
  def default_layer(self) -> str:
    """The stage before the last ('layer4': 256 channels, 4 x 4 at 150 px): the last
    stage, layer5, is 2 x 2, too coarse for a map of a face."""
    return self.layers[-2]

  @property
  def stage_names(self) -> tuple[str, ...]:
    head = ('logits',) if self.num_classes is not None else ()
    return ('input', 'stem', *self.layers, 'pool', 'descriptor', *head)

  @property
  def parameter_stages(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Top-level variable names per stage, input side first (the randomisation check)."""
    blocks = tuple((layer, tuple(_block_name(i, j) for j in range(self.stage_sizes[i])))
                   for i, layer in enumerate(self.layers))
    head = (('logits', ('fc',)),) if self.num_classes is not None else ()
    return (('stem', ('stem',)), *blocks, ('descriptor', ('descriptor',)), *head)


class DescriptorDense(nn.Module):
  """dlib's ``fc_no_bias<128>``: ``kernel`` (256, 128) float32."""

  features: int = 128
  rules: Rules = GRADIENT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features),
                        jnp.float32)
    x = x.astype(self.dtype)
    return self.rules.dense(lambda inputs, w: inputs @ w.astype(self.dtype), x, kernel, None)


def _block_name(stage: int, block: int) -> str:
  return f'layer{stage + 1}_{block}'


def dlib_face_net_path() -> str:
  """Where ``face_recognition_models`` keeps the network file (found without importing it:
  its ``__init__`` needs ``pkg_resources``)."""
  from gestaltxai.data.detect import model_path  # pylint: disable=import-outside-toplevel
  return model_path(DLIB_FACE_NET_FILE)


def dlib_face_net_params(weights) -> dict:
  """Flax ``params`` of :class:`DlibFaceResNet` (without a head) from the reader's
  :class:`~gestaltxai.models.dlib_format.FaceNetWeights`."""
  def conv_affine(conv, affine):
    (kernel, bias), (scale, shift) = conv, affine
    return {name: jnp.asarray(value, jnp.float32) for name, value in
            (('kernel', kernel), ('bias', bias), ('scale', scale), ('shift', shift))}

  pairs = list(zip(weights.convs, weights.affines))
  params = {'stem': conv_affine(*pairs[0])}
  for n, (i, j) in enumerate(_stage_of_blocks()):
    params[_block_name(i, j)] = {'conv1': conv_affine(*pairs[1 + 2 * n]),
                                 'conv2': conv_affine(*pairs[2 + 2 * n])}
  params['descriptor'] = {'kernel': jnp.asarray(weights.fc_kernel, jnp.float32)}
  return params


def load_dlib_face_net(path: Optional[str] = None, num_classes: Optional[int] = None,
                       rng: Optional[jax.Array] = None) -> tuple[DlibFaceResNet, dict]:
  """dlib's face-recognition ResNet and its variables, read from the ``.dat`` file.

  Args:
    path: the ``.dat`` file; default: ``dlib_face_recognition_resnet_model_v1.dat``
      of the installed ``face_recognition_models``. Nothing is downloaded or unpickled.
    num_classes: ``None``: ``module.apply(variables, x)`` is dlib's 128-d
      descriptor. An int: a new dense head (with bias) on the descriptor,
      initialised from ``rng`` (default ``PRNGKey(0)``), parameters ``fc``
      (the descriptor's own dense layer is ``descriptor``). The head sits on the
      128-d descriptor rather than the pooled 256 features because dlib
      trained that layer with a metric loss so that distances between
      descriptors separate faces: a linear head there starts from the space
      dlib's 0.6 distance threshold is defined in, and fine-tuning keeps it.

  Returns:
    ``(module, variables)``: a :class:`DlibFaceResNet` and ``{'params': ...}``.
  """
  weights = read_face_net(dlib_face_net_path() if path is None else path)
  module = DlibFaceResNet(num_classes=num_classes,
                          input_mean=tuple(float(m) for m in weights.input_mean))
  params = dlib_face_net_params(weights)
  if num_classes is not None:
    rng = jax.random.PRNGKey(0) if rng is None else rng
    descriptor = jnp.zeros((1, weights.fc_kernel.shape[1]), jnp.float32)
    params['fc'] = Dense(num_classes).init(rng, descriptor)['params']
  return module, {'params': params}


def bgr_input_params(params: dict, mean_bgr, input_mean=DLIB_INPUT_MEAN) -> dict:
  """``params`` whose stem takes the package's convention, BGR minus ``mean_bgr`` (what
  the training pipeline and extraction feed), instead of dlib's (RGB - ``input_mean``) / 256.

  Exact, not approximate: the stem convolution is unpadded, so every window sees all its
  pixels and the constant offset becomes a bias: kernel[..., i, :] / 256 with the input
  channels reversed, bias + sum(kernel * (mean_rgb - input_mean) / 256).
  """
  stem = params['stem']
  kernel = jnp.asarray(stem['kernel'])
  offset_rgb = (jnp.asarray(mean_bgr, jnp.float32)[::-1]
                - jnp.asarray(input_mean, jnp.float32)) / DLIB_INPUT_SCALE
  converted = dict(stem, kernel=kernel[:, :, ::-1, :] / DLIB_INPUT_SCALE,
                   bias=stem['bias'] + jnp.einsum('hwio,i->o', kernel, offset_rgb))
  return {**params, 'stem': converted}


def count_params(variables) -> int:
  """The number of parameters in ``variables['params']``."""
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(variables['params'])))
