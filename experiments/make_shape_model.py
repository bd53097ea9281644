"""Builds gestaltxai/data/assets/face_shape_model.npz: a 68-point shape model.

The synthetic faces (``gestaltxai prepare synthetic``) draw identities from
it. It is fitted to dlib's 68 landmarks of the FairFace sample (CC BY 4.0,
Kärkkäinen and Joo, WACV 2021; ../shared/data/fairface400), each face aligned
onto the ArcFace template at 224 px: the mean shape and the leading
principal modes with their standard deviations. Only these statistics are
stored, no image.

    python experiments/make_shape_model.py --images ../shared/data/fairface400
"""

import argparse
import pathlib

import numpy as np
from PIL import Image

from gestaltxai import data

NUM_MODES = 8
SIZE = 224


def aligned_shapes(root: pathlib.Path) -> np.ndarray:
  shapes = []
  for path in sorted(root.glob('*/*.jpg')):
    rgb = np.asarray(Image.open(path).convert('RGB'))
    try:
      landmarks = data.detect_landmarks(rgb, name=str(path))
    except data.NoFaceError:
      continue
    matrix = data.umeyama_similarity(landmarks.five, data.template(SIZE))
    shapes.append(data.transform_points(landmarks.points68, matrix))
  return np.stack(shapes)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--images', type=pathlib.Path, required=True)
  parser.add_argument('--out', type=pathlib.Path,
                      default=pathlib.Path(data.__file__).parent / 'assets' / 'face_shape_model.npz')
  args = parser.parse_args()
  shapes = aligned_shapes(args.images)
  mean = shapes.mean(0)
  centred = (shapes - mean).reshape(len(shapes), -1)
  _, singular, modes = np.linalg.svd(centred, full_matrices=False)
  stds = singular[:NUM_MODES] / np.sqrt(len(shapes) - 1)
  np.savez(args.out, mean=mean.astype(np.float32),
           modes=modes[:NUM_MODES].reshape(NUM_MODES, 68, 2).astype(np.float32),
           stds=stds.astype(np.float32), num_faces=len(shapes))
  print(f'{len(shapes)} faces; mode stds {np.round(stds, 2)} -> {args.out}')


if __name__ == '__main__':
  main()
