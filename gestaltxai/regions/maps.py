"""Region label maps from LaPa-style face parsing maps.

LaPa labels: 0 background, 1 skin, 2 left eyebrow, 3 right eyebrow, 4 left
eye, 5 right eye, 6 nose, 7 upper lip, 8 inner mouth, 9 lower lip, 10 hair.
"Left" is the subject's left, the right side of the image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LAPA_LABELS = ('background', 'skin', 'left_eyebrow', 'right_eyebrow', 'left_eye', 'right_eye',
               'nose', 'upper_lip', 'inner_mouth', 'lower_lip', 'hair')
LAPA = {name: i for i, name in enumerate(LAPA_LABELS)}
#: Labels that swap under a horizontal flip.
LAPA_FLIP = np.array([0, 1, 3, 2, 5, 4, 6, 7, 8, 9, 10], np.int32)

#: The reference's RQ1 regions; ``reference_region_map`` gives these ids.
REFERENCE_REGIONS = ('none', 'eye', 'nose', 'mouth')

# The reference's box arithmetic (code/extract_region_coefficients.py).
EYE_INNER_MARGIN = 0.2    # each eye box grows 20% of its width towards the nose,
EYE_OUTER_MARGIN = 0.1    # 10% away from it
EYE_VERTICAL_MARGIN = 0.2
NOSE_TOP_FRACTION = 0.3   # nose top: higher eye top + 30% of the smaller eye height
MOUTH_SIDE_MARGIN = 0.2
MOUTH_DROP_FRACTION = 0.5  # mouth bottom drops by half the nose-mouth gap

_EIGHT_CONNECTED = np.ones((3, 3), bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
  """The largest 8-connected component of a boolean mask (first in scan order on ties)."""
  components, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
  if count == 0:
    return mask & False
  sizes = np.bincount(components.ravel())[1:]
  return components == (np.argmax(sizes) + 1)


def _part_box(segmap: np.ndarray, label: int) -> np.ndarray:
  """[y1, x1, y2, x2] (inclusive) of the largest component of a LaPa part."""
  part = largest_component(segmap == label)
  if not part.any():
    raise ValueError(f'the parsing map has no {LAPA_LABELS[label]} (LaPa label {label})')
  rows, cols = np.nonzero(part)
  return np.array([rows.min(), cols.min(), rows.max(), cols.max()])


def _union_box(segmap, labels):
  boxes = np.stack([_part_box(segmap, label) for label in labels])
  return np.r_[boxes[:, :2].min(0), boxes[:, 2:].max(0)]


def reference_region_boxes(segmap: np.ndarray) -> dict[str, tuple[int, int, int, int]]:
  """The reference's RQ1 boxes, {name: (y1, x1, y2, x2)} with exclusive ends.

  Transcribes the arithmetic of the reference (``int`` truncation included):
  each eye box spans its brow and eye, widened 20% of its width on the inner
  side (towards the nose), 10% on the outer side and 20% of its height above
  and below; the nose box spans the nose, its
  top moved to the higher eye top plus 30% of the smaller eye height; the
  mouth box spans both lips widened 20% each side, its bottom dropped by half
  the nose-mouth gap; nose and mouth meet halfway between them. Boxes are
  clipped to the map (the reference let negative starts wrap around).
  """
  segmap = np.asarray(segmap)
  if segmap.ndim != 2:
    raise ValueError(f'expected a (H, W) parsing map, got shape {segmap.shape}')
  height, width = segmap.shape
  # "left" is the subject's left: the box on the image's right side.
  ly1, lx1, ly2, lx2 = _union_box(segmap, (LAPA['left_eyebrow'], LAPA['left_eye']))
  ry1, rx1, ry2, rx2 = _union_box(segmap, (LAPA['right_eyebrow'], LAPA['right_eye']))
  lw, lh = lx2 - lx1, ly2 - ly1
  rw, rh = rx2 - rx1, ry2 - ry1
  left_eye = (ly1 - int(EYE_VERTICAL_MARGIN * lh), lx1 - int(EYE_INNER_MARGIN * lw),
              ly2 + int(EYE_VERTICAL_MARGIN * lh), lx2 + int(EYE_OUTER_MARGIN * lw))
  right_eye = (ry1 - int(EYE_VERTICAL_MARGIN * rh), rx1 - int(EYE_OUTER_MARGIN * rw),
               ry2 + int(EYE_VERTICAL_MARGIN * rh), rx2 + int(EYE_INNER_MARGIN * rw))

  ny1, nx1, ny2, nx2 = _part_box(segmap, LAPA['nose'])
  ny1 = min(left_eye[0], right_eye[0]) + int(NOSE_TOP_FRACTION * min(lh, rh))

  my1, mx1, my2, mx2 = _union_box(segmap, (LAPA['upper_lip'], LAPA['lower_lip']))
  my2 += int(MOUTH_DROP_FRACTION * (my1 - ny2))
  my1 = ny2 = int(0.5 * (my1 + ny2))
  mouth_width = mx2 - mx1
  mx1, mx2 = mx1 - int(MOUTH_SIDE_MARGIN * mouth_width), mx2 + int(MOUTH_SIDE_MARGIN * mouth_width)
  my2 = min(my2, height)

  def clip(box):
    y1, x1, y2, x2 = (int(v) for v in box)
    return (max(y1, 0), max(x1, 0), min(y2, height), min(x2, width))

  return {'left_eye': clip(left_eye), 'right_eye': clip(right_eye),
          'nose': clip((ny1, nx1, ny2, nx2)), 'mouth': clip((my1, mx1, my2, mx2))}


def reference_region_map(segmap: np.ndarray) -> np.ndarray:
  """LaPa parsing map (H, W) -> (H, W) int32: 0 none, 1 eye, 2 nose, 3 mouth.

  The reference's RQ1 regions (see :func:`reference_region_boxes`). Where
  eye and nose boxes overlap the eye wins, as in the reference. The
  reference could also count a pixel in both eye and mouth (which its boxes
  do not produce on faces); one label per pixel gives it to the eye.

  Raises:
    ValueError: a part is missing, naming it.
  """
  boxes = reference_region_boxes(segmap)
  height, width = np.shape(segmap)
  rows = np.arange(height)[:, None]
  cols = np.arange(width)[None, :]

  def inside(box):
    y1, x1, y2, x2 = box
    return (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)

  region = np.zeros((height, width), np.int32)
  region[inside(boxes['mouth'])] = REFERENCE_REGIONS.index('mouth')
  region[inside(boxes['nose'])] = REFERENCE_REGIONS.index('nose')
  region[inside(boxes['left_eye']) | inside(boxes['right_eye'])] = REFERENCE_REGIONS.index('eye')
  return region
