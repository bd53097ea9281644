"""gestaltxai prepare: build an aligned face dataset (TFDS, array_record)."""

from __future__ import annotations

import collections
import pathlib


def summary(dataset) -> str:
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


def run(args) -> None:
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
  print(summary(FaceDataset.open(directory)))


def add_parser(commands) -> None:
  from gestaltxai.data.synthetic import TRAITS
  prepare = commands.add_parser('prepare', help='build an aligned face dataset (TFDS)')
  sources = prepare.add_subparsers(dest='source', required=True)
  nih = sources.add_parser('nih-faces', help='partitions.csv + images/ (+ features/segmaps/)')
  nih.add_argument('--root', type=pathlib.Path, required=True)
  folder = sources.add_parser('folder', help='a folder of photos + a CSV of labels')
  folder.add_argument('--images', type=pathlib.Path, required=True)
  folder.add_argument('--labels', type=pathlib.Path, required=True)
  folder.add_argument('--label-column', required=True)
  synthetic = sources.add_parser('synthetic', help='synthetic faces with planted traits')
  synthetic.add_argument('--classes', nargs='+', default=list(TRAITS), choices=list(TRAITS))
  synthetic.add_argument('--per-class', type=int, default=40)
  for sub in (folder, synthetic):
    sub.add_argument('--folds', type=int, default=5)
    sub.add_argument('--seed', type=int, default=0)
  for sub in (nih, folder, synthetic):
    sub.add_argument('--data-dir', type=pathlib.Path, required=True)
    sub.set_defaults(run=run)
