"""Orbax checkpoints of a fold: the latest and the best epoch, and a loader for extraction.

``RUNS/fold-K/checkpoints/<epoch>/`` holds four items:

============  =========================================================
item          contents
============  =========================================================
variables     {'params', 'batch_stats'}: all a model needs for inference
optimizer     {'step', 'opt_state'}: the optimizer's position and moments
data          the grain iterator state of each process (JSON)
metadata      JSON: config, classes, image_size, mean_bgr, fold, epoch,
              best_epoch, best_val_accuracy, history (per-epoch metrics)
============  =========================================================

Saves are asynchronous and atomic (orbax writes a temporary directory and
renames it when complete), so a run killed mid-save leaves no checkpoint a
resume would read. Only the latest epoch and the best (the earliest with the
highest validation accuracy) are kept; which epoch is best is recorded in the
metadata, never in a file name.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Optional, Sequence

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from gestaltxai.train.config import TrainConfig

CHECKPOINTS = 'checkpoints'
#: The validation metric that picks the best epoch.
BEST_METRIC = 'val_accuracy'
WHICH = ('best', 'latest')
# What a failed background write raises: tensorstore's errors are ValueErrors, the file
# system's OSErrors, and orbax may wrap either in a RuntimeError while it shuts its loop.
_SAVE_ERRORS = (OSError, ValueError, RuntimeError)
_ITEM_HANDLERS = {'variables': ocp.StandardCheckpointHandler,
                  'optimizer': ocp.StandardCheckpointHandler,
                  'data': grain.checkpoint.CheckpointHandler,
                  'metadata': ocp.JsonCheckpointHandler}


def best_step(history: Sequence[dict], metric: str = BEST_METRIC) -> Optional[int]:
  """The epoch of the highest ``metric`` in ``history``, the earliest among ties."""
  if not history:
    return None
  scores = [entry[metric] for entry in history]
  return history[int(np.argmax(scores))]['epoch']


@dataclasses.dataclass
class LatestAndBest(checkpoint_managers.PreservationPolicy):
  """Keeps the latest checkpoint and ``best_epoch``, which the training loop sets.

  The best epoch comes from the run's own history (restored on resume), not
  from orbax's in-memory metrics, which a restarted process no longer has.
  """

  best_epoch: Optional[int] = None

  def should_preserve(self, checkpoints, *, context) -> list[bool]:
    del context
    latest = checkpoints[-1].step if checkpoints else None
    return [c.step in (latest, self.best_epoch) for c in checkpoints]


def manager(directory: pathlib.Path, *, policy: Optional[LatestAndBest] = None,
            read_only: bool = False) -> ocp.CheckpointManager:
  """The fold's checkpoint manager (asynchronous saves; leftovers of killed saves removed).

  A read-only manager belongs to this process alone: processes of a multi-host run
  load checkpoints independently (extraction), so orbax must not wait for the others.
  """
  alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                             active_processes={jax.process_index()})
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy or LatestAndBest(), cleanup_tmp_directories=not read_only,
      enable_async_checkpointing=True, read_only=read_only, create=not read_only,
      save_interval_steps=0 if read_only else 1,
      **({'multiprocessing_options': alone} if read_only else {}))
  return ocp.CheckpointManager(directory.absolute(), options=options,
                               item_handlers=dict(_ITEM_HANDLERS))


def save(checkpoints: ocp.CheckpointManager, epoch: int, state, iterator,
         metadata: dict[str, Any]) -> None:
  """Starts saving ``epoch`` in the background; raises if the previous save failed."""
  items = ocp.args.Composite(
      variables=ocp.args.StandardSave(state.variables),
      optimizer=ocp.args.StandardSave({'step': state.step, 'opt_state': state.opt_state}),
      data=grain.checkpoint.CheckpointSave(iterator),
      metadata=ocp.args.JsonSave(metadata))
  try:
    checkpoints.save(epoch, args=items)
  except _SAVE_ERRORS as err:
    raise ValueError(_save_failure(checkpoints, err)) from err


def wait(checkpoints: ocp.CheckpointManager) -> None:
  """Waits for the last save; a failure (a full disk) names the directory and what is intact."""
  try:
    checkpoints.wait_until_finished()
  except _SAVE_ERRORS as err:
    raise ValueError(_save_failure(checkpoints, err)) from err


def _save_failure(checkpoints, err) -> str:
  """Saves fail in the background and surface at the next save: name what is intact."""
  # The write error (a full disk) may arrive wrapped in an error of orbax's shutdown.
  while err.__context__ is not None and not isinstance(err, (OSError, ValueError)):
    err = err.__context__
  steps = checkpoints.all_steps()
  intact = (f'the checkpoint of epoch {max(steps)} is intact' if steps
            else 'no checkpoint is complete')
  return f'saving a checkpoint in {checkpoints.directory} failed ({err}); {intact}'


def restore_training(checkpoints: ocp.CheckpointManager, epoch: int, abstract_state,
                     iterator) -> Any:
  """Restores the state (onto the shardings of ``abstract_state``) and ``iterator``'s position."""
  items = checkpoints.restore(epoch, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(abstract_state.variables),
      optimizer=ocp.args.StandardRestore({'step': abstract_state.step,
                                          'opt_state': abstract_state.opt_state}),
      data=grain.checkpoint.CheckpointRestore(iterator)))
  variables, optimizer = items['variables'], items['optimizer']
  return abstract_state.replace(params=variables['params'], batch_stats=variables['batch_stats'],
                                step=optimizer['step'], opt_state=optimizer['opt_state'])


