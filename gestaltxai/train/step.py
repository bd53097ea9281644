"""Train and evaluation steps, one jitted SPMD function each over a mesh of every device.

The global batch is sharded along the mesh axis ``data``; parameters,
BatchNorm statistics and optimizer state are replicated. The model names no
axis: its BatchNorm means over the batch axis of a sharded array, and XLA's
partitioner turns that mean into a cross-device reduction, so the statistics
are those of the global batch (what ``pmap`` with ``pmean`` computed by hand).

Each process contributes its own rows of every global batch; the global
array is assembled by ``jax.make_array_from_process_local_data``, which is
the same call on one process and on a thousand.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'
#: Batch entries that go to the devices (the rest, such as names, stay on the host).
DEVICE_KEYS = ('image', 'label', 'valid')


@flax.struct.dataclass
class TrainState:
  """Everything a train step changes: a pytree of arrays, checkpointed as is."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @classmethod
  def create(cls, variables: dict, tx: optax.GradientTransformation) -> 'TrainState':
    params = variables['params']
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))

  @property
  def variables(self) -> dict:
    return {'params': self.params, 'batch_stats': self.batch_stats}


def train_step(model, tx: optax.GradientTransformation, state: TrainState,
               batch: dict) -> tuple[TrainState, dict]:
  """One SGD step on a batch: mean cross-entropy, BatchNorm in training mode.

  Args:
    batch: 'image' (B, H, W, 3) float32, 'label' (B,) int32.

  Returns:
    The new state and {'loss': mean loss, 'correct': right predictions} float32 scalars.
  """

  def loss_fn(params):
    logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                  batch['image'], train=True, mutable=['batch_stats'])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    # A network without BatchNorm (dlib's, affine layers) updates no statistics.
    return losses.mean(), (logits, updates.get('batch_stats', state.batch_stats))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  correct = (jnp.argmax(logits, -1) == batch['label']).sum().astype(jnp.float32)
  return new_state, {'loss': loss, 'correct': correct}


def eval_step(model, variables: dict, batch: dict) -> dict:
  """Per-image loss and prediction in inference mode (running BatchNorm statistics).

  Returns:
    {'loss': (B,) float32, 'predicted': (B,) int32, 'label', 'valid'}: the
    batch's own labels and validity come back so every process sees them all.
  """
  logits = model.apply(variables, batch['image'])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  return {'loss': losses, 'predicted': jnp.argmax(logits, -1).astype(jnp.int32),
          'label': batch['label'], 'valid': batch['valid']}


class DataParallel:
  """Compiled train and evaluation steps over a 1-D mesh of ``devices`` (default: all).

  Devices stay in process order, so each process owns one contiguous block of
  every global batch: :attr:`local_rows`.
  """

  def __init__(self, model, tx: optax.GradientTransformation, global_batch_size: int,
               devices: Optional[Sequence[jax.Device]] = None):
    devices = list(jax.devices() if devices is None else devices)
    if global_batch_size % len(devices):
      raise ValueError(f'the batch size {global_batch_size} must be a multiple of the '
                       f'{len(devices)} devices')
    # Auto axes: the partitioner places the reductions (a default that changes across versions).
    self.mesh = Mesh(np.array(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))
    self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.global_batch_size = global_batch_size
    self.local_rows = _local_block(self.batch_sharding, global_batch_size)
    self.train = jax.jit(functools.partial(train_step, model, tx),
                         in_shardings=(self.replicated, self.batch_sharding),
                         out_shardings=(self.replicated, self.replicated), donate_argnums=0)
    self.evaluate = jax.jit(functools.partial(eval_step, model),
                            in_shardings=(self.replicated, self.batch_sharding),
                            out_shardings=self.replicated)

  @property
  def process_block(self) -> tuple[int, int]:
    """(index, count) of this process's block in the global batch, for the input plan."""
    start, stop = self.local_rows
    return start // (stop - start), self.global_batch_size // (stop - start)

  def put_batch(self, local: dict) -> dict:
    """This process's rows -> global arrays sharded along ``data``."""
    return {key: jax.make_array_from_process_local_data(
        self.batch_sharding, np.asarray(local[key]),
        (self.global_batch_size, *np.shape(local[key])[1:])) for key in DEVICE_KEYS}

  def replicate(self, tree):
    """Host values, equal on every process -> arrays replicated over the mesh."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)), tree)

  def abstract(self, tree):
    """Shapes, dtypes and the replicated sharding of ``tree``, for restoring onto the mesh."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=self.replicated), tree)


def host_value(x: jax.Array) -> np.ndarray:
  """A replicated array's value on this host (every process holds a full copy)."""
  return np.asarray(x.addressable_data(0))


def _local_block(sharding: NamedSharding, batch_size: int) -> tuple[int, int]:
  """[start, stop) of the global batch held by this process's devices; one block or an error."""
  rows = sorted({index[0].indices(batch_size)[:2]
                 for index in sharding.addressable_devices_indices_map((batch_size,)).values()})
  start, stop = rows[0][0], rows[-1][1]
  if sum(b - a for a, b in rows) != stop - start:
    raise ValueError(f'this process holds rows {rows} of the batch, not one block')
  return start, stop
