"""Region maps from dlib's 68 landmarks: LaPa-style parsing and fine regions.

The 68-point scheme (iBUG 300-W): 0-16 jaw, 17-21 and 22-26 brows, 27-30
nose bridge, 31-35 nostrils, 36-41 and 42-47 eyes, 48-59 outer lips, 60-67
inner lips. Points 36-47 of the image-left eye (36-41) belong to the
subject's right eye.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from gestaltxai.regions.maps import LAPA, LAPA_LABELS

# Shape constants, as fractions of the inter-ocular distance (eye centres).
BROW_THICKNESS = 0.12
FOREHEAD_HEIGHT = 0.55
NOSE_BRIDGE_HALF_WIDTH = 0.12

#: Fine regions: the LaPa parts (background and skin split further) plus
#: forehead, cheeks and chin cut from the skin.
FINE_REGIONS = LAPA_LABELS + ('forehead', 'left_cheek', 'right_cheek', 'chin')
FINE = {name: i for i, name in enumerate(FINE_REGIONS)}

_JAW = list(range(0, 17))
_RIGHT_BROW, _LEFT_BROW = list(range(17, 22)), list(range(22, 27))
_RIGHT_EYE, _LEFT_EYE = list(range(36, 42)), list(range(42, 48))
_UPPER_LIP = list(range(48, 55)) + [64, 63, 62, 61, 60]
_LOWER_LIP = list(range(54, 60)) + [48, 60, 67, 66, 65, 64]
_INNER_MOUTH = list(range(60, 68))


def _check_points(points68) -> np.ndarray:
  points = np.asarray(points68, np.float64)
  if points.shape != (68, 2) or not np.isfinite(points).all():
    raise ValueError(f'expected 68 finite (x, y) landmarks, got shape {points.shape}')
  return points


def _interocular(points):
  return np.linalg.norm(points[_LEFT_EYE].mean(0) - points[_RIGHT_EYE].mean(0))


def _brow_polygon(points, indices, thickness):
  upper = points[indices]
  return np.concatenate([upper, upper[::-1] + [0.0, thickness]])


def landmark_parsing(points68, size) -> np.ndarray:
  """Rasterises 68 landmarks (x, y) into a LaPa-labelled parsing map.

  Args:
    points68: (68, 2) float, pixel coordinates (x, y) in the map's frame.
    size: int or (height, width) of the map.

  Returns:
    (height, width) uint8: skin (the jaw line closed by a forehead band above
    the brows), brows, eyes, nose, lips and inner mouth, LaPa ids. Hair and
    background stay 0: landmarks do not see hair.
  """
  points = _check_points(points68)
  height, width = (size, size) if np.ndim(size) == 0 else size
  iod = _interocular(points)
  up = np.array([0.0, -FOREHEAD_HEIGHT * iod])
  forehead = points[list(range(26, 16, -1))] + up
  skin = np.concatenate([points[_JAW], forehead])

  bridge = np.array([NOSE_BRIDGE_HALF_WIDTH * iod, 0.0])
  nose = np.concatenate([[points[27] - bridge], points[31:36], [points[27] + bridge]])
  brow = BROW_THICKNESS * iod

  parts = [  # drawn in order, later parts over earlier ones
      (LAPA['skin'], skin),
      (LAPA['right_eyebrow'], _brow_polygon(points, _RIGHT_BROW, brow)),
      (LAPA['left_eyebrow'], _brow_polygon(points, _LEFT_BROW, brow)),
      (LAPA['nose'], nose),
      (LAPA['right_eye'], points[_RIGHT_EYE]),
      (LAPA['left_eye'], points[_LEFT_EYE]),
      (LAPA['upper_lip'], points[_UPPER_LIP]),
      (LAPA['lower_lip'], points[_LOWER_LIP]),
      (LAPA['inner_mouth'], points[_INNER_MOUTH]),
  ]
  canvas = Image.new('L', (width, height), 0)
  draw = ImageDraw.Draw(canvas)
  for label, polygon in parts:
    draw.polygon([tuple(p) for p in polygon], fill=int(label), outline=int(label))
  return np.asarray(canvas, np.uint8)


def fine_region_map(parsing: np.ndarray, points68) -> np.ndarray:
  """Splits the skin of a LaPa parsing map into forehead, cheeks and chin.

  Args:
    parsing: (H, W) LaPa labels (from a face parser or
      :func:`landmark_parsing`).
    points68: (68, 2) landmarks (x, y) in the same frame.

  Returns:
    (H, W) int32 with ids of :data:`FINE_REGIONS`: the LaPa parts as they
    are; skin above the brows is forehead, below the lower lip chin, and the
    rest left or right cheek by the side of the nose line (the subject's left
    is the image's right); skin between stays skin.
  """
  points = _check_points(points68)
  parsing = np.asarray(parsing)
  height, width = parsing.shape
  rows = np.arange(height)[:, None]
  cols = np.arange(width)[None, :]
  skin = parsing == LAPA['skin']
  brow_line = points[17:27, 1].max()
  chin_line = points[[56, 57, 58], 1].max()
  cheek_top = points[_RIGHT_EYE + _LEFT_EYE, 1].max()
  cheek_bottom = points[[48, 54], 1].max()
  nose_x = points[[27, 30, 33], 0].mean()

  region = parsing.astype(np.int32)
  region[skin & (rows < brow_line)] = FINE['forehead']
  region[skin & (rows > chin_line)] = FINE['chin']
  cheeks = skin & (rows > cheek_top) & (rows <= cheek_bottom)
  region[cheeks & (cols >= nose_x)] = FINE['left_cheek']
  region[cheeks & (cols < nose_x)] = FINE['right_cheek']
  return region
