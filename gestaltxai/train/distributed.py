"""Joining the processes of a multi-host run: JAX's own multi-controller runtime.

Every process runs the same command; ``jax.distributed.initialize`` connects
them through a coordinator, after which ``jax.devices()`` lists every device
of every host and one jitted step runs over all of them.
"""

from __future__ import annotations

import os
from typing import Optional

import jax

#: Environment variables read when the options are not given.
ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, auto_detect: bool = False) -> bool:
  """Joins a multi-process run when one is asked for; returns whether it did.

  Args:
    coordinator: 'host:port' of process 0 (default ``$JAX_COORDINATOR_ADDRESS``).
    num_processes, process_id: default ``$JAX_NUM_PROCESSES``, ``$JAX_PROCESS_ID``.
    auto_detect: without a coordinator, let JAX find the cluster (SLURM,
      Open MPI, Cloud TPU, Kubernetes).

  Must run before anything touches a device. CPU collectives go through gloo,
  so the same code runs as several processes on one CPU machine.
  """
  coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
  if coordinator is None and not auto_detect:
    return False
  num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
  process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator, num_processes, process_id)
  return True


def _env_int(name: str) -> Optional[int]:
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError as err:
    raise ValueError(f'${name} must be an integer, got {value!r}') from err
