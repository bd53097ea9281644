"""What each saliency method costs, optionally beside Captum in the same process.

    python -m benchmarks.method_cost [--size full|tiny] [--batch-sizes 4] [--methods ...]
        [--dtype float32] [--repeats 3] [--max-batch N] [--captum] [--records PATH]

For every method and batch size, one JSON record (benchmarks/records.py) with:
images/s and ms/image (median of ``--repeats`` timed calls of the compiled
computation, inputs on the device); its passes per image; time / passes, the
ratio of its time to (backward passes x one gradient + other forwards x one
forward), both timed in the same loop; XLA's FLOPs per image (of the method
lowered as one pass, since XLA counts a loop body once) and the achieved
FLOP/s against the measured matmul peak (benchmarks/peak.py); the temporary
memory XLA allocates (``memory_analysis().temp_size_in_bytes``); compile time.
With ``--captum`` (torch and captum installed) Captum runs the same model in
the same process, interleaved call by call with ours, with as many threads as
XLA and the same images per pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import statistics
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import networks, peak, records
from gestaltxai import saliency
from gestaltxai.saliency import chunking

DEFAULT_METHODS = ('gradient', 'integrated_gradients', 'smoothgrad', 'occlusion', 'grad_cam',
                   'guided_backprop', 'deeplift', 'lrp_epsilon_plus_flat', 'fullgrad')
#: The methods of issue #26 (``--methods`` takes them; Score-CAM and Ablation-CAM make
#: 2,049 passes an image at layer4, Guided IG 200 gradients one after another).
NEW_METHODS = ('guided_integrated_gradients', 'blur_integrated_gradients', 'expected_gradients',
               'xrai', 'layer_cam', 'xgrad_cam', 'eigen_cam', 'score_cam', 'ablation_cam',
               'region_kernel_shap', 'region_lime')
TARGET_CLASS = 1


@dataclasses.dataclass(frozen=True)
class Executable:
  """A compiled call with XLA's counts: ``call()`` runs it on fixed inputs."""

  call: Callable[[], object]
  compile_s: float
  flops: float
  temp_bytes: int


def compile_call(fn, *args) -> Executable:
  """Compiles ``fn(*args)`` as the top-level computation, with the options that bound
  chunked passes' memory (``chunking.COMPILER_OPTIONS``), keeping XLA's counts."""
  started = time.perf_counter()
  lowered = jax.jit(fn, compiler_options=chunking.COMPILER_OPTIONS).lower(*args)
  executable = lowered.compile()
  compile_s = time.perf_counter() - started
  return Executable(lambda: executable(*args), compile_s, xla_flops(lowered),
                    executable.memory_analysis().temp_size_in_bytes)


def xla_flops(lowered) -> float:
  """FLOPs of one call by XLA's cost analysis of the lowered computation.

  Counted before optimisation, so no compile is needed (a 784-window pass of
  the full ResNet-50 took minutes to compile); within 0.2% of the compiled
  count. A loop body counts once.
  """
  analysis = lowered.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float((analysis or {}).get('flops', float('nan')))


def one_pass_flops(fn, *args) -> float:
  return xla_flops(jax.jit(fn).lower(*args))


