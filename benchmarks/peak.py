"""The device's measured matrix-multiply peak: the yardstick for achieved FLOP/s.

    python -m benchmarks.peak [--dtype float32 bfloat16] [--size 4096]

Times one square ``n x n @ n x n`` product (2 n^3 FLOPs) and reports the best
of ``--repeats`` runs: what a dense kernel reaches on this device, to which
every method's achieved FLOP/s is compared.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks import records

DEFAULT_SIDE = {'full': 4096, 'tiny': 256}


def matmul_peak(dtype: str = 'float32', side: int = 4096, repeats: int = 5) -> float:
  """Best FLOP/s of an n x n matrix product in ``dtype`` on the default device."""
  a = jax.random.normal(jax.random.PRNGKey(0), (side, side)).astype(dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (side, side)).astype(dtype)
  product = jax.jit(jnp.matmul).lower(a, b).compile()
  jax.block_until_ready(product(a, b))
  best = float('inf')
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(product(a, b))
    best = min(best, time.perf_counter() - started)
  return 2 * side**3 / best


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--dtype', nargs='+', default=['float32'])
  parser.add_argument('--size', choices=sorted(DEFAULT_SIDE), default='full',
                      help='full: a 4096-side product; tiny: 256 (smoke runs)')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--records', help='JSON-lines file (default benchmarks/results.jsonl)')
  parser.add_argument('--no-record', action='store_true', help='print only')
  args = parser.parse_args(argv)
  side = DEFAULT_SIDE[args.size]
  peaks = {}
  for dtype in args.dtype:
    peaks[dtype] = matmul_peak(dtype, side, args.repeats)
    print(f'matmul peak {dtype}: {peaks[dtype] / 1e12:.3f} TFLOP/s ({side}x{side})', flush=True)
    if not args.no_record:
      records.write_record(records.make_record(
          'matmul_peak', f'matmul {side}', images_per_s=float('nan'), batch_size=0, dtype=dtype,
          flops_per_s=peaks[dtype], side=side), args.records)
  return peaks


if __name__ == '__main__':
  main()
