"""The networks benchmarks measure: the full VGGFace2 ResNet-50, or a tiny ResNet for smoke runs."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

from gestaltxai.models import ResNet, ResNet50, port_vggface2, random_vggface2_state_dict

NUM_CLASSES = 12
SIZES = ('full', 'tiny')
_WEIGHTS_SEED = 0
# Inputs about as large as images minus the VGGFace2 mean.
_INPUT_SCALE = 50.0


@dataclasses.dataclass(frozen=True)
class Network:
  """A model, its float32 variables and its input side, ready to benchmark.

  Attributes:
    model: ``apply(variables, x)`` gives (B, NUM_CLASSES) logits.
    variables: Flax variables (float32).
    image_size: side of the square (B, S, S, 3) input.
    state_dict: the PyTorch-named weights (full size only), for Captum.
  """

  model: Any
  variables: Any
  image_size: int
  state_dict: Optional[dict] = None

  def images(self, batch: int, seed: int = 0) -> jax.Array:
    """(batch, S, S, 3) float32 random inputs on the default device."""
    shape = (batch, self.image_size, self.image_size, 3)
    return jax.random.normal(jax.random.PRNGKey(seed), shape) * _INPUT_SCALE


def network(size: str, dtype: str = 'float32') -> Network:
  """'full': the ResNet-50 at 224 px with random VGGFace2-layout weights;
  'tiny': a ResNet of one bottleneck per stage at 32 px (seconds to compile)."""
  if size == 'full':
    state = random_vggface2_state_dict(_WEIGHTS_SEED, NUM_CLASSES)
    return Network(ResNet50(NUM_CLASSES, dtype=jnp.dtype(dtype)), port_vggface2(state), 224,
                   state)
  if size == 'tiny':
    model = ResNet(num_classes=NUM_CLASSES, stage_sizes=(1, 1, 1, 1), width=4, pool_window=None,
                   dtype=jnp.dtype(dtype))
    side = 32
    variables = jax.jit(model.init)(jax.random.PRNGKey(_WEIGHTS_SEED),
                                    jnp.zeros((1, side, side, 3)))
    return Network(model, variables, side)
  raise ValueError(f'unknown network size {size!r}; choose from {SIZES}')

