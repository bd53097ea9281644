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

#: Images per pass that ran fastest, per backend (``python -m benchmarks.pass_size``).
#: CPU (2-core Xeon, full ResNet-50, 2026-11-23): the gradient ran 5.6, 7.8,
#: 8.6, 8.5 and 7.6 images/s at 1, 2, 4, 8 and 16 images per pass, 20-step IG
#: of 4 images 0.46, 0.47 and 0.43 at 4, 8 and 16. Accelerators: large passes
#: fill the device (not yet measured here).
FASTEST_IMAGES_PER_PASS = {'cpu': 8, 'gpu': 256, 'tpu': 256}
#: Share of the device's memory one method's passes may take by default:
#: accelerators hold little else; a CPU's RAM is shared with the host.
MEMORY_FRACTION = {'cpu': 0.25, 'gpu': 0.5, 'tpu': 0.5}
_DEFAULT_BACKEND = 'gpu'  # for backends not in the tables (plugins)
#: XLA options for the top-level computation that runs chunked passes
#: (``jax.jit(f, compiler_options=COMPILER_OPTIONS)``; options of other
#: backends' compilers are ignored by the rest). XLA:CPU's default scheduler
#: computes data-independent operations first (the index iotas of every
#: max-pool gradient, one set per pass), so sequenced passes still hold 2.3x
#: one pass's memory (IG, 10 passes, ResNet-50); its memory-optimised scheduler
#: holds 1.0x. JAX allows compiler options on the outermost jit only, so the
#: entry points that own it pass them (the benchmarks do; extraction should);
#: the library's functions cannot.
COMPILER_OPTIONS = {'xla_cpu_scheduler_type': 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'}


def default_memory_budget(backend: Optional[str] = None) -> int:
  """Bytes a method's passes may take by default on ``backend`` (default: JAX's).

  ``MEMORY_FRACTION`` of the first device's ``bytes_limit`` on accelerators,
  of the available RAM (``MemAvailable``) on CPU.
  """
  backend = backend or jax.default_backend()
  fraction = MEMORY_FRACTION.get(backend, MEMORY_FRACTION[_DEFAULT_BACKEND])
  # This process's device: another process's is not addressable (jax.distributed).
  stats = jax.local_devices(backend=backend)[0].memory_stats() or {}
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
    inner = [_written_bytes(sub) for sub in sub_jaxprs(eqn)]
    total += max(inner) if inner else sum(_nbytes(v.aval) for v in eqn.outvars)
  return total


def sub_jaxprs(eqn):
  """The jaxprs nested in an equation (loop bodies, branches, calls)."""
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
  num_items = _num_items(items)
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


#: Chunk loops up to this many passes are unrolled, longer ones run as a loop.
#: XLA:CPU runs the input-gradient convolutions inside a loop body through a
#: slow path (kernel layout ``01oi``: 3.6x slower for a ResNet gradient,
#: 20x for a plain convolution stack, measured 2026-11-23), so gradient
#: methods unroll their passes (20 steps or samples take at most 20); long
#: forward-only loops (occlusion's hundreds of windows) ran as fast looped.
MAX_UNROLLED_CHUNKS = 20


def _num_items(items: Any) -> int:
  return jax.tree.leaves(items)[0].shape[0]


def _unrolled(items: Any, chunk: int) -> Optional[list[Any]]:
  """Consecutive groups of ``chunk`` items (the last may be smaller) when there are
  at most :data:`MAX_UNROLLED_CHUNKS` of them, else None (run them as a loop)."""
  n = _num_items(items)
  if -(-n // chunk) > MAX_UNROLLED_CHUNKS:
    return None
  return [jax.tree.map(lambda a, s=start: a[s:s + chunk], items) for start in range(0, n, chunk)]


def _after(items: Any, previous: Any) -> Any:
  """``items``, unchanged in value but computed only once ``previous`` is.

  Unrolled passes are independent, so XLA may schedule them side by side and
  keep every pass's buffers alive at once (4.3x one pass for 20 IG steps in 5
  passes on XLA:CPU). This data dependency orders them. ``zero`` is exactly
  0 whatever ``previous`` holds (NaN included); XLA cannot fold it away
  (``lax.optimization_barrier`` is dropped by XLA:CPU before scheduling).
  """
  anchor = jax.tree.leaves(previous)[0].reshape(-1)[0].astype(jnp.float32)
  zero = jnp.isnan(anchor).astype(jnp.float32) * 0.0
  return jax.tree.map(lambda a: _plus_zero(a, zero), items)


def _plus_zero(a: jax.Array, zero: jax.Array) -> jax.Array:
  if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
    data = jax.random.key_data(a)
    return jax.random.wrap_key_data(data + zero.astype(data.dtype), impl=jax.random.key_impl(a))
  if a.dtype == jnp.bool_:
    return a | zero.astype(jnp.bool_)
  return a + zero.astype(a.dtype)


def _stacked(items: Any, chunk: int) -> tuple[Any, Any]:
  """Leading axis N -> (full groups (N // chunk, chunk, ...), the remainder (N % chunk, ...))."""
  n = _num_items(items)
  full = n - n % chunk
  stacked = jax.tree.map(lambda a: a[:full].reshape(full // chunk, chunk, *a.shape[1:]), items)
  return stacked, jax.tree.map(lambda a: a[full:], items)


def _is_empty(items: Any) -> bool:
  return _num_items(items) == 0


def auto_chunked_map(fn: Callable[[Any], Any], items: Any, batch: int,
                     max_batch: Optional[int] = None,
                     memory_budget: Optional[int] = None) -> Any:
  """:func:`chunked_map` in passes of :func:`chunk_size`'s choice (``batch`` images per item)."""
  return chunked_map(fn, items, chunk_size(fn, items, batch, max_batch, memory_budget))


def chunked_map(fn: Callable[[Any], Any], items: Any, chunk: int) -> Any:
  """``vmap(fn)(items)``, evaluated ``chunk`` items at a time, one pass after another.

  ``items`` is a pytree whose leaves share a leading axis N; N need not be a
  multiple of ``chunk`` (the last pass is smaller). Each pass is one
  vectorised call, and only one pass's temporaries are alive at a time.
  """
  groups = _unrolled(items, chunk)
  if groups:
    outputs = [jax.vmap(fn)(groups[0])]
    for group in groups[1:]:
      outputs.append(jax.vmap(fn)(_after(group, outputs[-1])))
  else:
    stacked, rest = _stacked(items, chunk)
    _, looped = jax.lax.scan(lambda carry, group: (carry, jax.vmap(fn)(group)), None, stacked)
    outputs = [jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), looped)]
    if not _is_empty(rest):
      outputs.append(jax.vmap(fn)(_after(rest, outputs[-1])))
  return jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)


def chunked_sum(fn: Callable[[Any], Any], items: Any, chunk: int) -> Any:
  """``sum_i fn(items[i])`` evaluated ``chunk`` items at a time, one pass after another.

  Memory holds one pass's temporaries and the running sum, not N outputs.
  """
  def add(total, group):
    sums = jax.tree.map(lambda a: a.sum(0), jax.vmap(fn)(group))
    return sums if total is None else jax.tree.map(jnp.add, total, sums)

  groups = _unrolled(items, chunk)
  if groups:
    total = add(None, groups[0])
    for group in groups[1:]:
      total = add(total, _after(group, total))
    return total
  stacked, rest = _stacked(items, chunk)
  first = jax.tree.map(lambda a: a[0], items)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))
  total, _ = jax.lax.scan(lambda total, group: (add(total, group), None), zeros, stacked)
  return total if _is_empty(rest) else add(total, _after(rest, total))
