"""The VGGFace2 ResNet-50 in PyTorch, for same-model comparisons with Captum and zennit.

Benchmarks and parity checks only: PyTorch is not a dependency of gestaltxai.
Two flavours load the same state dict (the ``resnet50_ft_weight.pkl`` names):

* ``reference``: the reference's own network class (``code/models/
  VGGFace2_ResNet.py`` of facial-gestalt-xai, after cydonia999's
  VGGFace2-pytorch), written afresh: a bottleneck class of its own, so
  zennit's ``ResNetCanonizer`` only merges its BatchNorms and leaves the
  residual addition a plain sum; three in-place ReLU modules per block
  (Captum's DeepLift and guided backprop hook modules and refuse a ReLU used
  twice), registered after the convolutions and BatchNorms, so that the
  sequential merge sees each BatchNorm right after its convolution; the
  residual added in place.
* ``torchvision``: blocks are torchvision ``Bottleneck`` instances with the
  stride moved to the first 1x1 convolution, so ``ResNetCanonizer``
  recognises them and replaces the addition by its ``Sum`` module (the Norm
  rule): the conserving setting.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

STAGES = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
  """The reference's bottleneck: stride on conv1, relu1..relu3, ``out += residual``."""

  def __init__(self, inplanes, planes, stride, downsample):
    super().__init__()
    # Registration order is what zennit's SequentialMergeBatchNorm walks:
    # each BatchNorm must come right after its convolution.
    self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
    self.relu1 = nn.ReLU(inplace=True)
    self.relu2 = nn.ReLU(inplace=True)
    self.relu3 = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    out += x if self.downsample is None else self.downsample(x)
    return self.relu3(out)


def _torchvision_block(inplanes, planes, stride, downsample):
  from torchvision.models import resnet  # pylint: disable=import-outside-toplevel
  block = resnet.Bottleneck(inplanes, planes, 1, downsample)
  block.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
  return block


BLOCKS = {'reference': Bottleneck, 'torchvision': _torchvision_block}


class VGGFace2ResNet50(nn.Module):
  """NCHW BGR-minus-mean input -> logits."""

  def __init__(self, num_classes, flavour='reference'):
    super().__init__()
    if flavour not in BLOCKS:
      raise ValueError(f'flavour must be one of {sorted(BLOCKS)}, got {flavour!r}')
    make_block = BLOCKS[flavour]
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2, 0, ceil_mode=True)
    inplanes = 64
    for i, size in enumerate(STAGES):
      planes = 64 * 2**i
      blocks = []
      for j in range(size):
        stride = 2 if i > 0 and j == 0 else 1
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * EXPANSION, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes * EXPANSION)) if j == 0 else None
        blocks.append(make_block(inplanes, planes, stride, downsample))
        inplanes = planes * EXPANSION
      setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
    self.avgpool = nn.AvgPool2d(7, 1)
    self.fc = nn.Linear(inplanes, num_classes)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def from_state_dict(state_dict, flavour='reference', device='cpu', dtype=torch.float32):
  """A model in eval mode with the given {name: numpy array} weights."""
  num_classes = np.shape(state_dict['fc.weight'])[0]
  model = VGGFace2ResNet50(num_classes, flavour)
  model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
  return model.to(device=device, dtype=dtype).eval()
