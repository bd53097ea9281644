"""Chunked evaluation: many inputs per image (IG steps, noise samples, occlusion
windows) in one compiled computation, a bounded number of images per pass.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

#: Default for ``max_batch``: the most images one pass pushes through the
#: network when a method evaluates several inputs per image (IG steps, noise
#: samples, occlusion windows). It bounds activation memory; about 24 GiB of
#: float32 ResNet-50 backward activations at 224x224.
DEFAULT_MAX_BATCH = 256
#: Chunk loops up to this length are unrolled (see ``_unroll``).
MAX_UNROLLED_CHUNKS = 8


def chunk_size(num_items: int, batch: int, max_batch: int) -> int:
  """The largest divisor of ``num_items`` with ``chunk * batch <= max_batch`` (at least 1)."""
  limit = max(1, max_batch // max(batch, 1))
  return max(d for d in range(1, min(num_items, limit) + 1) if num_items % d == 0)


def _unroll(num_chunks: int) -> int:
  """Unroll short chunk loops: XLA runs a ResNet gradient inside a while loop
  markedly slower than unrolled (1.34x against 0.75x of separate calls on
  CPU, measured 2026-11-23); long loops stay loops to bound compile time."""
  return num_chunks if num_chunks <= MAX_UNROLLED_CHUNKS else 1


def _grouped(items: Any, chunk: int) -> tuple[Any, int]:
  """Leading axis N -> (N // chunk, chunk); also returns the number of chunks."""
  n = jax.tree.leaves(items)[0].shape[0]
  if n % chunk:
    raise ValueError(f'{n} items do not split into chunks of {chunk}')
  return jax.tree.map(lambda a: a.reshape(n // chunk, chunk, *a.shape[1:]), items), n // chunk


def chunked_map(fn: Callable[[Any], Any], items: Any, chunk: int) -> Any:
  """``vmap(fn)(items)``, evaluated ``chunk`` items at a time inside one computation.

  ``items`` is a pytree whose leaves share a leading axis N, a multiple of
  ``chunk``. Each chunk is one vectorised call (``chunk`` x batch images in
  one pass); a scan walks the chunks.
  """
  grouped, num_chunks = _grouped(items, chunk)
  _, out = jax.lax.scan(lambda carry, group: (carry, jax.vmap(fn)(group)), None, grouped,
                        unroll=_unroll(num_chunks))
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)


def chunked_sum(fn: Callable[[Any], Any], items: Any, chunk: int) -> Any:
  """``sum_i fn(items[i])`` evaluated ``chunk`` items at a time, accumulating in a scan.

  Memory holds one chunk's outputs, not all N of them.
  """
  grouped, num_chunks = _grouped(items, chunk)
  first = jax.tree.map(lambda a: a[0, 0], grouped)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))

  def body(total, group):
    return jax.tree.map(lambda t, y: t + y.sum(0), total, jax.vmap(fn)(group)), None

  total, _ = jax.lax.scan(body, zeros, grouped, unroll=_unroll(num_chunks))
  return total
