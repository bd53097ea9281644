"""The device side of extraction: a batch sharded over the local devices, one compiled
step per method, and only coefficients, a few flags and per-class map sums leave.

The prediction is computed once per batch and serves every method as its target.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gestaltxai.extract.spec import MethodSpec
from gestaltxai.models.contract import explainable
from gestaltxai.regions.coefficients import coefficients, normalized_coefficients
from gestaltxai.saliency.chunking import COMPILER_OPTIONS
from gestaltxai.saliency.execution import relevance_of

Array = jax.Array
DATA_AXIS = 'data'
#: Batch fields the device steps read (the rest stays on the host).
DEVICE_FIELDS = ('image', 'labels', 'rq2_labels', 'label', 'usable')


@functools.partial(jax.jit, static_argnums=0, compiler_options=COMPILER_OPTIONS)
def predict_step(model, variables, images: Array) -> tuple[Array, Array]:
  """(probabilities (B, K) float32, predicted class (B,) int32) of one forward pass."""
  logits = model.logits(variables, images).astype(jnp.float32)
  return jax.nn.softmax(logits), jnp.argmax(logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5),
                   compiler_options=COMPILER_OPTIONS)
def method_step(spec: MethodSpec, model, num_regions: int, num_rq2: int, num_classes: int,
                examples: int, variables, batch: dict, targets: Array,
                key: Array) -> dict[str, Array]:
  """One method on one batch, reduced on the device (compiled once per method, model and
  shapes: every fold of a run shares it).

  Args:
    batch: 'image' (B, H, W, 3) float, 'labels' and 'rq2_labels' (B, H, W) int
      region maps, 'label' (B,) int true classes, 'valid' (B,) bool.
    targets: (B,) the classes to explain (the predicted ones).

  Returns:
    'coefficients' (B, num_regions) and 'normalized' (B, num_rq2) float32 (NaN
    for an empty region); 'finite' (B,) whether the method's result is;
    'class_sums' (num_classes, H, W) the sum of the usable, finite relevance
    maps of each true class and 'examples' (examples, H, W) the maps of the
    first ``examples`` rows (both absent for region methods, which make no map).
  """
  entry, options = spec.method, dict(spec.options)
  if entry.space == 'region':
    # Label 0 ("none") is held fixed, no player: the study's regions are the face parts.
    options.update(regions=batch['labels'], num_regions=num_regions, background=0)
    coefs = entry(model, variables, batch['image'], targets, key=key, **options)
    batch_size = coefs.shape[0]
    # NaN marks a region with no pixel in the image (as coefficients); anything else is not ok.
    present = jax.vmap(lambda labels: jnp.isin(jnp.arange(num_regions), labels))(batch['labels'])
    return {'coefficients': coefs.astype(jnp.float32),
            'normalized': jnp.full((batch_size, num_rq2), jnp.nan, jnp.float32),
            'finite': (jnp.isfinite(coefs) | (jnp.isnan(coefs) & ~present)).all(axis=1)}
  result = entry(model, variables, batch['image'], targets, key=key, **options)
  relevance = relevance_of(result, entry.space).astype(jnp.float32)
  finite = jnp.isfinite(relevance).all(axis=(1, 2))
  members = jax.nn.one_hot(batch['label'], num_classes, dtype=jnp.float32) * (
      batch['usable'] & finite)[:, None]
  return {'coefficients': coefficients(relevance, batch['labels'], num_regions),
          'normalized': normalized_coefficients(relevance, batch['rq2_labels'], num_rq2),
          'finite': finite,
          'class_sums': jnp.einsum('bk,bhw->khw', members,
                                   jnp.where(finite[:, None, None], relevance, 0.0)),
          'examples': relevance[:examples]}


@dataclasses.dataclass
class DeviceSteps:
  """The compiled steps of one model over a 1-D mesh of this process's devices.

  Attributes:
    mesh: the local devices along ``data``; a batch is split over them.
    batch_size: images per step, a multiple of the device count.
    examples: rows of each batch whose maps a step keeps (fetched only when wanted).
  """

  model: Any
  variables: Any
  specs: Sequence[MethodSpec]
  num_regions: int
  num_rq2: int
  num_classes: int
  batch_size: int
  examples: int = 0
  devices: Optional[Sequence[jax.Device]] = None

  def __post_init__(self):
    devices = list(self.devices or jax.local_devices())
    if self.batch_size % len(devices):
      raise ValueError(f'the batch size {self.batch_size} must be a multiple of the '
                       f'{len(devices)} local devices')
    self.mesh = Mesh(np.array(devices), (DATA_AXIS,))
    self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(self.mesh, PartitionSpec())
    self.model = explainable(self.model)
    self.variables = jax.device_put(self.variables, replicated)
    self._replicated = replicated
    self._specs = {spec.name: spec for spec in self.specs}

  def put(self, host_batch: dict) -> dict:
    """This process's batch -> arrays split over the local devices."""
    return {field: jax.device_put(np.asarray(host_batch[field]), self.batch_sharding)
            for field in DEVICE_FIELDS}

  def predict(self, batch: dict) -> tuple[Array, Array]:
    return predict_step(self.model, self.variables, batch['image'])

  def explain(self, name: str, batch: dict, targets: Array, key: Array) -> dict[str, Array]:
    """Dispatches one method (asynchronously: the result is fetched later)."""
    return method_step(self._specs[name], self.model, self.num_regions, self.num_rq2,
                       self.num_classes, self.examples, self.variables, batch, targets,
                       jax.device_put(key, self._replicated))