def interleaved_seconds(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
  """Median seconds per call of each, timed in turns (a, b, a, b, ...) after one warm-up.

  Taking turns spreads the load of other processes over all calls alike.
  """
  for call in calls.values():
    _finish(call())
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      started = time.perf_counter()
      _finish(call())
      times[name].append(time.perf_counter() - started)
  return {name: statistics.median(seconds) for name, seconds in times.items()}


def _finish(result):
  """Waits for JAX arrays; torch CPU results are ready when returned."""
  return jax.block_until_ready(result) if isinstance(result, jax.Array) else result


def takes_option(name: str, option: str) -> bool:
  return option in inspect.signature(saliency.get_method(name).fn).parameters


def passes(name: str, side: int) -> tuple[int, int]:
  """(forward, backward) passes per image of ``name`` with its default options."""
  return saliency.get_method(name).passes(side, side)


def expected_seconds(method_passes: tuple[int, int], forward_s: float, gradient_s: float) -> float:
  """Each forward-backward pair at the gradient's cost, remaining forwards at the forward's."""
  forwards, backwards = method_passes
  return backwards * gradient_s + (forwards - backwards) * forward_s


def captum_runner(state_dict, method: str, batch: int, images_per_pass: int, threads: int):
  """A zero-argument callable running Captum's version of ``method``, or None."""
  import torch  # pylint: disable=import-outside-toplevel
  from captum import attr  # pylint: disable=import-outside-toplevel
  from benchmarks.torch_vggface2 import from_state_dict  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(threads)
  model = from_state_dict(state_dict, 'reference')
  x = torch.randn(batch, 3, 224, 224) * 50
  target = [TARGET_CLASS] * batch
  per_pass = max(1, images_per_pass // batch)  # steps, samples or windows per pass
  runs = {
      'gradient': lambda: attr.Saliency(model).attribute(x, target=target, abs=False),
      'integrated_gradients': lambda: attr.IntegratedGradients(model).attribute(
          x, target=target, n_steps=20, method='riemann_right',
          internal_batch_size=per_pass * batch),
      'smoothgrad': lambda: attr.NoiseTunnel(attr.Saliency(model)).attribute(
          x, target=target, nt_type='smoothgrad', nt_samples=20, stdevs=10.0, abs=False,
          nt_samples_batch_size=per_pass),
      'occlusion': lambda: attr.Occlusion(model).attribute(
          x, target=target, sliding_window_shapes=(3, 15, 15), strides=(3, 8, 8), baselines=0,
          perturbations_per_eval=per_pass),
      'grad_cam': lambda: attr.LayerGradCam(model, model.layer4).attribute(x, target=target),
      'guided_backprop': lambda: attr.GuidedBackprop(model).attribute(x, target=target),
      'deeplift': lambda: attr.DeepLift(model).attribute(x, target=target),
  }
  return runs.get(method)


def band_regions(batch: int, size: int, players: int = 3):
  """(B, size, size) int32: horizontal bands 1..players (eye, nose, mouth) under a band 0."""
  rows = np.arange(size) * (players + 1) // size
  return jnp.asarray(np.broadcast_to(rows[:, None], (batch, size, size)), jnp.int32)


def measure(net: networks.Network, batch: int, names, args, peak_flops: float):
  """Yields one record per method at this batch size."""
  x = net.images(batch)
  target = jnp.full((batch,), TARGET_CLASS, jnp.int32)
  key = jax.random.PRNGKey(1)
  inputs = (net.variables, x, target, key)
  forward = compile_call(lambda v, images: net.model.apply(v, images), net.variables, x)
  gradient = compile_call(saliency.compiled('gradient', net.model), *inputs)
  threads = os.cpu_count()
  images_per_pass = args.max_batch or chunking.FASTEST_IMAGES_PER_PASS.get(
      jax.default_backend(), batch)
  for name in names:
    options = {'max_batch': args.max_batch} if args.max_batch and takes_option(
        name, 'max_batch') else {}
    if takes_option(name, 'regions'):  # region methods: the reference's 3 regions as bands
      options['regions'] = band_regions(batch, net.image_size)
    ours = compile_call(saliency.compiled(name, net.model, **options), *inputs)
    method_passes = passes(name, net.image_size)
    flops = ours.flops
    if takes_option(name, 'max_batch'):  # XLA counts a loop once: count one single pass
      flops = one_pass_flops(saliency.compiled(
          name, net.model, **{**options, 'max_batch': batch * max(method_passes)}), *inputs)
    calls = {'forward': forward.call, 'gradient': gradient.call, name: ours.call}
    captum = None
    if args.captum and net.state_dict is not None:
      captum = captum_runner(net.state_dict, name, batch, images_per_pass, threads)
      if captum is not None:
        calls['captum'] = captum
    seconds = interleaved_seconds(calls, args.repeats)
    run_s = seconds[name]
    fields = dict(
        method=name, options=options, size=args.size, passes=list(method_passes),
        seconds_per_call=run_s,
        time_over_passes=run_s / expected_seconds(method_passes, seconds['forward'],
                                                  seconds['gradient']),
        forward_images_per_s=batch / seconds['forward'],
        gradient_images_per_s=batch / seconds['gradient'],
        flops_per_image=flops / batch, flops_per_s=flops / run_s, peak_flops_per_s=peak_flops,
        peak_fraction=flops / run_s / peak_flops, temp_bytes=ours.temp_bytes,
        compile_s=ours.compile_s, threads=threads)
    if captum is not None:
      fields.update(captum_images_per_s=batch / seconds['captum'],
                    speedup_vs_captum=seconds['captum'] / run_s,
                    captum_images_per_pass=images_per_pass)
    yield records.make_record('method_cost', name, images_per_s=batch / run_s, batch_size=batch,
                              dtype=args.dtype, **fields)


def format_row(record) -> str:
  forwards, backwards = record['passes']
  row = (f'{record["name"]:24s} {record["batch_size"]:5d} {record["images_per_s"]:9.2f} '
         f'{record["ms_per_image"]:9.1f} {f"{forwards}F+{backwards}B":>9s} '
         f'{record["time_over_passes"]:8.2f} {record["flops_per_image"] / 1e9:9.1f} '
         f'{record["peak_fraction"]:6.2f} {record["temp_bytes"] / 2**20:9.0f} '
         f'{record["compile_s"]:8.1f}')
  if 'captum_images_per_s' in record:
    row += f' {record["captum_images_per_s"]:9.2f} {record["speedup_vs_captum"]:7.2f}'
  return row


HEADER = (f'{"method":24s} {"batch":>5s} {"img/s":>9s} {"ms/img":>9s} {"passes":>9s} '
          f'{"t/passes":>8s} {"GFLOP/img":>9s} {"%peak":>6s} {"temp MiB":>9s} {"compile":>8s}')


def main(argv: Optional[list[str]] = None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--size', choices=networks.SIZES, default='full')
  parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS))
  parser.add_argument('--batch-sizes', nargs='+', type=int, default=[4])
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--max-batch', type=int,
                      help='images per pass for chunked methods (default: the library default)')
  parser.add_argument('--captum', action='store_true', help='time Captum in the same run')
  parser.add_argument('--records', help='JSON-lines file (default benchmarks/results.jsonl)')
  parser.add_argument('--no-record', action='store_true', help='print only')
  args = parser.parse_args(argv)

  net = networks.network(args.size, args.dtype)
  peak_flops = peak.matmul_peak(args.dtype, peak.DEFAULT_SIDE[args.size])
  device, _ = records.device_description()
  print(f'{device}, jax {jax.__version__}, {args.dtype}, matmul peak '
        f'{peak_flops / 1e12:.3f} TFLOP/s', flush=True)
  print(HEADER + (f' {"captum":>9s} {"speedup":>7s}' if args.captum else ''), flush=True)
  results = []
  for batch in args.batch_sizes:
    for record in measure(net, batch, args.methods, args, peak_flops):
      print(format_row(record), flush=True)
      if not args.no_record:
        records.write_record(record, args.records)
      results.append(record)
  return results


if __name__ == '__main__':
  main()
