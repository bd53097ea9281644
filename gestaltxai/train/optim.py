"""The reference's optimizer: per-epoch cosine warm restarts and a head at 10x the rate.

The reference (PyTorch) builds ``SGD([...body..., {'params': fc, 'lr': 10 * lr}],
momentum=0.9)`` with ``CosineAnnealingWarmRestarts(T_0=25, eta_min=0)`` and
calls ``scheduler.step()`` once after each epoch, so every batch of epoch
``e`` (0-based) uses the rate after ``e`` scheduler steps. optax counts
updates, so the schedule here maps an update count to its epoch first.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from gestaltxai.train.config import TrainConfig

#: The parameter subtree that trains at ``head_lr_multiplier`` times the rate.
HEAD = 'fc'

#: Optimizers by name: (learning rate schedule, config) -> transformation.
OPTIMIZERS: dict[str, Callable[[optax.Schedule, TrainConfig], optax.GradientTransformation]] = {
    # PyTorch SGD: buffer = momentum * buffer + g; p -= lr * buffer.
    'sgd': lambda rate, c: optax.sgd(rate, momentum=c.momentum or None),
    'adam': lambda rate, c: optax.adam(rate),
}


def cosine_warm_restarts(epoch, *, base: float, period: int, floor: float = 0.0):
  """The rate after ``epoch`` per-epoch steps of CosineAnnealingWarmRestarts(T_mult=1)."""
  position = jnp.mod(epoch, period)
  return floor + (base - floor) * 0.5 * (1.0 + jnp.cos(math.pi * position / period))


def epoch_schedule(config: TrainConfig, steps_per_epoch: int, base: float) -> optax.Schedule:
  """Update count -> rate, constant within an epoch (the reference's per-epoch step)."""
  period = config.restart_epochs or config.epochs

  def schedule(count):
    return cosine_warm_restarts(count // steps_per_epoch, base=base, period=period,
                                floor=config.min_learning_rate)
  return schedule


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """The body at ``learning_rate``, the head at ``head_lr_multiplier`` times it."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer must be one of {sorted(OPTIMIZERS)}, got {config.optimizer!r}')

  def at(rate):
    schedule = epoch_schedule(config, steps_per_epoch, rate)
    step = OPTIMIZERS[config.optimizer](schedule, config)
    # PyTorch's weight_decay adds decay * parameter to the gradient before momentum.
    if not config.weight_decay:
      return step
    return optax.chain(optax.add_decayed_weights(config.weight_decay), step)

  unknown = set(config.frozen) - {HEAD}
  def labels(params):
    missing = unknown - set(params)
    if missing:
      raise ValueError(f'frozen names no parameters of the network: {sorted(missing)}; its '
                       f'top-level parameters: {sorted(params)}')
    def label(name):
      return 'frozen' if name in config.frozen else ('head' if name == HEAD else 'body')
    return {name: jax.tree.map(lambda _, n=name: label(n), subtree)
            for name, subtree in params.items()}

  return optax.multi_transform(
      {'body': at(config.learning_rate), 'frozen': optax.set_to_zero(),
       'head': at(config.learning_rate * config.head_lr_multiplier)}, labels)
