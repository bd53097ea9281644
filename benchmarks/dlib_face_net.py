"""dlib's face ResNet in Flax beside dlib itself: forward, gradient, train step, methods.

    python benchmarks/dlib_face_net.py [--batch 32] [--repeats 5] [--methods]

On 150 x 150 chips (real FairFace faces when ../shared is there, else random
pixels): the Flax descriptor forward, the gradient of one descriptor
coordinate (or class logit) with respect to the input, and the ``dlib``
configuration's SGD train step (5-class head, stem frozen), each compiled
once and timed as the median of ``--repeats`` runs; in the same run dlib's
own ``compute_face_descriptor`` on the same chips (its batch overload, all
CPU threads dlib uses). ``--methods`` also runs every registered saliency
method on the network with a new 5-class head (cheap options) and prints its
time and whether the map is finite. Records go to ``benchmarks/results.jsonl``
as 'dlib_face_net'.
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
from benchmarks.records import make_record, write_record  # pylint: disable=wrong-import-position
from gestaltxai.models import (  # pylint: disable=wrong-import-position
    dlib_face_net_path, load_dlib_face_net)

NUM_CLASSES = 5
FAIRFACE = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fairface400' / 'val'
# Options that keep every method to a handful of passes (the point is that it runs).
CHEAP = {'integrated_gradients': {'steps': 4}, 'smoothgrad': {'samples': 4},
         'squaregrad': {'samples': 4}, 'vargrad': {'samples': 4},
         'occlusion': {'window': 30, 'stride': 30}}


def chips(count: int) -> tuple[np.ndarray, str]:
  """(count, 150, 150, 3) uint8 chips cut by dlib from FairFace, or random pixels."""
  import dlib  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from gestaltxai.data.detect import PREDICTOR_5, model_path
  if not FAIRFACE.is_dir():
    return np.random.default_rng(0).integers(0, 256, (count, 150, 150, 3), np.uint8), 'random'
  detector = dlib.get_frontal_face_detector()
  predictor = dlib.shape_predictor(model_path(PREDICTOR_5))
  found = []
  for path in sorted(FAIRFACE.iterdir()):
    image = np.asarray(Image.open(path).convert('RGB'))
    faces = detector(image, 1)
    if faces:
      found.append(dlib.get_face_chip(image, predictor(image, faces[0]), size=150, padding=0.25))
    if len(found) == count:
      break
  while len(found) < count:
    found += found[:count - len(found)]
  return np.stack(found), 'fairface'


def median_seconds(fn, repeats: int) -> tuple[float, float]:
  """(first call s, including compilation; median of ``repeats`` later calls)."""
  started = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - started
  runs = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(fn())
    runs.append(time.perf_counter() - started)
  return first, statistics.median(runs)


def train_step_fn(batch: np.ndarray):
  # pylint: disable=import-outside-toplevel
  from gestaltxai.models.dlib_face_net import bgr_input_params
  from gestaltxai.train import DataParallel, TrainState, make_optimizer
  from gestaltxai.train.configs import DLIB
  config = DLIB.replace(batch_size=len(batch))
  model = config.model.build(NUM_CLASSES)
  _, variables = load_dlib_face_net(num_classes=NUM_CLASSES)
  mean_bgr = np.array([91.4953, 103.8827, 131.0912], np.float32)
  variables = {'params': bgr_input_params(variables['params'], mean_bgr), 'batch_stats': {}}
  tx = make_optimizer(config, 100)
  parallel = DataParallel(model, tx, config.batch_size)
  state = jax.jit(lambda v: TrainState.create(v, tx), out_shardings=parallel.replicated)(
      parallel.replicate(variables))
  start, stop = parallel.local_rows
  images = batch[..., ::-1].astype(np.float32) - mean_bgr
  device_batch = parallel.put_batch({
      'image': images[start:stop],
      'label': (np.arange(stop - start) % NUM_CLASSES).astype(np.int32),
      'valid': np.ones(stop - start, bool)})
  compiled = parallel.train.lower(state, device_batch).compile()
  held = [state]  # the step donates its state: each call takes the last one's

  def step():
    held[0], metrics = compiled(held[0], device_batch)
    return metrics

  return step


def run_methods(x: jax.Array) -> None:
  from gestaltxai import saliency  # pylint: disable=import-outside-toplevel
  module, variables = load_dlib_face_net(num_classes=NUM_CLASSES, rng=jax.random.PRNGKey(1))
  target = jnp.arange(len(x)) % NUM_CLASSES
  labels = np.zeros(x.shape[:3], np.int32)
  labels[:, 40:75] = 1
  labels[:, 75:100, 50:100] = 2
  labels[:, 100:130, 40:110] = 3
  for name, entry in sorted(saliency.METHODS.items()):
    options = dict(CHEAP.get(name, {}))
    if 'regions' in entry.options:
      options['regions'] = jnp.asarray(labels)
    started = time.perf_counter()
    out = np.asarray(saliency.attribute(name, module, variables, x, target, **options))
    print(f'  {name:30s} {str(out.shape):18s} finite {bool(np.isfinite(out).all())!s:5s} '
          f'{time.perf_counter() - started:6.1f} s (with compilation)')


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--methods', action='store_true', help='every saliency method, 2 chips')
  parser.add_argument('--out', type=pathlib.Path, help='records file (default results.jsonl)')
  args = parser.parse_args(argv)
  import dlib  # pylint: disable=import-outside-toplevel
  batch, source = chips(args.batch)
  module, variables = load_dlib_face_net()
  x = module.preprocess(batch)
  forward = jax.jit(module.apply)
  gradient = jax.jit(jax.grad(lambda v, x: module.apply(v, x)[:, 0].sum(), argnums=1))
  recognizer = dlib.face_recognition_model_v1(dlib_face_net_path())
  chip_list = list(batch)
  timings = {
      'flax_forward': median_seconds(lambda: forward(variables, x), args.repeats),
      'flax_gradient': median_seconds(lambda: gradient(variables, x), args.repeats),
      'flax_train_step': median_seconds(train_step_fn(batch), args.repeats),
      'dlib_descriptor': median_seconds(lambda: recognizer.compute_face_descriptor(chip_list),
                                        args.repeats),
  }
  ours = np.asarray(forward(variables, x))
  theirs = np.array(recognizer.compute_face_descriptor(chip_list))
  agreement = float(np.abs(ours - theirs).max())
  print(f'{args.batch} chips ({source}), {jax.devices()[0].device_kind}; '
        f'max |ours - dlib| = {agreement:.2e}')
  for name, (first, seconds) in timings.items():
    print(f'  {name:16s} {args.batch / seconds:8.1f} img/s  {1000 * seconds / args.batch:7.2f} '
          f'ms/img  (first call {first:.1f} s)')
    write_record(make_record('dlib_face_net', name, batch_size=args.batch,
                             images_per_s=args.batch / seconds, dtype='float32', first_call_s=first,
                             chips=source, max_abs_vs_dlib=agreement), args.out)
  if args.methods:
    run_methods(x[:2])


if __name__ == '__main__':
  main()
