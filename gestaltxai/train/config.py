"""Training configurations: small frozen dataclasses that round-trip through JSON.

The named configurations (``reference``, ``tiny``) live in
:mod:`gestaltxai.train.configs`; a checkpoint stores its configuration as a dict,
so :meth:`TrainConfig.from_dict` rebuilds the model without them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import jax.numpy as jnp

from gestaltxai.models import DlibFaceResNet, ResNet

#: Compute dtypes by name (parameters and optimizer state stay float32).
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
#: How the epoch a fold keeps is chosen: the best accuracy on the dataset's select split
#: (the reference's train.py / test.py), the best on an inner split (a share of each class's
#: training images, not trained on), or the last epoch, fixed in advance (``epochs``). The
#: last two never look at images the fold is scored on.
SELECTIONS = ('best', 'inner', 'last')
#: The networks a configuration can train.
MODEL_KINDS = ('resnet', 'dlib')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network: a bottleneck ResNet of the VGGFace2 family, or dlib's face ResNet.

  Attributes:
    kind: 'resnet' (the fields below) or 'dlib' (:class:`gestaltxai.models.DlibFaceResNet`,
      dlib's weights from ``face_recognition_models``, a new head on its descriptor;
      the other fields are unused).
    stage_sizes: bottlenecks per stage (ResNet-50: 3, 4, 6, 3).
    width: stem channels; stage i has ``width * 2**i`` planes.
    pool_window: the head's average-pool window (7 for VGGFace2 at 224 px);
      None averages globally (any input size).
  """

  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  width: int = 64
  pool_window: Optional[int] = 7
  kind: str = 'resnet'

  def __post_init__(self):
    if self.kind not in MODEL_KINDS:
      raise ValueError(f'model kind must be one of {MODEL_KINDS}, got {self.kind!r}')

  def build(self, num_classes: int, dtype: str = 'float32'):
    if self.kind == 'dlib':
      return DlibFaceResNet(num_classes=num_classes, dtype=DTYPES[dtype])
    return ResNet(num_classes=num_classes, stage_sizes=tuple(self.stage_sizes), width=self.width,
                  pool_window=self.pool_window, dtype=DTYPES[dtype])


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How one fold is trained.

  Attributes:
    name: the configuration's name ('reference', 'tiny', ...).
    model: the network.
    image_size: input side in pixels; the pipeline resizes images (area) and
      maps (nearest) from the stored 224 px.
    optimizer: a key of :data:`gestaltxai.train.optim.OPTIMIZERS` ('sgd', 'adam').
    learning_rate: the body's base rate; the head ('fc') gets
      ``head_lr_multiplier`` times it.
    momentum: SGD momentum (PyTorch's form: no dampening, not Nesterov).
    weight_decay: L2 added to the gradient (PyTorch SGD's ``weight_decay``).
    restart_epochs: cosine annealing with warm restarts, stepped once per
      epoch (PyTorch ``CosineAnnealingWarmRestarts(T_0=restart_epochs)``);
      None: one cosine cycle over the whole run.
    min_learning_rate: the cosine's floor (``eta_min``).
    epochs: epochs to train.
    batch_size: the global batch size (split over devices and processes).
    flip: random horizontal flips of training images.
    dtype: compute dtype name, a key of :data:`DTYPES`.
    workers: decoding processes per host (0: threads in this process).
    cache: hold the resized records of the fold in memory (small datasets;
      saves decoding every epoch).
    seed: initialisation, shuffles and flips (epoch e uses (seed, e)).
    selection: one of :data:`SELECTIONS`: which epoch the fold keeps ('best' on the
      select split, 'inner': best on a share of the training images, or the 'last').
      On NIH-Faces the select split is the held-out split (as the reference), so
      'best' is optimistic there; 'inner' and 'last' are not.
    frozen: top-level parameter names that do not train (e.g. ('stem',)).
  """

  name: str = 'reference'
  model: ModelConfig = ModelConfig()
  image_size: int = 224
  optimizer: str = 'sgd'
  learning_rate: float = 1e-3
  head_lr_multiplier: float = 10.0
  momentum: float = 0.9
  weight_decay: float = 0.0
  restart_epochs: Optional[int] = 25
  min_learning_rate: float = 0.0
  epochs: int = 35
  batch_size: int = 32
  flip: bool = True
  dtype: str = 'float32'
  workers: int = 0
  cache: bool = False
  seed: int = 0
  selection: str = 'best'
  frozen: tuple[str, ...] = ()

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}')
    if self.selection not in SELECTIONS:
      raise ValueError(f'selection must be one of {SELECTIONS}, got {self.selection!r}')
    for field in ('epochs', 'batch_size', 'image_size'):
      if getattr(self, field) < 1:
        raise ValueError(f'{field} must be at least 1, got {getattr(self, field)}')
    for field in ('learning_rate', 'min_learning_rate'):  # NaN compares false: say so
      value = getattr(self, field)
      if not math.isfinite(value) or value < 0 or (field == 'learning_rate' and value == 0):
        raise ValueError(f'{field} must be a finite rate above 0 (the floor: at least 0), '
                         f'got {value}')

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out['model']['stage_sizes'] = list(self.model.stage_sizes)
    out['frozen'] = list(self.frozen)
    return out

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> 'TrainConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f'unknown configuration fields {sorted(unknown)}')
    if 'frozen' in values:
      values = {**values, 'frozen': tuple(values['frozen'])}
    model = dict(values.get('model', {}))
    if 'stage_sizes' in model:
      model['stage_sizes'] = tuple(model['stage_sizes'])
    return cls(**{**values, 'model': ModelConfig(**model)})

  def replace(self, **changes) -> 'TrainConfig':
    """A copy with ``changes``; None values are ignored (unset command-line options)."""
    return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
