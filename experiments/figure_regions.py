"""Figure: aligned real faces with their landmark parsing, RQ1 boxes and fine regions.

    python experiments/figure_regions.py --images ../shared/data/fairface400/train \
        --out regions.png
"""

import argparse
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.patches as patches  # pylint: disable=wrong-import-position
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position

from gestaltxai import regions  # pylint: disable=wrong-import-position
from gestaltxai.data import builders  # pylint: disable=wrong-import-position

DEFAULT_NAMES = ('1.jpg', '10.jpg', '100.jpg', '103.jpg')


def draw(paths, out):
  fig, axes = plt.subplots(len(paths), 3, figsize=(9, 3 * len(paths)), squeeze=False)
  for row, path in zip(axes, paths):
    example = builders.aligned_example(np.asarray(Image.open(path).convert('RGB')), str(path))
    face, points, parsing = example['image'], example['points68'], example['parsing']
    boxes = regions.reference_region_boxes(parsing)
    row[0].imshow(face)
    row[0].scatter(points[:, 0], points[:, 1], s=3, c='yellow')
    row[0].set_title(f'{path.name}: aligned, 68 points', fontsize=8)
    row[1].imshow(face)
    row[1].imshow(np.ma.masked_equal(parsing, 0), cmap='tab20', alpha=0.55, vmin=0, vmax=19)
    for name, (y1, x1, y2, x2) in boxes.items():
      row[1].add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2,
                                         ec={'nose': 'cyan', 'mouth': 'red'}.get(name, 'lime')))
    row[1].set_title('landmark parsing + RQ1 eye/nose/mouth boxes', fontsize=8)
    fine = regions.fine_region_map(parsing, points)
    row[2].imshow(face)
    row[2].imshow(np.ma.masked_equal(fine, 0), cmap='tab20', alpha=0.6, vmin=0, vmax=19)
    row[2].set_title('fine regions', fontsize=8)
    for ax in row:
      ax.axis('off')
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--images', type=pathlib.Path, required=True)
  parser.add_argument('--names', nargs='*', default=DEFAULT_NAMES)
  parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('regions.png'))
  args = parser.parse_args()
  draw([args.images / n for n in args.names], args.out)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
