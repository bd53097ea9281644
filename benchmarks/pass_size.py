"""How many images per pass run fastest: the measurements behind the default ``max_batch``.

    python -m benchmarks.pass_size [--size full|tiny] [--images-per-pass 1 2 4 8 16]
        [--method integrated_gradients] [--batch 4] [--repeats 3]

Times, in turns within one process, the gradient at each batch size in
``--images-per-pass`` and ``--method`` on ``--batch`` images with each
``max_batch`` of that list (the passes it then makes), and records
images/s and XLA's temporary bytes of each. The fastest images per pass on
a backend is ``chunking.FASTEST_IMAGES_PER_PASS``.
"""

from __future__ import annotations

import argparse
from typing import Optional

import jax
import jax.numpy as jnp

from benchmarks import method_cost, networks, records
from gestaltxai import saliency


def main(argv: Optional[list[str]] = None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--size', choices=networks.SIZES, default='full')
  parser.add_argument('--images-per-pass', nargs='+', type=int, default=[1, 2, 4, 8, 16])
  parser.add_argument('--method', default='integrated_gradients')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--records', help='JSON-lines file (default benchmarks/results.jsonl)')
  parser.add_argument('--no-record', action='store_true', help='print only')
  args = parser.parse_args(argv)

  net = networks.network(args.size)
  key = jax.random.PRNGKey(1)
  runs = {}  # (name, images per pass) -> (executable, images per call)
  for images in args.images_per_pass:
    x = net.images(images)
    target = jnp.full((images,), method_cost.TARGET_CLASS, jnp.int32)
    runs[('gradient', images)] = (method_cost.compile_call(
        saliency.compiled('gradient', net.model), net.variables, x, target, key), images)
  x = net.images(args.batch)
  target = jnp.full((args.batch,), method_cost.TARGET_CLASS, jnp.int32)
  for images in args.images_per_pass:
    if images >= args.batch:
      runs[(args.method, images)] = (method_cost.compile_call(
          saliency.compiled(args.method, net.model, max_batch=images), net.variables, x, target,
          key), args.batch)
  seconds = method_cost.interleaved_seconds({k: run.call for k, (run, _) in runs.items()},
                                            args.repeats)
  print(f'{"method":24s} {"images/pass":>11s} {"batch":>5s} {"img/s":>8s} {"temp MiB":>9s}')
  for (name, images), (run, batch) in runs.items():
    images_per_s = batch / seconds[(name, images)]
    print(f'{name:24s} {images:11d} {batch:5d} {images_per_s:8.2f} '
          f'{run.temp_bytes / 2**20:9.0f}', flush=True)
    if not args.no_record:
      records.write_record(records.make_record(
          'pass_size', name, images_per_s=images_per_s, batch_size=batch, dtype='float32',
          size=args.size, images_per_pass=images, temp_bytes=run.temp_bytes,
          compile_s=run.compile_s), args.records)
  return seconds


if __name__ == '__main__':
  main()
