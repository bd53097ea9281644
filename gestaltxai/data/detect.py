"""Face detection and landmarks with dlib, models from ``face_recognition_models``.

dlib's 68-point predictor was trained on iBUG 300-W, whose licence excludes
commercial use.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import warnings

import numpy as np

# The package's __init__ imports pkg_resources (gone from current
# setuptools), so its files are found without importing it.
_MODELS_PACKAGE = 'face_recognition_models'
PREDICTOR_68 = 'shape_predictor_68_face_landmarks.dat'
PREDICTOR_5 = 'shape_predictor_5_face_landmarks.dat'
CNN_DETECTOR = 'mmod_human_face_detector.dat'
DETECTORS = ('hog', 'cnn')

# 68-point indices of the five alignment points.
_RIGHT_EYE = slice(36, 42)   # image-left eye
_LEFT_EYE = slice(42, 48)    # image-right eye
_NOSE_TIP = 30
_MOUTH_CORNERS = (48, 54)


class NoFaceError(ValueError):
  """No face was found in an image."""


def model_path(filename: str) -> str:
  """Path of a dlib model file shipped in ``face_recognition_models``."""
  spec = importlib.util.find_spec(_MODELS_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(f'{_MODELS_PACKAGE} is not installed (pip install face_recognition_models)')
  path = os.path.join(spec.submodule_search_locations[0], 'models', filename)
  if not os.path.exists(path):
    raise FileNotFoundError(f'dlib model {filename} missing from {_MODELS_PACKAGE}: {path}')
  return path


@functools.lru_cache(maxsize=None)
def _detector(kind: str):
  import dlib  # pylint: disable=import-outside-toplevel
  if kind == 'hog':
    return dlib.get_frontal_face_detector()
  if kind == 'cnn':
    return dlib.cnn_face_detection_model_v1(model_path(CNN_DETECTOR))
  raise ValueError(f'detector must be one of {DETECTORS}, got {kind!r}')


@functools.lru_cache(maxsize=None)
def _predictor(filename: str):
  import dlib  # pylint: disable=import-outside-toplevel
  return dlib.shape_predictor(model_path(filename))


@dataclasses.dataclass(frozen=True)
class FaceLandmarks:
  """Landmarks of the largest face in a photo.

  Attributes:
    five: (5, 2) float64 (x, y): image-left and image-right eye centres
      (means of the 68-point eye contours), nose tip (point 30), image-left
      and image-right mouth corners (48, 54): the NIH-Faces / ArcFace order.
    points68: (68, 2) float64 (x, y).
    eye_corners: (4, 2) float64 from dlib's 5-point model: the two corners
      of each eye, a cross-check of the eye centres.
    box: (left, top, right, bottom) of the detection.
    num_faces: faces found (the largest is returned).
  """

  five: np.ndarray
  points68: np.ndarray
  eye_corners: np.ndarray
  box: tuple[int, int, int, int]
  num_faces: int


def _shape_points(shape) -> np.ndarray:
  return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def five_from_68(points68: np.ndarray) -> np.ndarray:
  """The five alignment points (5, 2) from 68 landmarks."""
  points68 = np.asarray(points68, np.float64)
  return np.stack([points68[_RIGHT_EYE].mean(0), points68[_LEFT_EYE].mean(0),
                   points68[_NOSE_TIP], points68[_MOUTH_CORNERS[0]],
                   points68[_MOUTH_CORNERS[1]]])


def detect_landmarks(image_rgb: np.ndarray, *, name: str = '<array>', detector: str = 'hog',
                     upsample: int = 1) -> FaceLandmarks:
  """Detects the largest face and its landmarks.

  Args:
    image_rgb: (H, W, 3) uint8 RGB photo.
    name: what to call the image in messages (its file name).
    detector: 'hog' (dlib's frontal face detector) or 'cnn' (the MMOD CNN).
    upsample: times the detector upsamples the image first.

  Raises:
    NoFaceError: "no face found in <name>".
    ValueError: the image is not (H, W, 3) uint8.
  """
  image = np.asarray(image_rgb)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f'{name}: expected an (H, W, 3) uint8 RGB image, got {image.shape} '
                     f'{image.dtype}')
  image = np.ascontiguousarray(image)
  found = _detector(detector)(image, upsample)
  rects = [d.rect for d in found] if detector == 'cnn' else list(found)
  if not rects:
    raise NoFaceError(f'no face found in {name}')
  rect = max(rects, key=lambda r: r.width() * r.height())
  if len(rects) > 1:
    warnings.warn(f'{name}: {len(rects)} faces found; using the largest', stacklevel=2)
  points68 = _shape_points(_predictor(PREDICTOR_68)(image, rect))
  corners = _shape_points(_predictor(PREDICTOR_5)(image, rect))[:4]
  box = (rect.left(), rect.top(), rect.right(), rect.bottom())
  return FaceLandmarks(five_from_68(points68), points68, corners, box, len(rects))
