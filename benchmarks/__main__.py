"""The benchmark suite, then the tables of RESULTS.md regenerated from its records.

    python -m benchmarks [--size full|tiny] [--captum] [--batch-sizes 4] [--repeats 3]
        [--methods ...] [--stages ...] [--records benchmarks/results.jsonl]
        [--results benchmarks/RESULTS.md]

Stages, in order (each a module of this package with ``main(argv)``, so each
also runs alone as ``python -m benchmarks.<stage>``; they take ``--size`` and
``--records``, except ``train_cost``, which takes ``--configs`` and ``--out``):

* ``peak``: the device's matmul peak, the yardstick for achieved FLOP/s;
* ``method_cost``: every method's cost (beside Captum with ``--captum``);
* ``train_cost``: training-step images/s;
* ``extract_cost``: end-to-end extraction images/s;

and, with ``--stages``, the measurements behind the defaults:

* ``pass_size``: images per pass against speed (the default ``max_batch``);
* ``xla_options``: XLA:CPU compiler options and bfloat16, A/B against the defaults.

A stage whose module is not written yet is reported and skipped. Run it under
the shared lock on a shared machine (``flock /tmp/gestaltxai-heavy.lock ...``);
``--size tiny`` is the smoke run the test suite makes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Optional

from benchmarks import networks, tables


DEFAULT_STAGES = ('peak', 'method_cost', 'train_cost', 'extract_cost')
#: network size -> experiments configuration of the training benchmark.
TRAIN_CONFIGS = {'full': 'reference', 'tiny': 'tiny'}


def stage_arguments(args) -> dict[str, list[str]]:
  """stage -> its argv, from the suite's arguments."""
  common = ['--size', args.size] + (['--records', args.records] if args.records else [])
  method_cost = common + ['--batch-sizes', *map(str, args.batch_sizes),
                         '--repeats', str(args.repeats)] + (['--captum'] if args.captum else [])
  if args.methods:
    method_cost += ['--methods', *args.methods]
  # benchmarks/train_cost.py (the training work) names its network by configuration.
  train_cost = ['--configs', TRAIN_CONFIGS[args.size], '--repeats', str(args.repeats)] + (
      ['--out', args.records] if args.records else [])
  return {'peak': common, 'method_cost': method_cost, 'train_cost': train_cost,
          'extract_cost': common, 'pass_size': common, 'xla_options': common}


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--size', choices=networks.SIZES, default='full')
  parser.add_argument('--captum', action='store_true')
  parser.add_argument('--batch-sizes', nargs='+', type=int, default=[4])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--methods', nargs='+', help='methods to cost (default: method_cost\'s)')
  parser.add_argument('--stages', nargs='+', help='run only these stages')
  parser.add_argument('--records', help='JSON-lines file (default benchmarks/results.jsonl)')
  parser.add_argument('--results', help='markdown file whose tables to regenerate '
                      '(default benchmarks/RESULTS.md)')
  args = parser.parse_args(argv)
  for stage, stage_argv in stage_arguments(args).items():
    if stage not in (args.stages or DEFAULT_STAGES):
      continue
    module_name = f'benchmarks.{stage}'
    if importlib.util.find_spec(module_name) is None:
      print(f'== {stage}: not written yet, skipped', flush=True)
      continue
    print(f'== {stage}: python -m {module_name} {" ".join(stage_argv)}', flush=True)
    importlib.import_module(module_name).main(stage_argv)
  table_argv = ((['--records', args.records] if args.records else [])
                + (['--results', args.results] if args.results else []))
  return tables.main(table_argv)


if __name__ == '__main__':
  sys.exit(main())
