"""Extraction throughput: end to end (decoding and region maps included) beside compute only.

    python -m benchmarks.extract_cost [--size full|tiny] [--images 48] [--batch-size 8]
        [--methods gradient grad_cam integrated_gradients] [--workers 0]

Builds synthetic faces (``gestaltxai.data.builders.SyntheticFaces``) in a
temporary folder, then runs ``gestaltxai extract`` over them with one model
for every image: at full size the VGGFace2 ResNet-50 with random weights (a
state-dict ``.npz``, as ``--weights`` takes), at tiny size the ``tiny``
configuration trained for one epoch. One shard per batch; the first shard
compiles every method and is left out.

* end to end: images of the later shards over their wall time (host
  pipeline, device steps, shard writes);
* compute only: the prediction and every method on one batch already on the
  devices, timed alone (median of ``--repeats``), images/s;
* busy: compute-only seconds over end-to-end seconds for the same images,
  the share of the wall time the devices spend on the methods (1.0 is a host
  pipeline that is never waited for).

Records go to ``benchmarks/results.jsonl`` as 'extract' (one per run) and
'extract_method' (each method's compute-only rate).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import jax
import numpy as np

from benchmarks.records import make_record, write_record
from gestaltxai import extract
from gestaltxai.data import builders, synthetic
from gestaltxai.data.pipeline import FaceDataset
from gestaltxai.models import random_vggface2_state_dict

#: size -> (images, batch size, methods) when not given.
DEFAULTS = {'full': (48, 8, ('gradient', 'grad_cam', 'integrated_gradients')),
            'tiny': (24, 4, ('gradient', 'grad_cam'))}
_SEED = 0
#: A batch the smallest benchmark's training split fills.
_TINY_TRAIN_BATCH = 4


def model_source(size: str, dataset: FaceDataset, work: pathlib.Path) -> dict:
  """``extraction``'s model argument: random VGGFace2 weights, or a one-epoch tiny fold."""
  if size == 'full':
    weights = work / 'resnet50-random.npz'
    np.savez(weights, **random_vggface2_state_dict(_SEED, len(dataset.classes)))
    return {'weights': weights}
  from gestaltxai.train.configs import TINY  # pylint: disable=import-outside-toplevel
  from gestaltxai.train import train_fold  # pylint: disable=import-outside-toplevel
  config = TINY.replace(epochs=1, seed=_SEED, batch_size=_TINY_TRAIN_BATCH)
  train_fold(dataset, 1, config, work / 'runs', log=lambda _: None)
  return {'weights': work / 'runs' / 'fold-1'}


def compute_only_seconds(job: extract.Extraction, repeats: int) -> dict[str, float]:
  """Median seconds of the prediction and of each method on one device-resident batch."""
  setup = job.fold_setup(extract.NO_FOLD, job.shards[:1])
  steps = setup.steps
  batch = steps.put(setup.batches[0])
  key = jax.random.PRNGKey(_SEED)

  def timed(call) -> float:
    jax.block_until_ready(call())  # compiled already by the run; this one warms caches
    runs = []
    for _ in range(repeats):
      started = time.perf_counter()
      jax.block_until_ready(call())
      runs.append(time.perf_counter() - started)
    return statistics.median(runs)

  _, predicted = steps.predict(batch)
  seconds = {'predict': timed(lambda: steps.predict(batch))}
  for method in job.methods:
    seconds[method.name] = timed(lambda m=method: steps.explain(m.name, batch, predicted, key))
  return seconds


def measure(size: str, images: int, batch_size: int, methods, workers: int,
            repeats: int) -> tuple[dict, dict[str, float]]:
  """(the run's record fields, each method's compute-only images/s)."""
  per_class = -(-images // len(synthetic.TRAITS))
  with tempfile.TemporaryDirectory(prefix='extract-cost-') as folder:
    work = pathlib.Path(folder)
    directory = builders.build(builders.SyntheticFaces(
        per_class=per_class, seed=_SEED, data_dir=str(work / 'data'), progress=False))
    dataset = FaceDataset.open(directory)
    job = extract.extraction(directory, work / 'table.parquet', methods=methods,
                             batch_size=batch_size, shard_size=batch_size, workers=workers,
                             progress=False, log=lambda _: None,
                             **model_source(size, dataset, work))
    started = time.perf_counter()
    job.run()
    total_s = time.perf_counter() - started
    warm = job.shards[1:]
    if not warm:
      raise ValueError(f'{images} images make one shard of {batch_size}: give at least '
                       f'{2 * batch_size} images, so that a shard runs after compilation')
    warm_images = sum(len(s.indices) for s in warm)
    end_to_end_s = sum(job.store.info(s)['seconds'] for s in warm)
    seconds = compute_only_seconds(job, repeats)
  batch_compute_s = sum(seconds.values())
  # Compute for the warm shards' batches, as many as the run made (padded last batch too).
  warm_batches = sum(-(-len(s.indices) // job.batch_size) for s in warm)
  fields = {'size': size, 'images': warm_images, 'methods': [m.name for m in job.methods],
            'end_to_end_images_per_s': warm_images / end_to_end_s,
            'compute_images_per_s': job.batch_size / batch_compute_s,
            'busy': warm_batches * batch_compute_s / end_to_end_s,
            'first_shard_s': total_s - end_to_end_s, 'workers': workers}
  rates = {name: job.batch_size / s for name, s in seconds.items()}
  return fields, rates


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', choices=tuple(DEFAULTS), default='full')
  parser.add_argument('--images', type=int, help='faces to build and explain')
  parser.add_argument('--batch-size', type=int)
  parser.add_argument('--methods', nargs='+')
  parser.add_argument('--workers', type=int, default=0,
                      help='decoding processes (0: threads, as extract\'s default)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--records', type=pathlib.Path, help='default benchmarks/results.jsonl')
  args = parser.parse_args(argv)
  images, batch_size, methods = DEFAULTS[args.size]
  images, batch_size = args.images or images, args.batch_size or batch_size
  fields, rates = measure(args.size, images, batch_size, args.methods or methods,
                          args.workers, args.repeats)
  print(f'extraction ({args.size}, {", ".join(fields["methods"])}), batch {batch_size}: '
        f'end to end {fields["end_to_end_images_per_s"]:.2f} img/s, compute only '
        f'{fields["compute_images_per_s"]:.2f} img/s, devices busy {fields["busy"]:.0%} '
        f'(first shard with compilation {fields["first_shard_s"]:.0f} s)', flush=True)
  write_record(make_record('extract', f'{len(fields["methods"])} methods',
                           images_per_s=fields['end_to_end_images_per_s'],
                           batch_size=batch_size, dtype='float32', **fields), args.records)
  for name, rate in rates.items():
    print(f'  {name:24s} {rate:8.2f} img/s compute only', flush=True)
    write_record(make_record('extract_method', name, images_per_s=rate, batch_size=batch_size,
                             dtype='float32', size=args.size), args.records)


if __name__ == '__main__':
  main()
