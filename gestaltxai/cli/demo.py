"""gestaltxai demo: synthetic faces -> saliency -> region coefficients."""

from __future__ import annotations

import pathlib
import tempfile
import time

import numpy as np

DEMO_METHODS = ('gradient', 'input_x_gradient', 'grad_cam', 'lrp_epsilon_plus_flat')


def run(args) -> None:
  import jax
  import jax.numpy as jnp

  from gestaltxai import extract
  from gestaltxai.data import builders
  from gestaltxai.data.pipeline import FaceDataset, batches
  from gestaltxai.models import ResNet50, load_vggface2
  from gestaltxai.regions.maps import REFERENCE_REGIONS

  out = pathlib.Path(args.out or tempfile.mkdtemp(prefix='gestaltxai-demo-'))
  out.mkdir(parents=True, exist_ok=True)
  print(f'1/3 synthetic faces with planted traits ({args.per_class} per class) -> {out}')
  directory = builders.build(builders.SyntheticFaces(
      per_class=args.per_class, seed=args.seed, data_dir=str(out / 'data'),
      file_format='array_record', progress=False))
  dataset = FaceDataset.open(directory)
  classes = dataset.classes
  if args.weights:
    print(f'2/3 ResNet-50 from VGGFace2 weights {args.weights}, new {len(classes)}-way head')
    variables = load_vggface2(args.weights, num_classes=len(classes),
                              rng=jax.random.PRNGKey(args.seed))
  else:
    print('2/3 ResNet-50 with random weights (pass --weights resnet50_ft_weight.pkl for '
          'VGGFace2); the pipeline runs, the coefficients mean nothing yet')
    variables = jax.jit(ResNet50(len(classes)).init)(jax.random.PRNGKey(args.seed),
                                                      jnp.zeros((1, 224, 224, 3)))
  model = ResNet50(len(classes))
  test = dataset.indices(1, 'test')
  print(f'3/3 {len(args.methods)} methods x {len(test)} test images of fold 1, '
        f'batches of {args.batch_size}')
  started = time.perf_counter()
  rows = extract.region_table(
      model, variables, batches(dataset, test, args.batch_size, mean_bgr=dataset.mean_bgr(1)),
      args.methods, classes)
  elapsed = time.perf_counter() - started
  table = out / 'coefficients.csv'
  extract.write_csv(rows, table, classes)
  regions = REFERENCE_REGIONS[1:]
  print(f'\nmean region coefficient per method and true class ({elapsed:.1f} s, '
        'compilation included):')
  print(f'{"method":24s} {"class":16s} ' + ' '.join(f'{r:>10s}' for r in regions))
  for method in dict.fromkeys(r.method for r in rows):
    for cls in classes:
      values = np.array([r.coefficients[1:] for r in rows if r.method == method and r.label == cls])
      if len(values):
        print(f'{method:24s} {cls:16s} ' + ' '.join(f'{v:10.3g}' for v in np.nanmean(values, 0)))
  print(f'\ntable: {table}')


def add_parser(commands) -> None:
  demo = commands.add_parser('demo', help='synthetic faces -> saliency -> region coefficients')
  demo.add_argument('--out', type=pathlib.Path, help='output folder (default: a temp folder)')
  demo.add_argument('--weights', type=pathlib.Path, help='resnet50_ft_weight.pkl (VGGFace2)')
  demo.add_argument('--per-class', type=int, default=10)
  demo.add_argument('--methods', nargs='+', default=list(DEMO_METHODS))
  demo.add_argument('--batch-size', type=int, default=8)
  demo.add_argument('--seed', type=int, default=0)
  demo.set_defaults(run=run)
