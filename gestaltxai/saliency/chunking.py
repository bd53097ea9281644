"""Chunked evaluation: many inputs per image (IG steps, noise samples, occlusion
windows) in one compiled computation, a bounded number of images per pass.

A method evaluates ``fn`` on N items (an IG step, a noise sample, a window),
each item one pass over the batch of B images. :func:`chunk_size` decides how
many items share a pass (``chunk``, so ``chunk * B`` images); :func:`chunked_map`
and :func:`chunked_sum` run the passes one after another, so the temporary
memory of the whole method stays about that of one pass.

How many images a pass takes when the caller does not say (``max_batch=None``):
the fewest of what runs fastest on the backend (:data:`FASTEST_IMAGES_PER_PASS`)
and what fits a memory budget (:func:`default_memory_budget`: a share of the
accelerator's memory, or of the available RAM on CPU; ``memory_budget=``
overrides), at an upper bound of a pass's bytes (:func:`pass_bytes`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

#: Images per pass that ran fastest, per backend. CPU (2-core Xeon, full
#: ResNet-50 gradient, 2026-11-23): 2 to 8 images per pass were equally fast
#: and larger passes slower (their activations leave the caches);
#: accelerators: large passes fill the device (to be measured on a GPU).
FASTEST_IMAGES_PER_PASS = {'cpu': 8, 'gpu': 256, 'tpu': 256}
#: Share of the device's memory one method's passes may take by default:
#: accelerators hold little else; a CPU's RAM is shared with the host.
MEMORY_FRACTION = {'cpu': 0.25, 'gpu': 0.5, 'tpu': 0.5}
_DEFAULT_BACKEND = 'gpu'  # for backends not in the tables (plugins)


def default_memory_budget(backend: Optional[str] = None) -> int:
  """Bytes a method's passes may take by default on ``backend`` (default: JAX's).

  ``MEMORY_FRACTION`` of the first device's ``bytes_limit`` on accelerators,
  of the available RAM (``MemAvailable``) on CPU.
  """
  backend = backend or jax.default_backend()
  fraction = MEMORY_FRACTION.get(backend, MEMORY_FRACTION[_DEFAULT_BACKEND])
  stats = jax.devices(backend)[0].memory_stats() or {}
  total = stats.get('bytes_limit') or _available_ram()
  return int(fraction * total)


def _available_ram() -> int:
  """MemAvailable of /proc/meminfo (free plus reclaimable), else the free pages."""
  try:
    with open('/proc/meminfo', encoding='ascii') as meminfo:
      for line in meminfo:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def pass_bytes(fn: Callable[[Any], Any], item: Any) -> int:
  """An upper bound on the temporary bytes of ``fn(item)``: every value it computes.

  The sum of the sizes of all intermediate values in ``fn``'s jaxpr (a nested
  computation counts with its own sum), as if none were ever freed or fused.
  XLA needs less: 7x less for a ResNet-50 gradient, 13x less for a forward
  pass (224 px, batch 8, XLA:CPU), so a budget of these bytes is never
  exceeded and on accelerators still allows ~100 images per pass.
  """
  return _written_bytes(jax.make_jaxpr(fn)(item).jaxpr)


def _written_bytes(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    inner = [_written_bytes(sub) for sub in _sub_jaxprs(eqn)]
    total += max(inner) if inner else sum(_nbytes(v.aval) for v in eqn.outvars)
  return total


def _sub_jaxprs(eqn):
  for param in eqn.params.values():
    for value in param if isinstance(param, (tuple, list)) else (param,):
      if isinstance(value, jax_core.ClosedJaxpr):
        yield value.jaxpr
      elif isinstance(value, jax_core.Jaxpr):
        yield value


def _nbytes(aval) -> int:
  """Bytes of an array value; 0 for values that are not arrays (tokens)."""
  if not hasattr(aval, 'shape'):
    return 0
  return int(np.prod(aval.shape, dtype=np.int64)) * aval.dtype.itemsize


def chunk_size(fn: Callable[[Any], Any], items: Any, batch: int,
               max_batch: Optional[int] = None,
               memory_budget: Optional[int] = None) -> int:
  """Items per pass, at least 1: ``max_batch // batch`` when ``max_batch`` is given.

  Otherwise the largest count whose ``count * batch`` images stay within the
  backend's :data:`FASTEST_IMAGES_PER_PASS` and whose :func:`pass_bytes`
  stay within ``memory_budget`` bytes (default :func:`default_memory_budget`).

  Args:
    fn: item -> outputs, one pass over the batch.
    items: pytree whose leaves share the leading axis N (items).
    batch: images per item (B).
  """
  num_items = jax.tree.leaves(items)[0].shape[0]
  if max_batch is None:
    backend = jax.default_backend()
    fastest = FASTEST_IMAGES_PER_PASS.get(backend, FASTEST_IMAGES_PER_PASS[_DEFAULT_BACKEND])
    budget = default_memory_budget(backend) if memory_budget is None else memory_budget
    one_item = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), items)
    by_memory = budget // max(pass_bytes(fn, one_item), 1)
    limit = min(fastest // max(batch, 1), by_memory)
  else:
    if max_batch < 1:
      raise ValueError(f'max_batch must be a positive number of images, got {max_batch}')
    limit = max_batch // max(batch, 1)
  return int(min(max(limit, 1), num_items))


def _split(items: Any, chunk: int) -> tuple[Any, Any, int]:
  """Leading axis N -> (full chunks (N // chunk, chunk, ...), remainder (N % chunk, ...), N // chunk)."""
  n = jax.tree.leaves(items)[0].shape[0]
  full = n - n % chunk
  grouped = jax.tree.map(lambda a: a[:full].reshape(full // chunk, chunk, *a.shape[1:]), items)
  rest = jax.tree.map(lambda a: a[full:], items)
  return grouped, rest, full // chunk


def chunked_map(fn: Callable[[Any], Any], items: Any, chunk: int) -> Any:
  """``vmap(fn)(items)``, evaluated ``chunk`` items at a time, one chunk after another.

  ``items`` is a pytree whose leaves share a leading axis N; N need not be a
  multiple of ``chunk`` (the last pass is smaller). Each pass is one
  vectorised call; a loop walks the passes, so only one pass's temporaries
  are alive at a time.
  """
  grouped, rest, num_chunks = _split(items, chunk)
  outputs = []
  if num_chunks:
    _, out = jax.lax.scan(lambda carry, group: (carry, jax.vmap(fn)(group)), None, grouped)
    outputs.append(jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out))
  if jax.tree.leaves(rest)[0].shape[0]:
    outputs.append(jax.vmap(fn)(rest))
  return jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)


def chunked_sum(fn: Callable[[Any], Any], items: Any, chunk: int) -> Any:
  """``sum_i fn(items[i])`` evaluated ``chunk`` items at a time, accumulating in a loop.

  Memory holds one pass's temporaries and the running sum, not N outputs.
  """
  grouped, rest, num_chunks = _split(items, chunk)
  first = jax.tree.map(lambda a: a[0], items)
  total = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))

  def add(running, group):
    return jax.tree.map(lambda t, y: t + y.sum(0), running, jax.vmap(fn)(group))

  if num_chunks:
    total, _ = jax.lax.scan(lambda running, group: (add(running, group), None), total, grouped)
  if jax.tree.leaves(rest)[0].shape[0]:
    total = add(total, rest)
  return total