def restore_variables(checkpoints: ocp.CheckpointManager, epoch: int, abstract_variables) -> dict:
  """{'params', 'batch_stats'} of ``epoch``, onto the shardings of ``abstract_variables``."""
  try:
    return checkpoints.restore(epoch, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abstract_variables)))['variables']
  except Exception as err:  # pylint: disable=broad-except
    # tensorstore and orbax raise bare Exceptions with the whole store spec as the message.
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(' See full')[0]
    raise ValueError(f'{checkpoints.directory / str(epoch)}: the saved arrays cannot be read '
                     f'({first}); retrain the fold with `gestaltxai train --overwrite`') from err


def read_metadata(checkpoints: ocp.CheckpointManager, epoch: int) -> dict[str, Any]:
  return checkpoints.restore(epoch, args=ocp.args.Composite(
      metadata=ocp.args.JsonRestore()))['metadata']


def checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path:
  """The checkpoint manager directory at ``path``: a fold directory or its checkpoints/."""
  path = pathlib.Path(path)
  for candidate in (path / CHECKPOINTS, path):
    if candidate.is_dir() and any(p.name.isdigit() for p in candidate.iterdir()):
      return candidate
  raise FileNotFoundError(f'no checkpoint in {path} (expected RUNS/fold-K or its '
                          f'{CHECKPOINTS}/ folder, written by `gestaltxai train`)')


def load_checkpoint(path: str | pathlib.Path, which: str = 'best', *, sharding=None):
  """A trained fold, ready for inference: (model, variables, config, metadata).

  Args:
    path: ``RUNS/fold-K``, its ``checkpoints/`` folder, or one epoch's folder
      ``checkpoints/<epoch>`` (then ``which`` is ignored).
    which: 'best' (highest validation accuracy) or 'latest'.
    sharding: where the variables go (default: this process's first device).

  Returns:
    ``model`` (a :class:`gestaltxai.models.ResNet` in the run's dtype),
    ``variables`` {'params', 'batch_stats'}, the :class:`TrainConfig`, and
    the metadata: 'classes', 'image_size', 'mean_bgr' (the fold's training
    BGR mean: inputs are BGR at image_size minus it), 'fold', 'epoch',
    'best_epoch', 'history'.
  """
  if which not in WHICH:
    raise ValueError(f'which must be one of {WHICH}, got {which!r}')
  path = pathlib.Path(path)
  epoch = int(path.name) if path.name.isdigit() and path.is_dir() else None
  checkpoints = manager(path.parent if epoch is not None else checkpoint_dir(path),
                        read_only=True)
  latest = checkpoints.latest_step()
  if latest is None:
    raise FileNotFoundError(f'no complete checkpoint in {checkpoints.directory}')
  if epoch is None:
    epoch = latest if which == 'latest' else read_metadata(checkpoints, latest)['best_epoch']
  metadata = read_metadata(checkpoints, epoch)
  config = TrainConfig.from_dict(metadata['config'])
  model = config.model.build(len(metadata['classes']), config.dtype)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          np.zeros((1, config.image_size, config.image_size, 3), np.float32))
  # Training saves a 'batch_stats' entry, empty for a network without BatchNorm (dlib's).
  shapes = {'batch_stats': {}, **shapes}
  # This process's first device: under jax.distributed, jax.devices()[0] may be another's.
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        shapes)
  variables = restore_variables(checkpoints, epoch, target)
  checkpoints.close()
  return model, variables, config, metadata
