"""What each saliency method costs on the full ResNet-50, optionally against Captum.

    python benchmarks/method_cost.py --batch-sizes 32 --dtype float32 [--captum]

For every method and batch size: compile time, then the median of
``--repeats`` timed runs of the compiled computation (inputs on the device,
``block_until_ready``), as images/s; its passes per image; the ratio of its
time to (passes x the measured cost of one pass of the same kind) -- the
overhead beyond the passes it must do; and achieved TFLOP/s from XLA's cost
analysis. With --captum (torch and captum installed) the same model runs
through Captum in the same process for same-run ratios.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from gestaltxai import saliency  # pylint: disable=wrong-import-position
from gestaltxai.models import ResNet50, port_vggface2  # pylint: disable=wrong-import-position
from tests.numpy_reference import random_state_dict  # pylint: disable=wrong-import-position

DEFAULT_METHODS = ('gradient', 'integrated_gradients', 'smoothgrad', 'occlusion', 'grad_cam',
                   'guided_backprop', 'lrp_epsilon_plus_flat', 'deeplift', 'fullgrad')
NUM_CLASSES = 12


def timed(fn, args, repeats):
  """(compile seconds, median run seconds, XLA flops of one run)."""
  started = time.perf_counter()
  lowered = fn.lower(*args)
  executable = lowered.compile()
  compile_s = time.perf_counter() - started
  jax.block_until_ready(executable(*args))
  runs = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(executable(*args))
    runs.append(time.perf_counter() - started)
  analysis = executable.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  flops = float((analysis or {}).get('flops', float('nan')))
  return compile_s, statistics.median(runs), flops


def captum_runner(state, method, batch, device):
  """A zero-argument callable running Captum's version of ``method``, or None."""
  import torch  # pylint: disable=import-outside-toplevel
  from captum import attr  # pylint: disable=import-outside-toplevel
  from benchmarks.torch_vggface2 import from_state_dict  # pylint: disable=import-outside-toplevel
  model = from_state_dict(state, 'reference', device=device)
  x = torch.randn(batch, 3, 224, 224, device=device) * 50
  target = [1] * batch
  runs = {
      'forward': lambda: model(x),
      'gradient': lambda: attr.Saliency(model).attribute(x, target=target, abs=False),
      'integrated_gradients': lambda: attr.IntegratedGradients(model).attribute(
          x, target=target, n_steps=20, method='riemann_right', internal_batch_size=batch * 20),
      'smoothgrad': lambda: attr.NoiseTunnel(attr.Saliency(model)).attribute(
          x, target=target, nt_type='smoothgrad', nt_samples=20, stdevs=10.0, abs=False,
          nt_samples_batch_size=20),
      'occlusion': lambda: attr.Occlusion(model).attribute(
          x, target=target, sliding_window_shapes=(3, 15, 15), strides=(3, 8, 8), baselines=0,
          perturbations_per_eval=max(1, 256 // batch)),
      'grad_cam': lambda: attr.LayerGradCam(model, model.layer4).attribute(x, target=target),
      'guided_backprop': lambda: attr.GuidedBackprop(model).attribute(x, target=target),
      'deeplift': lambda: attr.DeepLift(model).attribute(x, target=target),
  }
  if method not in runs:
    return None

  def run():
    out = runs[method]()
    if device != 'cpu':
      torch.cuda.synchronize()
    return out

  return run


def time_torch(run, repeats):
  run()
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    run()
    times.append(time.perf_counter() - started)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS))
  parser.add_argument('--batch-sizes', nargs='+', type=int, default=[8])
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--captum', action='store_true', help='time Captum in the same run')
  parser.add_argument('--json', type=pathlib.Path, help='append one JSON line per result')
  args = parser.parse_args()

  state = random_state_dict(np.random.default_rng(0), NUM_CLASSES)
  variables = port_vggface2(state)
  model = ResNet50(NUM_CLASSES, dtype=jnp.dtype(args.dtype))
  device = jax.devices()[0]
  print(f'device: {device.device_kind} ({device.platform}), jax {jax.__version__}, '
        f'dtype {args.dtype}')
  header = (f'{"method":24s} {"batch":>5s} {"img/s":>9s} {"ms/img":>8s} {"passes":>8s} '
            f'{"vs passes":>9s} {"TFLOP/s":>8s} {"compile s":>9s}')
  if args.captum:
    header += f' {"captum img/s":>12s} {"speedup":>8s}'
  print(header)
  for batch in args.batch_sizes:
    x = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (batch, 224, 224, 3)) * 50)
    target = jnp.ones((batch,), jnp.int32)
    key = jax.random.PRNGKey(1)
    forward = jax.jit(lambda v, images: model.apply(v, images))
    _, forward_s, _ = timed(forward, (variables, x), args.repeats)
    _, gradient_s, _ = timed(saliency.compiled('gradient', model), (variables, x, target, key),
                             args.repeats)
    for name in args.methods:
      method = saliency.get_method(name)
      compile_s, run_s, flops = timed(saliency.compiled(name, model),
                                      (variables, x, target, key), args.repeats)
      forwards, backwards = method.cost({}, 224, 224)
      # Expected time: each forward-backward pair at the gradient's cost, the
      # remaining forwards at the forward's cost.
      expected = backwards * gradient_s + (forwards - backwards) * forward_s
      row = (f'{name:24s} {batch:5d} {batch / run_s:9.1f} {1e3 * run_s / batch:8.2f} '
             f'{f"{forwards}F+{backwards}B":>8s} {run_s / expected:9.2f} '
             f'{flops / run_s / 1e12:8.2f} {compile_s:9.1f}')
      result = {'method': name, 'batch': batch, 'dtype': args.dtype, 'device': device.device_kind,
                'images_per_s': batch / run_s, 'passes': [forwards, backwards],
                'ratio_to_passes': run_s / expected, 'tflops': flops / run_s / 1e12,
                'compile_s': compile_s}
      if args.captum:
        torch_device = 'cuda' if device.platform == 'gpu' else 'cpu'
        run = captum_runner(state, name, batch, torch_device)
        if run is not None:
          captum_s = time_torch(run, args.repeats)
          row += f' {batch / captum_s:12.1f} {captum_s / run_s:8.2f}'
          result.update(captum_images_per_s=batch / captum_s, speedup=captum_s / run_s)
      print(row, flush=True)
      if args.json:
        with open(args.json, 'a') as f:
          f.write(json.dumps(result) + '\n')


if __name__ == '__main__':
  main()
