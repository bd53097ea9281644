"""gestaltxai <command>: prepare datasets, list methods, run the demo."""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import tempfile
import time

import numpy as np

DEMO_METHODS = ('gradient', 'input_x_gradient', 'grad_cam', 'lrp_epsilon_plus_flat')


def _summary(dataset) -> str:
  """Images per class and per fold split, and the images that were skipped."""
  from gestaltxai.data.builders import SPLITS
  lines = [f'{len(dataset)} images in {dataset.directory}']
  counts = collections.Counter(dataset.labels.tolist())
  lines += [f'  {name:>16s}: {counts.get(i, 0)}' for i, name in enumerate(dataset.classes)]
  for fold in range(1, dataset.metadata['num_folds'] + 1):
    sizes = ', '.join(f'{s} {len(dataset.indices(fold, s))}' for s in SPLITS)
    lines.append(f'  fold-{fold}: {sizes}')
  skipped = dataset.metadata.get('skipped', [])
  no_face = sum('no face' in s['reason'] for s in skipped)
  lines.append(f'{len(skipped)} images could not be used ({no_face} without a face):')
  lines += [f'  {s["name"]}: {s["reason"]}' for s in skipped]
  return '\n'.join(lines)


def _prepare(args) -> None:
  from gestaltxai.data import builders
  from gestaltxai.data.pipeline import FaceDataset
  common = dict(data_dir=str(args.data_dir), file_format='array_record')
  if args.source == 'nih-faces':
    builder = builders.NihFaces(root=args.root, **common)
  elif args.source == 'folder':
    builder = builders.FolderFaces(images=args.images, labels=args.labels,
                                   label_column=args.label_column, num_folds=args.folds,
                                   seed=args.seed, **common)
  else:
    builder = builders.SyntheticFaces(classes=tuple(args.classes), per_class=args.per_class,
                                      seed=args.seed, num_folds=args.folds, **common)
  directory = builders.build(builder)
  print(_summary(FaceDataset.open(directory)))


def _methods(args) -> None:
  del args
  from gestaltxai.saliency import METHODS
  print(f'{"method":32s} {"space":6s} {"passes/image at 224 (fwd, bwd)":32s} reference names')
  for name, method in METHODS.items():
    cost = method.cost({}, 224, 224)
    print(f'{name:32s} {method.space:6s} {str(cost):32s} {", ".join(method.reference_names)}')


def _demo(args) -> None:
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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='gestaltxai', description=__doc__)
  commands = parser.add_subparsers(dest='command', required=True)

  demo = commands.add_parser('demo', help='synthetic faces -> saliency -> region coefficients')
  demo.add_argument('--out', type=pathlib.Path, help='output folder (default: a temp folder)')
  demo.add_argument('--weights', type=pathlib.Path, help='resnet50_ft_weight.pkl (VGGFace2)')
  demo.add_argument('--per-class', type=int, default=10)
  demo.add_argument('--methods', nargs='+', default=list(DEMO_METHODS))
  demo.add_argument('--batch-size', type=int, default=8)
  demo.add_argument('--seed', type=int, default=0)
  demo.set_defaults(run=_demo)

  methods = commands.add_parser('methods', help='list the saliency methods and their cost')
  methods.set_defaults(run=_methods)

  prepare = commands.add_parser('prepare', help='build an aligned face dataset (TFDS)')
  sources = prepare.add_subparsers(dest='source', required=True)
  nih = sources.add_parser('nih-faces', help='partitions.csv + images/ (+ features/segmaps/)')
  nih.add_argument('--root', type=pathlib.Path, required=True)
  folder = sources.add_parser('folder', help='a folder of photos + a CSV of labels')
  folder.add_argument('--images', type=pathlib.Path, required=True)
  folder.add_argument('--labels', type=pathlib.Path, required=True)
  folder.add_argument('--label-column', required=True)
  synthetic = sources.add_parser('synthetic', help='synthetic faces with planted traits')
  from gestaltxai.data.synthetic import TRAITS
  synthetic.add_argument('--classes', nargs='+', default=list(TRAITS), choices=list(TRAITS))
  synthetic.add_argument('--per-class', type=int, default=40)
  for sub in (folder, synthetic):
    sub.add_argument('--folds', type=int, default=5)
    sub.add_argument('--seed', type=int, default=0)
  for sub in (nih, folder, synthetic):
    sub.add_argument('--data-dir', type=pathlib.Path, required=True)
    sub.set_defaults(run=_prepare)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    args.run(args)
  except (FileNotFoundError, ValueError) as err:
    print(f'gestaltxai {args.command}: {err}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
