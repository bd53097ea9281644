"""Training throughput: images/s of one compiled train step over every device.

    python benchmarks/train_cost.py --configs reference tiny --dtypes float32 bfloat16 [--torch]

For each configuration and dtype: the reference's SGD step (forward,
backward, BatchNorm statistics of the global batch, the optimizer update)
on the configuration's global batch sharded over all devices, inputs already
on the devices; compile time, then the median of ``--repeats`` timed steps,
as images/s, with XLA's FLOP count and achieved TFLOP/s. With --torch the
same VGGFace2 ResNet-50 runs the same SGD step in PyTorch in the same
process (float32; bfloat16 as autocast), for a same-run ratio. Records go to
``benchmarks/results.jsonl`` as 'train_step'.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.method_cost import xla_flops  # pylint: disable=wrong-import-position
from benchmarks.records import make_record, write_record  # pylint: disable=wrong-import-position
from gestaltxai.train.configs import CONFIGS  # pylint: disable=wrong-import-position
from gestaltxai.models import random_vggface2_state_dict  # pylint: disable=wrong-import-position
from gestaltxai.train import (  # pylint: disable=wrong-import-position
    DataParallel, TrainState, make_optimizer)

NUM_CLASSES = 12
# The schedule only needs an epoch length; the step's cost does not depend on it.
STEPS_PER_EPOCH = 100


def jax_step_seconds(config, repeats: int) -> tuple[float, float, float]:
  """(compile s, median step s, XLA flops per step) of the configuration's train step."""
  model = config.model.build(NUM_CLASSES, config.dtype)
  tx = make_optimizer(config, STEPS_PER_EPOCH)
  parallel = DataParallel(model, tx, config.batch_size)
  size = config.image_size
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
  state = jax.jit(lambda v: TrainState.create(v, tx), out_shardings=parallel.replicated)(
      parallel.replicate(variables))
  rng = np.random.default_rng(0)
  start, stop = parallel.local_rows
  batch = parallel.put_batch({
      'image': rng.normal(0, 50, (stop - start, size, size, 3)).astype(np.float32),
      'label': rng.integers(0, NUM_CLASSES, stop - start).astype(np.int32),
      'valid': np.ones(stop - start, bool)})
  started = time.perf_counter()
  compiled = parallel.train.lower(state, batch).compile()
  compile_s = time.perf_counter() - started
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  runs = []
  for _ in range(repeats):
    started = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    runs.append(time.perf_counter() - started)
  return compile_s, statistics.median(runs), xla_flops(compiled)


def torch_step_seconds(config, repeats: int) -> float:
  """Median seconds of the same SGD step on the PyTorch VGGFace2 ResNet-50 (first device)."""
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks.torch_vggface2 import from_state_dict  # pylint: disable=import-outside-toplevel
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = from_state_dict(random_vggface2_state_dict(0, NUM_CLASSES), 'reference',
                          device=device).train()
  head = list(model.fc.parameters())
  body = [p for n, p in model.named_parameters() if not n.startswith('fc.')]
  optimizer = torch.optim.SGD([{'params': body}, {'params': head, 'lr': 10 * config.learning_rate}],
                              lr=config.learning_rate, momentum=config.momentum)
  size = config.image_size
  images = torch.randn(config.batch_size, 3, size, size, device=device) * 50
  labels = torch.randint(0, NUM_CLASSES, (config.batch_size,), device=device)
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=config.dtype == 'bfloat16')

  def step():
    with autocast:
      loss = torch.nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if device == 'cuda':
      torch.cuda.synchronize()

  step()
  runs = []
  for _ in range(repeats):
    started = time.perf_counter()
    step()
    runs.append(time.perf_counter() - started)
  return statistics.median(runs)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', nargs='+', default=['reference', 'tiny'])
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
  parser.add_argument('--batch-size', type=int, help="default: each configuration's")
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--torch', action='store_true', help='PyTorch beside, same run (ResNet-50)')
  parser.add_argument('--out', type=pathlib.Path, help='records file (default results.jsonl)')
  args = parser.parse_args(argv)
  for name in args.configs:
    for dtype in args.dtypes:
      config = CONFIGS[name].replace(dtype=dtype, batch_size=args.batch_size)
      compile_s, seconds, flops = jax_step_seconds(config, args.repeats)
      fields = {'compile_s': compile_s, 'flops_per_step': flops,
                'tflops': flops / seconds / 1e12, 'image_size': config.image_size}
      line = (f'{name:10s} {dtype:9s} batch {config.batch_size:3d}: '
              f'{config.batch_size / seconds:8.1f} img/s, {fields["tflops"]:.3f} TFLOP/s '
              f'(compile {compile_s:.0f} s)')
      if args.torch and name == 'reference':
        peer = torch_step_seconds(config, args.repeats)
        fields.update(peer='torch', peer_images_per_s=config.batch_size / peer,
                      ratio_to_peer=peer / seconds)
        line += f'; torch {config.batch_size / peer:.1f} img/s, ours / torch {peer / seconds:.2f}x'
      print(line, flush=True)
      write_record(make_record('train_step', name, images_per_s=config.batch_size / seconds,
                               batch_size=config.batch_size, dtype=dtype, **fields), args.out)


if __name__ == '__main__':
  main()
