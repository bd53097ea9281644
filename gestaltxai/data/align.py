"""Face alignment: the ArcFace five-point template (224 px) or dlib's face chip (150 px).

``'arcface'``, as the reference's ``norm_crop``: a least-squares similarity
(Umeyama 1991) maps the five points (eye centres, nose tip, mouth corners;
image-left first) onto the ArcFace 112x112 template scaled by size / 112,
and the image is warped with it, border 0. The VGGFace2 ResNet-50 takes it.

``'dlib'``: the chip dlib's face ResNet was trained on,
``dlib.get_face_chip(image, shape, size=150, padding=0.25)`` from dlib's 68
landmarks (:func:`dlib_chip_matrix`); warped with the same bilinear warp,
so label maps and landmarks follow the chip with the same matrix.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: ArcFace's five-point template at 112x112 (x, y): eye centres, nose tip,
#: mouth corners, image-left first (insightface).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
ARCFACE_SIZE = 112
#: Alignment name -> the side of the aligned image.
ALIGNMENT_SIZES = {'arcface': 224, 'dlib': 150}
#: dlib's face chip: ``get_face_chip(..., size=150, padding=0.25)``, what its face ResNet takes.
DLIB_CHIP_PADDING = 0.25


def umeyama_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """2x3 least-squares similarity (rotation, uniform scale, translation) source -> target.

  Umeyama's closed form for (N, 2) point sets, with the reflection guard.
  """
  source = np.asarray(source, np.float64)
  target = np.asarray(target, np.float64)
  mu_s, mu_t = source.mean(0), target.mean(0)
  s, t = source - mu_s, target - mu_t
  covariance = t.T @ s / len(source)
  u, singular, vt = np.linalg.svd(covariance)
  sign = np.ones(2)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    sign[-1] = -1
  rotation = u @ np.diag(sign) @ vt
  scale = (singular * sign).sum() / s.var(0).sum()
  matrix = np.zeros((2, 3))
  matrix[:, :2] = scale * rotation
  matrix[:, 2] = mu_t - scale * rotation @ mu_s
  return matrix


def template(size: int = 224) -> np.ndarray:
  """The ArcFace five points (5, 2) scaled to a size x size crop."""
  return ARCFACE_TEMPLATE_112 * (size / ARCFACE_SIZE)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """(N, 2) points (x, y) through a 2x3 affine matrix."""
  points = np.asarray(points, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int, order: int = 1) -> np.ndarray:
  """``cv2.warpAffine(image, matrix, (size, size), borderValue=0)`` in SciPy.

  Args:
    image: (H, W) or (H, W, C).
    matrix: 2x3, source (x, y) -> destination (x, y).
    order: 1 bilinear (images), 0 nearest (label maps).

  Returns:
    (size, size[, C]) in the input's dtype.
  """
  forward = np.vstack([matrix, [0, 0, 1]])
  inverse = np.linalg.inv(forward)
  # scipy maps output (row, col) -> input (row, col): swap x and y. Pixels
  # past the border blend with 0, as cv2's BORDER_CONSTANT does ('grid-constant').
  swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
  rc = swap @ inverse @ swap
  image = np.asarray(image)
  planes = image[..., None] if image.ndim == 2 else image
  out = np.stack([
      ndimage.affine_transform(planes[..., c].astype(np.float64), rc[:2, :2], offset=rc[:2, 2],
                               output_shape=(size, size), order=order, mode='grid-constant', cval=0.0)
      for c in range(planes.shape[-1])], axis=-1)
  if np.issubdtype(image.dtype, np.integer):
    info = np.iinfo(image.dtype)
    out = np.clip(np.rint(out), info.min, info.max)
  out = out.astype(image.dtype)
  return out[..., 0] if image.ndim == 2 else out


def align(image: np.ndarray, five_points: np.ndarray, size: int = 224,
          order: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Aligns a face: (warped image (size, size[, C]), 2x3 similarity matrix).

  Args:
    image: (H, W, C) photo or (H, W) map.
    five_points: (5, 2) (x, y): image-left eye centre, image-right eye
      centre, nose tip, image-left and image-right mouth corners.
    size: output side; the template is ArcFace's scaled by size / 112.
    order: 1 bilinear for photos, 0 nearest for label maps.

  Landmarks move with :func:`transform_points` and label maps with
  :func:`warp_affine` (``order=0``) and the same matrix.
  """
  five_points = np.asarray(five_points, np.float64)
  if five_points.shape != (5, 2) or not np.isfinite(five_points).all():
    raise ValueError(f'expected five finite (x, y) points, got {five_points.shape}')
  matrix = umeyama_similarity(five_points, template(size))
  return warp_affine(image, matrix, size, order), matrix


def dlib_chip_matrix(points68: np.ndarray, size: int = ALIGNMENT_SIZES['dlib'],
                     padding: float = DLIB_CHIP_PADDING) -> np.ndarray:
  """2x3 matrix photo (x, y) -> dlib's face chip, from dlib's 68 landmarks (68, 2).

  dlib chooses the chip (``get_face_chip_details``: its mean-face template,
  then ``padding``); the chip is the rectangle ``rect`` rotated by ``angle``
  about its centre, its top-left, top-right and bottom-right corners mapped
  to the chip's (as dlib's ``get_mapping_to_chip``).
  """
  import dlib  # pylint: disable=import-outside-toplevel
  points68 = np.asarray(points68, np.float64)
  if points68.shape != (68, 2) or not np.isfinite(points68).all():
    raise ValueError(f'the dlib chip needs dlib\'s 68 finite landmarks (68, 2), got '
                     f'{points68.shape}{"" if np.isfinite(points68).all() else " with NaN"}')
  parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points68]
  low, high = np.floor(points68.min(0)).astype(int), np.ceil(points68.max(0)).astype(int)
  box = dlib.rectangle(int(low[0]), int(low[1]), int(high[0]), int(high[1]))
  details = dlib.get_face_chip_details(dlib.full_object_detection(box, parts), size, padding)
  rect = details.rect
  corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()],
                      [rect.right(), rect.bottom()]], np.float64)
  centre = corners[[0, 2]].mean(0)
  cos, sin = np.cos(details.angle), np.sin(details.angle)
  rotated = (corners - centre) @ np.array([[cos, -sin], [sin, cos]]).T + centre
  chip = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]],
                  np.float64)
  return np.linalg.solve(np.c_[rotated, np.ones(3)], chip).T


def align_dlib_chip(image: np.ndarray, points68: np.ndarray, size: int = ALIGNMENT_SIZES['dlib'],
                    order: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """dlib's face chip of ``image`` (or a label map, ``order=0``): (chip, 2x3 matrix)."""
  matrix = dlib_chip_matrix(points68, size)
  return warp_affine(image, matrix, size, order), matrix
