"""Named training configurations: ``gestaltxai train --config NAME``.

* ``reference``: the recipe of the MLHC 2023 study's train.py (ResNet-50 with
  VGGFace2 weights, SGD momentum 0.9, learning rate 1e-3 with the head at
  10x, no weight decay, cosine annealing with warm restarts every 25
  epochs stepped once per epoch, 35 epochs, batch 32, horizontal flips).
* ``tiny``: a narrow, shallow ResNet of the same family trained from scratch
  at 112 px, which learns the built-in synthetic faces on a 2-core CPU in
  a minute; it serves the demo and the tests.

:data:`DEMO_SIZES` gives the demo's data and epoch budgets for ``tiny``.
"""

from __future__ import annotations

import dataclasses

from gestaltxai.train.config import ModelConfig, TrainConfig

REFERENCE = TrainConfig(name='reference')

TINY = TrainConfig(
    name='tiny',
    model=ModelConfig(stage_sizes=(1, 1, 1, 1), width=16, pool_window=None),
    image_size=112,
    optimizer='sgd',
    learning_rate=0.05,
    head_lr_multiplier=1.0,
    weight_decay=5e-4,
    restart_epochs=None,
    epochs=30,
    batch_size=32,
    cache=True,
)

CONFIGS = {config.name: config for config in (REFERENCE, TINY)}


@dataclasses.dataclass(frozen=True)
class DemoSize:
  """How much the demo builds and trains: synthetic faces per class and ``tiny`` epochs."""

  per_class: int
  epochs: int


# tiny: about 25 s to build and 45 s to train on 2 CPU cores; default: about 75 s and 4 min.
DEMO_SIZES = {'tiny': DemoSize(per_class=100, epochs=15),
              'default': DemoSize(per_class=300, epochs=25)}


def get_config(name: str) -> TrainConfig:
  if name not in CONFIGS:
    raise ValueError(f'unknown configuration {name!r}; choose from {sorted(CONFIGS)}')
  return CONFIGS[name]
