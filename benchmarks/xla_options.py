"""Which XLA compiler options speed up a method on this device: A/B in one process.

    python -m benchmarks.xla_options [--size full|tiny] [--method gradient] [--batch 4]
        [--options NAME ...] [--repeats 5]

Compiles the method once with ``chunking.COMPILER_OPTIONS`` (as the
benchmarks run it) and once per candidate option added
(``compile(compiler_options=...)``: per computation, nothing global), then
times them in turns so that load from other processes falls on all alike.
Each record gives the option's images/s and its ratio to the defaults
(``speedup`` > 1 is faster). ``bfloat16`` is not an XLA option but the
model's compute dtype, measured the same way.

The candidates are the XLA:CPU options of jaxlib 0.10 that may change speed
(``XLA_FLAGS=--xla_cpu_scheduler_type=x`` lists them all with their help).
"""

from __future__ import annotations

import argparse
from typing import Optional

import jax
import jax.numpy as jnp

from benchmarks import method_cost, networks, records
from gestaltxai import saliency
from gestaltxai.saliency import chunking

#: name -> XLA compiler options (values as XLA_FLAGS would spell them).
CANDIDATES = {
    'onednn': {'xla_cpu_use_onednn': True},
    'onednn_custom_call': {'xla_cpu_experimental_onednn_custom_call': True},
    'no_xnnpack': {'xla_cpu_use_xnnpack': False},
    'xnn_graph_fusion': {'xla_cpu_experimental_xnn_graph_fusion_mode':
                         'XNN_GRAPH_FUSION_MODE_GREEDY'},
    'fast_math': {'xla_cpu_enable_fast_math': True},
    'default_scheduler': {'xla_cpu_scheduler_type': 'CPU_SCHEDULER_TYPE_DEFAULT'},
    'vector_width_512': {'xla_cpu_prefer_vector_width': 512},
    'single_thread_eigen': {'xla_cpu_multi_thread_eigen': False},
    'fast_runtime_preset': {'xla_cpu_opt_preset': 'CPU_OPT_PRESET_FAST_RUNTIME'},
}
BFLOAT16 = 'bfloat16'


def compile_with(name: str, model, inputs, options):
  """(call, compile seconds, temp bytes) of the method compiled with XLA ``options``."""
  lowered = jax.jit(saliency.compiled(name, model)).lower(*inputs)
  executable = lowered.compile(compiler_options={**chunking.COMPILER_OPTIONS, **options})
  return lambda: executable(*inputs), executable.memory_analysis().temp_size_in_bytes


def main(argv: Optional[list[str]] = None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--size', choices=networks.SIZES, default='full')
  parser.add_argument('--method', default='gradient')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--options', nargs='+', default=[*CANDIDATES, BFLOAT16],
                      choices=[*CANDIDATES, BFLOAT16])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--records', help='JSON-lines file (default benchmarks/results.jsonl)')
  parser.add_argument('--no-record', action='store_true', help='print only')
  args = parser.parse_args(argv)

  net = networks.network(args.size)
  x = net.images(args.batch)
  inputs = (net.variables, x, jnp.full((args.batch,), method_cost.TARGET_CLASS, jnp.int32),
            jax.random.PRNGKey(1))
  calls, temp = {}, {}
  calls['default'], temp['default'] = compile_with(args.method, net.model, inputs, {})
  for option in args.options:
    if option == BFLOAT16:
      model = net.model.clone(dtype=jnp.bfloat16)
      calls[option], temp[option] = compile_with(args.method, model, inputs, {})
    else:
      calls[option], temp[option] = compile_with(args.method, net.model, inputs,
                                                 CANDIDATES[option])
  seconds = method_cost.interleaved_seconds(calls, args.repeats)
  print(f'{args.method}, batch {args.batch}, {args.size}: {"option":20s} {"img/s":>8s} '
        f'{"speedup":>8s} {"temp MiB":>9s}')
  for option, run_s in seconds.items():
    speedup = seconds['default'] / run_s
    print(f'{"":>30s}{option:20s} {args.batch / run_s:8.2f} {speedup:8.3f} '
          f'{temp[option] / 2**20:9.0f}', flush=True)
    if not args.no_record and option != 'default':
      records.write_record(records.make_record(
          'xla_options', option, images_per_s=args.batch / run_s, batch_size=args.batch,
          dtype=BFLOAT16 if option == BFLOAT16 else 'float32', method=args.method,
          size=args.size, compiler_options=CANDIDATES.get(option, {}), speedup=speedup,
          default_images_per_s=args.batch / seconds['default'], temp_bytes=temp[option]),
          args.records)
  return seconds


if __name__ == '__main__':
  main()
