"""gestaltxai prepare: build an aligned face dataset (TFDS, array_record)."""

from __future__ import annotations

import collections
import pathlib

from gestaltxai.cli import flags, int_at_least

#: How the summary names who found the faces.
DETECTOR_NAMES = {'hog': "found by dlib's HOG detector", 'cnn': "found by dlib's CNN detector",
                  'given': 'with their landmarks given'}


def summary(dataset) -> str:
  """Images per class and fold split, faces per detector, warnings and skipped images."""
  from gestaltxai.data.schema import SPLITS, MetadataKey
  metadata = dataset.metadata
  lines = [f'{len(dataset)} images in {dataset.directory}']
  counts = collections.Counter(dataset.labels.tolist())
  lines += [f'  {name:>16s}: {counts.get(i, 0)}' for i, name in enumerate(dataset.classes)]
  for fold in range(1, metadata[MetadataKey.NUM_FOLDS] + 1):
    sizes = ', '.join(f'{s} {len(dataset.indices(fold, s))}' for s in SPLITS)
    lines.append(f'  fold-{fold}: {sizes}')
  lines.append(f'split roles: {dataset.roles.describe()}')
  detectors = metadata.get(MetadataKey.DETECTORS, {})
  if detectors:
    lines.append('faces: ' + ', '.join(
        f'{n} {DETECTOR_NAMES.get(kind, kind)}' for kind, n in detectors.items()))
  warnings = metadata.get(MetadataKey.WARNINGS, [])
  if warnings:
    lines.append(f'{len(warnings)} warnings:')
    lines += [f'  {w["name"]}: {w["warning"]}' for w in warnings]
  skipped = metadata.get(MetadataKey.SKIPPED, [])
  no_face = sum('no face' in s['reason'] for s in skipped)
  lines.append(f'{len(skipped)} images could not be used ({no_face} without a face)'
               + (':' if skipped else ''))
  lines += [f'  {s["name"]}: {s["reason"]}' for s in skipped]
  checks = metadata.get(MetadataKey.PLANTED_CHECKS)
  if checks:
    lines.append('planted traits re-measured by dlib (kept / no face / change not shown):')
    lines += [f'  {trait:>16s}: {c["kept"]} / {c["no_face"]} / {c["check_failed"]}'
              for trait, c in checks.items()]
  return '\n'.join(lines)


def _nih(args, common):
  from gestaltxai.data.sources import NihFaces
  return NihFaces(root=args.root, detector=args.detector, **common)


def _folder(args, common):
  from gestaltxai.data.sources import FolderFaces
  return FolderFaces(images=args.images, labels=args.labels, label_column=args.label_column,
                     num_folds=args.num_folds, seed=args.seed, detector=args.detector,
                     **common)


def _synthetic(args, common):
  from gestaltxai.data.sources import SyntheticFaces
  return SyntheticFaces(classes=tuple(args.classes), per_class=args.per_class,
                        seed=args.seed, num_folds=args.num_folds, **common)


def _planted(args, common):
  from gestaltxai.data.planted_faces import PlantedFaces
  return PlantedFaces(photos=args.photos, seed=args.seed, num_folds=args.num_folds,
                      limit=args.limit, detector=args.detector, **common)


#: Source name -> the builder made from the parsed arguments.
BUILDERS = {'nih-faces': _nih, 'folder': _folder, 'synthetic': _synthetic, 'planted': _planted}


def run(args) -> None:
  from gestaltxai.data.build import build
  from gestaltxai.data.pipeline import FaceDataset
  builder = BUILDERS[args.source](args, {'data_dir': args.data_dir,
                                         'alignment': args.alignment})
  directory = build(builder, overwrite=args.overwrite, workers=args.workers)
  print(summary(FaceDataset.open(directory)))


def add_parser(commands) -> None:
  from gestaltxai.data.folds import DEFAULT_FOLDS, DEFAULT_SEED, MIN_FOLDS
  from gestaltxai.data.detect import DETECTORS
  from gestaltxai.data.staging import available_cpus
  from gestaltxai.data.synthetic import TRAITS
  prepare = commands.add_parser('prepare', help='build an aligned face dataset (TFDS)')
  sources = prepare.add_subparsers(dest='source', required=True)
  nih = sources.add_parser('nih-faces', help='partitions.csv + images/ (+ features/segmaps/)')
  nih.add_argument('--root', type=pathlib.Path, required=True)
  folder = sources.add_parser('folder', help='a folder of photos + a CSV of labels')
  folder.add_argument('--images', type=pathlib.Path, required=True)
  folder.add_argument('--labels', type=pathlib.Path, required=True,
                      help='CSV with a "file" column (paths under --images) and the label column')
  folder.add_argument('--label-column', required=True)
  synthetic = sources.add_parser('synthetic', help='synthetic faces with planted traits')
  synthetic.add_argument('--classes', nargs='+', default=list(TRAITS), choices=list(TRAITS))
  synthetic.add_argument('--per-class', type=int_at_least(1), default=40)
  planted = sources.add_parser(
      'planted', help='traits planted on real photos by a landmark warp, checked by dlib')
  planted.add_argument('--photos', type=pathlib.Path, default=None,
                       help='a folder of face photos (default: the FairFace sample shipped '
                            'with gestaltxai, 400 photos, CC BY 4.0)')
  planted.add_argument('--limit', type=int_at_least(1), default=None,
                       help='use the first N photos only')
  for sub in (folder, synthetic, planted):
    flags.add_num_folds(sub, minimum=MIN_FOLDS, default=DEFAULT_FOLDS)
    sub.add_argument('--seed', type=int, default=DEFAULT_SEED)
  for sub in (nih, folder, planted):
    sub.add_argument('--detector', choices=DETECTORS, default='auto',
                     help='auto: HOG, then the CNN where HOG finds no face (default)')
  for sub in (nih, folder, synthetic, planted):
    sub.add_argument('--data-dir', type=pathlib.Path, required=True)
    sub.add_argument('--alignment', choices=('arcface', 'dlib'), default='arcface',
                     help="arcface: 224 px ArcFace template, for the VGGFace2 ResNet-50 "
                          "(default); dlib: dlib's 150 px face chip, for --model dlib")
    sub.add_argument('--overwrite', action='store_true',
                     help='replace a dataset in --data-dir built from other arguments or inputs')
    flags.add_workers(sub, work='detect and align the photos', default=available_cpus(),
                      default_text='every core')
    sub.set_defaults(run=run)
