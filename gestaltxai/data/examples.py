"""What one photo becomes: an aligned example with its maps, or the reason it cannot be used.

These functions run in :mod:`gestaltxai.data.staging`'s worker processes, so
they are module-level and take small, picklable arguments (a path, the five
points, a synthetic face's index). Each returns the arrays of one example:
``image``, ``parsing``, ``regions``, ``five``, ``points68`` and ``detector``
as :mod:`gestaltxai.data.schema` lists them (label, name and folds are
the builder's).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image

from gestaltxai.data import synthetic
from gestaltxai.data.align import (ALIGNMENT_SIZES, align, dlib_chip_matrix, transform_points,
                                   warp_affine)
from gestaltxai.data.detect import detect_landmarks, five_from_68
from gestaltxai.data.images import read_rgb
from gestaltxai.regions.landmarks import landmark_parsing
from gestaltxai.regions.maps import reference_region_map

SIZE = ALIGNMENT_SIZES['arcface']
#: The detector field of a face whose points came with it (NIH-Faces, synthetic faces).
GIVEN = 'given'
#: What makes a photo unusable rather than the build wrong: an unreadable or
#: truncated file, no face, a missing part, pixels with no 8-bit reading,
#: dlib refusing the input, a decompression bomb.
UNUSABLE = (OSError, ValueError, SyntaxError, RuntimeError, Image.DecompressionBombError)


def aligned_example(rgb: np.ndarray, name: str, *, five: Optional[np.ndarray] = None,
                    segmap: Optional[np.ndarray] = None, detector: str = 'auto',
                    alignment: str = 'arcface') -> dict:
  """Aligns one photo and derives its maps; raises with the reason it cannot be used.

  Args:
    rgb: (H, W, 3) uint8 photo.
    name: its file name, for messages.
    five: the five alignment points in the photo; dlib's when None.
    segmap: a LaPa parsing map of the photo; landmark parsing when None.
    detector: dlib's detector when landmarks are needed
      (:func:`gestaltxai.data.detect.detect_landmarks`).
    alignment: 'arcface' (224 px, the five points on the ArcFace template) or
      'dlib' (dlib's 150 px face chip from its 68 landmarks, which are then
      always detected) (:mod:`gestaltxai.data.align`).

  Returns:
    {'image', 'parsing', 'five', 'points68' (float64), 'detector'}; see
    :func:`finished` for the rest.
  """
  points68 = np.full((68, 2), np.nan)
  found_by = GIVEN
  if alignment not in ALIGNMENT_SIZES:
    raise ValueError(f'alignment must be one of {sorted(ALIGNMENT_SIZES)}, got {alignment!r}')
  size = ALIGNMENT_SIZES[alignment]
  if five is None or segmap is None or alignment == 'dlib':
    landmarks = detect_landmarks(rgb, name=name, detector=detector)
    points68 = landmarks.points68
    five = landmarks.five if five is None else five
    found_by = landmarks.detector
  if alignment == 'dlib':
    matrix = dlib_chip_matrix(points68, size)
    image = warp_affine(rgb, matrix, size)
  else:
    image, matrix = align(rgb, five, size)
  aligned68 = transform_points(points68, matrix)
  if segmap is not None:
    parsing = warp_affine(segmap.astype(np.uint8), matrix, size, order=0)
  else:
    parsing = landmark_parsing(aligned68, size)
  return {'image': image, 'parsing': parsing, 'five': transform_points(five, matrix),
          'points68': aligned68, 'detector': found_by}


def finished(example: dict) -> dict:
  """Adds the RQ1 region map and gives every array its stored dtype."""
  example = dict(example)
  example['regions'] = reference_region_map(example['parsing']).astype(np.uint8)
  example['parsing'] = np.asarray(example['parsing'], np.uint8)
  for key in ('five', 'points68'):
    example[key] = np.asarray(example[key], np.float32)
  return example


def photo_example(path: str | os.PathLike, name: str, *, five: Optional[np.ndarray] = None,
                  segmap_path: Optional[str | os.PathLike] = None,
                  detector: str = 'auto', alignment: str = 'arcface') -> dict:
  """A photo file (and optionally its five points and parsing map) -> a finished example."""
  segmap = None
  if segmap_path is not None:
    with Image.open(segmap_path) as labels:
      segmap = np.asarray(labels)
    if segmap.ndim != 2:
      raise ValueError(f'{segmap_path}: a parsing map needs one label per pixel, got shape '
                       f'{segmap.shape}')
  example = aligned_example(read_rgb(path), name, five=five, segmap=segmap, detector=detector,
                            alignment=alignment)
  return finished(example)


def synthetic_example(seed: int, trait: str, index: int, alignment: str = 'arcface',
                      **options) -> dict:
  """Synthetic face ``index`` of class ``trait`` (:func:`synthetic.synthetic_face` options);
  ``alignment='dlib'`` cuts dlib's 150 px chip from the 224 px face by its 68 points."""
  face = synthetic.synthetic_face(seed, trait, index, **options)
  image, parsing, points68 = face.image, face.parsing, face.points68
  if alignment == 'dlib':
    size = ALIGNMENT_SIZES['dlib']
    matrix = dlib_chip_matrix(points68, size)
    image, parsing = warp_affine(image, matrix, size), warp_affine(parsing, matrix, size, order=0)
    points68 = transform_points(points68, matrix)
  elif alignment != 'arcface':
    raise ValueError(f'alignment must be one of {sorted(ALIGNMENT_SIZES)}, got {alignment!r}')
  return finished({'image': image, 'parsing': parsing, 'five': five_from_68(points68),
                   'points68': points68, 'detector': GIVEN})
