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
from typing import Optional, Sequence

import numpy as np
from PIL import Image

# The package's __init__ imports pkg_resources (gone from current
# setuptools), so its files are found without importing it.
_MODELS_PACKAGE = 'face_recognition_models'
PREDICTOR_68 = 'shape_predictor_68_face_landmarks.dat'
PREDICTOR_5 = 'shape_predictor_5_face_landmarks.dat'
CNN_DETECTOR = 'mmod_human_face_detector.dat'
#: 'auto': HOG, then the CNN where HOG finds no face; or one detector alone.
DETECTORS = ('auto', 'hog', 'cnn')
#: What 'auto' tries, in order; the first detector that finds a face wins.
AUTO_ORDER = ('hog', 'cnn')
#: Times each detector upsamples the photo by default. The CNN's window is
#: about 80 px: on the FairFace crops (faces about 110 px) it finds more of
#: HOG's misses without upsampling than with it, at a quarter of the cost.
DEFAULT_UPSAMPLE = {'hog': 1, 'cnn': 0}
#: Photos are searched for faces at most this large (a 12 MP phone photo at
#: about 2 MP): HOG with one upsampling and the CNN grow with the pixels.
MAX_SEARCH_PIXELS = 1600 * 1200

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
def _hog_detector():
  import dlib  # pylint: disable=import-outside-toplevel
  return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
  import dlib  # pylint: disable=import-outside-toplevel
  return dlib.cnn_face_detection_model_v1(model_path(CNN_DETECTOR))


def _hog_faces(image: np.ndarray, upsample: int) -> list:
  return list(_hog_detector()(image, upsample))


def _cnn_faces(image: np.ndarray, upsample: int) -> list:
  return [found.rect for found in _cnn_detector()(image, upsample)]


#: Detector name -> finder of dlib rectangles in an (H, W, 3) uint8 photo.
_FINDERS = {'hog': _hog_faces, 'cnn': _cnn_faces}


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
    box: (left, top, right, bottom) of the detection, in the photo.
    num_faces: faces found (the largest is returned).
    detector: which detector found the face: 'hog' or 'cnn'.
  """

  five: np.ndarray
  points68: np.ndarray
  eye_corners: np.ndarray
  box: tuple[int, int, int, int]
  num_faces: int
  detector: str


def _shape_points(shape) -> np.ndarray:
  return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def five_from_68(points68: np.ndarray) -> np.ndarray:
  """The five alignment points (5, 2) from 68 landmarks."""
  points68 = np.asarray(points68, np.float64)
  return np.stack([points68[_RIGHT_EYE].mean(0), points68[_LEFT_EYE].mean(0),
                   points68[_NOSE_TIP], points68[_MOUTH_CORNERS[0]],
                   points68[_MOUTH_CORNERS[1]]])


def _check_photo(image_rgb: np.ndarray, name: str) -> np.ndarray:
  image = np.asarray(image_rgb)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f'{name}: expected an (H, W, 3) uint8 RGB image, got {image.shape} '
                     f'{image.dtype}')
  return np.ascontiguousarray(image)


def face_boxes(image_rgb: np.ndarray, detector: str, *, upsample: Optional[int] = None,
               name: str = '<array>') -> np.ndarray:
  """Every face one dlib detector finds, largest first.

  Photos larger than :data:`MAX_SEARCH_PIXELS` are searched at that size
  (the detectors' cost grows with the pixels; faces stay large enough to
  find) and the boxes scaled back.

  Args:
    image_rgb: (H, W, 3) uint8 RGB photo.
    detector: 'hog' or 'cnn'.
    upsample: times the detector upsamples the photo first; None: its
      default (:data:`DEFAULT_UPSAMPLE`).

  Returns:
    (N, 4) float64 boxes (left, top, right, bottom) in the photo's pixels.
  """
  if detector not in _FINDERS:
    raise ValueError(f'detector must be one of {tuple(_FINDERS)}, got {detector!r}')
  if upsample is not None and upsample < 0:
    raise ValueError(f'upsample must be >= 0, got {upsample}')
  image = _check_photo(image_rgb, name)
  height, width = image.shape[:2]
  scale = min(1.0, float(np.sqrt(MAX_SEARCH_PIXELS / (height * width))))
  if scale < 1:
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
  rects = _FINDERS[detector](image, DEFAULT_UPSAMPLE[detector] if upsample is None else upsample)
  boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects],
                   np.float64).reshape(-1, 4) / scale
  areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return boxes[np.argsort(-areas, kind='stable')]


def landmarks_in_box(image_rgb: np.ndarray, box: Sequence[float],
                     predictor: str = PREDICTOR_68) -> np.ndarray:
  """(P, 2) float64: the points a shape predictor places in a box (left, top, right, bottom)."""
  import dlib  # pylint: disable=import-outside-toplevel
  rect = dlib.rectangle(*(int(round(v)) for v in box))
  return _shape_points(_predictor(predictor)(_check_photo(image_rgb, '<array>'), rect))


def detect_landmarks(image_rgb: np.ndarray, *, name: str = '<array>', detector: str = 'auto',
                     upsample: Optional[int] = None) -> FaceLandmarks:
  """Detects the largest face and its landmarks.

  Args:
    image_rgb: (H, W, 3) uint8 RGB photo.
    name: what to call the image in messages (its file name).
    detector: 'auto' (dlib's HOG frontal face detector, then the MMOD CNN
      where HOG finds no face), 'hog' or 'cnn' alone.
    upsample: times a detector upsamples the photo first; None: each
      detector's own default (:data:`DEFAULT_UPSAMPLE`).

  Raises:
    NoFaceError: "no face found in <name>" (naming the detectors tried).
    ValueError: the image is not (H, W, 3) uint8, or an unknown detector.
  """
  image = _check_photo(image_rgb, name)
  if detector not in DETECTORS:
    raise ValueError(f'detector must be one of {DETECTORS}, got {detector!r}')
  tried = AUTO_ORDER if detector == 'auto' else (detector,)
  for kind in tried:
    boxes = face_boxes(image, kind, upsample=upsample, name=name)
    if len(boxes):
      break
  else:
    raise NoFaceError(f'no face found in {name} (detector {" then ".join(tried)})')
  if len(boxes) > 1:
    warnings.warn(f'{name}: {len(boxes)} faces found; using the largest', stacklevel=2)
  # The predictor runs on the CNN's own box: moving it onto the HOG box
  # geometry did not measurably improve the aligned eye centres on FairFace400
  # (experiments/detector_residuals.py; README).
  points68 = landmarks_in_box(image, boxes[0])
  corners = landmarks_in_box(image, boxes[0], PREDICTOR_5)[:4]
  return FaceLandmarks(five_from_68(points68), points68, corners,
                       tuple(int(round(v)) for v in boxes[0]), len(boxes), kind)
