"""Planted traits on real photos: the known answer of the synthetic faces, on photographs.

Each photo is aligned (dlib's 68 landmarks, ArcFace five-point similarity,
224 px; :func:`gestaltxai.data.examples.aligned_example`) and rendered once
unaffected and once per trait by a smooth landmark-driven warp: a
thin-plate spline (``scipy.interpolate.RBFInterpolator``) through the
trait's moved landmarks, every other landmark and a ring of points on the
image border pinned, so the rest of the face and the background stay put.

Displacements are fractions of the face's own inter-ocular distance (IOD,
eye centres) at strength 1; each image's strength is drawn from
:data:`STRENGTH_RANGE` (:func:`trait_strength`) and recorded:

=================  ======  =====================================================
trait              region  warp at strength 1
=================  ======  =====================================================
unaffected         --      none
wide_eyes          eye     each eye and brow 0.06 IOD further out
long_philtrum      mouth   the mouth 0.09 IOD lower (away from the nose)
wide_mouth         mouth   the mouth 15% wider about its centre
short_nose         nose    nose tip and base 0.09 IOD higher (bridge graded)
=================  ======  =====================================================

Every warped face is checked after the fact (:func:`check_planted`): dlib's
68 landmarks are detected again on the unaffected and the warped render,
and the trait's measure (:data:`MEASURES`, over the face width, jaw point 0
to 16) must change by at least :data:`MIN_RECOVERED` of what the warp
planted, while the landmarks the warp pinned move on average less than
:data:`MAX_OFF_TARGET` of the face width. Faces that fail either check, or
where no face is found, raise :class:`PlantedCheckError` and the builder
drops and counts them.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Callable

import numpy as np
from scipy import interpolate, ndimage

from gestaltxai.data.align import ALIGNMENT_SIZES
from gestaltxai.data.detect import detect_landmarks, landmarks_in_box
from gestaltxai.data.synthetic import TRAIT_HPO, TRAIT_REGIONS  # noqa: F401  (re-exported)

#: Traits are planted on the photo aligned as ArcFace aligns it (dlib's chip is cut from it).
SIZE = ALIGNMENT_SIZES['arcface']
TRAITS = ('unaffected', 'wide_eyes', 'long_philtrum', 'wide_mouth', 'short_nose')
#: Range of an image's trait strength (1 is the warp in the table above). At 1 to 2 the
#: re-detected landmarks show every trait on most FairFace faces (README: planted faces).
STRENGTH_RANGE = (1.0, 2.0)
#: The re-detected measure must change by at least this fraction of the planted change, in
#: its direction. dlib's predictor (a cascade that regresses towards its mean shape) shows a
#: median 0.3 (wide eyes) to 0.65 (long philtrum) of the planted change on FairFace faces at
#: strengths 1-2, less at larger warps; 0.2 keeps about three quarters of the traits.
MIN_RECOVERED = 0.2
#: Mean displacement of re-detected pinned landmarks, over the face width, at most (their
#: median is about 0.01: the predictor's jitter on the same crop).
MAX_OFF_TARGET = 0.03
#: Points pinned on each side of the image border (the background stays put).
BORDER_POINTS_PER_SIDE = 8
_STRENGTH_STREAM = 2  # apart from the synthetic faces' streams

_RIGHT_EYE, _LEFT_EYE = np.r_[17:22, 36:42], np.r_[22:27, 42:48]   # image-left, -right (brows too)
_MOUTH = np.r_[48:68]
_NOSE_LOWER = np.r_[30:36]
_NOSE_BRIDGE = np.array([28, 29])   # graded: a third and two thirds of the nose's shift


def interocular(points: np.ndarray) -> float:
  return float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))


def face_width(points: np.ndarray) -> float:
  return float(np.linalg.norm(points[16] - points[0]))


def _wide_eyes(p, s):
  shift = 0.06 * s * interocular(p)
  axis = p[42:48].mean(0) - p[36:42].mean(0)
  axis /= np.linalg.norm(axis)
  p = p.copy()
  p[_RIGHT_EYE] -= shift * axis
  p[_LEFT_EYE] += shift * axis
  return p


def _long_philtrum(p, s):
  p = p.copy()
  p[_MOUTH, 1] += 0.09 * s * interocular(p)
  return p


def _wide_mouth(p, s):
  p = p.copy()
  centre = p[_MOUTH, 0].mean()
  p[_MOUTH, 0] = centre + (p[_MOUTH, 0] - centre) * (1 + 0.15 * s)
  return p


def _short_nose(p, s):
  p = p.copy()
  shift = 0.09 * s * interocular(p)
  p[_NOSE_LOWER, 1] -= shift
  p[_NOSE_BRIDGE, 1] -= shift * np.array([1 / 3, 2 / 3])
  return p


#: Trait -> (moved landmarks (68, 2) from (68, 2) and strength).
WARPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    'unaffected': lambda p, s: p.copy(), 'wide_eyes': _wide_eyes,
    'long_philtrum': _long_philtrum, 'wide_mouth': _wide_mouth, 'short_nose': _short_nose}

#: Trait -> the landmarks its warp moves (the rest are pinned).
MOVED = {'unaffected': np.array([], int), 'wide_eyes': np.r_[_RIGHT_EYE, _LEFT_EYE],
         'long_philtrum': _MOUTH, 'wide_mouth': _MOUTH,
         'short_nose': np.r_[_NOSE_BRIDGE, _NOSE_LOWER]}


def _eye_distance(p):
  return np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0))


#: Trait -> its landmark measure in pixels (divided by the face width when compared).
MEASURES: dict[str, Callable[[np.ndarray], float]] = {
    'wide_eyes': _eye_distance,
    'long_philtrum': lambda p: p[51, 1] - p[33, 1],   # nose base to upper lip
    'wide_mouth': lambda p: p[54, 0] - p[48, 0],
    'short_nose': lambda p: p[33, 1] - p[27, 1],      # nasion to nose base
}


def measure(points68: np.ndarray, trait: str) -> float:
  """The trait's measure over the face width (jaw point 0 to 16)."""
  return float(MEASURES[trait](points68) / face_width(points68))


def trait_strength(seed: int, identity: str, trait: str) -> float:
  """How strongly ``identity``'s image of ``trait`` shows it (0 for unaffected).

  Uniform in :data:`STRENGTH_RANGE`, a pure function of (seed, identity, trait).
  """
  if TRAIT_REGIONS[trait] is None:
    return 0.0
  rng = np.random.default_rng([seed, TRAITS.index(trait), zlib.crc32(identity.encode()),
                               _STRENGTH_STREAM])
  return float(rng.uniform(*STRENGTH_RANGE))


def border_points(size: int, per_side: int = BORDER_POINTS_PER_SIDE) -> np.ndarray:
  """(4 * per_side, 2) points (x, y) evenly around the image border."""
  ticks = np.linspace(0, size - 1, per_side, endpoint=False)
  last = size - 1
  return np.concatenate([np.stack([ticks, np.zeros_like(ticks)], 1),
                         np.stack([np.full_like(ticks, last), ticks], 1),
                         np.stack([last - ticks, np.full_like(ticks, last)], 1),
                         np.stack([np.zeros_like(ticks), last - ticks], 1)])


#: The spline is evaluated on a lattice this many pixels apart and interpolated between
#: (cubic): a sixteenth of the evaluations (0.25 s instead of 1.2 s per map), within 0.2 px
#: of the full evaluation on warps of strength 2 (the tests compare the two).
LATTICE_STEP = 4


def shift_spline(source: np.ndarray, target: np.ndarray,
                 size: int) -> interpolate.RBFInterpolator:
  """The warp's spline: output (x, y) (Q, 2) -> how far back to sample, (Q, 2).

  Through the control points (target -> source - target) and a ring of
  :func:`border_points` of a ``size`` image that stay put.
  """
  anchors = border_points(size)
  moved_to = np.concatenate([np.asarray(target, np.float64), anchors])
  moved_from = np.concatenate([np.asarray(source, np.float64), anchors])
  return interpolate.RBFInterpolator(moved_to, moved_from - moved_to,
                                     kernel='thin_plate_spline')


def backward_map(source: np.ndarray, target: np.ndarray, size: int,
                 lattice_step: int = LATTICE_STEP) -> np.ndarray:
  """(2, size, size) float64: for each output pixel (row, col), where to sample the input.

  A thin-plate spline (``scipy.interpolate.RBFInterpolator``, kernel
  'thin_plate_spline', no smoothing) through the control points, target ->
  source (the warp is sampled backwards), with the image border pinned;
  evaluated on a lattice ``lattice_step`` pixels apart (1: every pixel) and
  interpolated cubically between.

  Args:
    source: (N, 2) control points (x, y) in the input image.
    target: (N, 2) where they go in the output.
  """
  spline = shift_spline(source, target, size)
  ticks = np.linspace(0, size - 1, -(-(size - 1) // lattice_step) + 1)
  rows, cols = np.meshgrid(ticks, ticks, indexing='ij')
  shift = spline(np.stack([cols.ravel(), rows.ravel()], 1)).reshape(len(ticks), len(ticks), 2)
  pixel = np.mgrid[:size, :size].astype(np.float64)
  at = pixel * ((len(ticks) - 1) / (size - 1))   # each pixel's place on the lattice
  if len(ticks) < size:
    shift = np.stack([ndimage.map_coordinates(shift[..., axis], at, order=3, mode='nearest')
                      for axis in range(2)], -1)
  return np.stack([pixel[0] + shift[..., 1], pixel[1] + shift[..., 0]])


def warp(image: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
  """(H, W, C) uint8 image sampled bilinearly at ``coordinates`` (2, H, W) (row, col)."""
  planes = [ndimage.map_coordinates(image[..., c].astype(np.float64), coordinates, order=1,
                                    mode='nearest') for c in range(image.shape[-1])]
  return np.clip(np.rint(np.stack(planes, -1)), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class PlantedFace:
  """One identity with one trait planted.

  Attributes:
    image: (224, 224, 3) uint8 RGB, the warped aligned face.
    points68: (68, 2) float64 (x, y): where the warp put the landmarks.
    planted_change: the measure's change the warp planted (over face width).
    measured_change: the change dlib's re-detected landmarks show.
    off_target: mean displacement of re-detected pinned landmarks over the face width.
    displacement: (68, 2) float64: how far the warp moved each landmark.
  """

  image: np.ndarray
  points68: np.ndarray
  planted_change: float
  measured_change: float
  off_target: float
  displacement: np.ndarray


class PlantedCheckError(ValueError):
  """The re-detected landmarks do not show the planted change (or show it elsewhere)."""


def plant(image: np.ndarray, points68: np.ndarray, trait: str, strength: float) -> tuple:
  """(warped image, moved landmarks (68, 2)) of an aligned face."""
  if trait not in WARPS:
    raise ValueError(f'unknown trait {trait!r}; choose from {TRAITS}')
  moved = WARPS[trait](np.asarray(points68, np.float64), strength)
  if trait == 'unaffected':
    return image.copy(), moved
  return warp(image, backward_map(points68, moved, image.shape[0])), moved


def check_planted(warped: np.ndarray, points68: np.ndarray, moved: np.ndarray, trait: str,
                  base_detected: np.ndarray, box: tuple, *, name: str = '<array>'
                  ) -> tuple[float, float, float]:
  """Re-detects landmarks and measures what the warp did: (planted, measured, off_target).

  dlib's 68-point predictor runs on the warped face in the box dlib's
  detector found on the unaffected one, so both are read from the same crop.

  Args:
    warped: (224, 224, 3) uint8, the face with ``trait`` planted.
    points68: (68, 2) landmarks the warp started from; ``moved`` where it put them.
    base_detected: (68, 2) the predictor's landmarks on the unaffected face, in ``box``.
    box: (left, top, right, bottom) of the unaffected face's detection.

  Raises:
    PlantedCheckError: the measured change is under :data:`MIN_RECOVERED` of
      the planted one (or of the other sign), or pinned landmarks moved more
      than :data:`MAX_OFF_TARGET` of the face width.
  """
  planted = measure(moved, trait) - measure(points68, trait)
  found = landmarks_in_box(warped, box)
  measured = measure(found, trait) - measure(base_detected, trait)
  pinned = np.setdiff1d(np.arange(68), MOVED[trait])
  off_target = float(np.linalg.norm(found[pinned] - base_detected[pinned], axis=1).mean()
                     / face_width(base_detected))
  if measured / planted < MIN_RECOVERED:
    raise PlantedCheckError(f'{name}: {trait} measured {measured:+.4f} of the face width, under '
                            f'{MIN_RECOVERED} of the planted {planted:+.4f}')
  if off_target > MAX_OFF_TARGET:
    raise PlantedCheckError(f'{name}: {trait} moved pinned landmarks by {off_target:.4f} of the '
                            f'face width (limit {MAX_OFF_TARGET})')
  return planted, measured, off_target


@dataclasses.dataclass(frozen=True)
class AlignedBase:
  """A photo aligned, and dlib's view of the aligned face.

  Attributes:
    image: (224, 224, 3) uint8 RGB.
    points68: (68, 2) float64 landmarks (from the photo, aligned): what the warps move.
    detected: (68, 2) float64 landmarks detected again on ``image``, in ``box``.
    box: (left, top, right, bottom) of the face dlib's detector finds in ``image``.
    detector: who found the face in the photo ('hog' or 'cnn').
    photo: (H, W, 3) uint8 RGB, the photo itself.
    matrix: 2x3 similarity photo (x, y) -> ``image`` (x, y).
  """

  image: np.ndarray
  points68: np.ndarray
  detected: np.ndarray
  box: tuple
  detector: str
  photo: np.ndarray
  matrix: np.ndarray


@functools.lru_cache(maxsize=4)
def aligned_base(path: str, name: str, detector: str = 'auto') -> AlignedBase:
  """A photo aligned, with its landmarks found again on the aligned face.

  Cached: a worker prepares the traits of one identity one after another.

  Raises:
    NoFaceError: no face in the photo or in its aligned crop.
  """
  # pylint: disable=import-outside-toplevel
  from gestaltxai.data.align import align, transform_points
  from gestaltxai.data.images import read_rgb
  photo = read_rgb(path)
  found = detect_landmarks(photo, name=name, detector=detector)
  image, matrix = align(photo, found.five, SIZE)
  again = detect_landmarks(image, name=f'{name} (aligned)', detector=detector)
  return AlignedBase(image, transform_points(found.points68, matrix), again.points68, again.box,
                     found.detector, photo, matrix)


def render_chip(base: AlignedBase, moved: np.ndarray, chip_matrix: np.ndarray,
                size: int) -> np.ndarray:
  """(size, size, 3) uint8: a chip of the photo with the warp to ``moved`` applied.

  Each chip pixel is taken back to the 224 px frame (``chip_matrix`` maps
  that frame to the chip), through the warp's spline, and to the photo, and
  the photo is sampled there (bilinear, 0 past its border): one resampling
  of the photo, and no black border where the 224 px crop ends.
  """
  rows, cols = np.mgrid[:size, :size].astype(np.float64)
  chip = np.stack([cols.ravel(), rows.ravel()], 1)
  inverse = np.linalg.inv(np.vstack([chip_matrix, [0, 0, 1]]))[:2]
  frame = chip @ inverse[:, :2].T + inverse[:, 2]
  if not np.allclose(moved, base.points68):
    frame = frame + shift_spline(base.points68, moved, SIZE)(frame)
  to_photo = np.linalg.inv(np.vstack([base.matrix, [0, 0, 1]]))[:2]
  at = frame @ to_photo[:, :2].T + to_photo[:, 2]
  coordinates = np.stack([at[:, 1], at[:, 0]]).reshape(2, size, size)
  planes = [ndimage.map_coordinates(base.photo[..., c].astype(np.float64), coordinates,
                                    order=1, mode='grid-constant', cval=0.0)
            for c in range(3)]
  return np.clip(np.rint(np.stack(planes, -1)), 0, 255).astype(np.uint8)


def planted_face(path: str, name: str, trait: str, strength: float,
                 detector: str = 'auto') -> PlantedFace:
  """A photo, aligned, with ``trait`` planted at ``strength`` and checked."""
  base = aligned_base(path, name, detector)
  warped, moved = plant(base.image, base.points68, trait, strength)
  if trait == 'unaffected':
    changes = (0.0, 0.0, 0.0)
  else:
    changes = check_planted(warped, base.points68, moved, trait, base.detected, base.box,
                            name=name)
  return PlantedFace(warped, moved, *changes, displacement=moved - base.points68)


# One example of the dataset (gestaltxai.data.planted_faces builds them in its workers).

def planted_example(path: str, name: str, trait: str, strength: float,
                    detector: str = 'auto', alignment: str = 'arcface') -> dict:
  """A finished example of one identity with one trait (run in the build's workers).

  Traits are planted and checked on the 224 px ArcFace-aligned face; with
  ``alignment='dlib'`` dlib's 150 px chip is then cut from the photo by the
  unaffected face's landmarks, the same cut for every trait of an identity
  (a chip cut by the moved landmarks would undo part of the warp), with the
  same warp applied (:func:`render_chip`).
  """
  # pylint: disable=import-outside-toplevel
  from gestaltxai.data.align import ALIGNMENT_SIZES, dlib_chip_matrix, transform_points
  from gestaltxai.data.detect import five_from_68
  from gestaltxai.data.examples import finished
  from gestaltxai.regions.landmarks import landmark_parsing
  if alignment not in ALIGNMENT_SIZES:
    raise ValueError(f'alignment must be one of {sorted(ALIGNMENT_SIZES)}, got {alignment!r}')
  face = planted_face(path, name, trait, strength, detector)
  base = aligned_base(path, name, detector)
  image, points68 = face.image, face.points68
  if alignment != 'arcface':
    size = ALIGNMENT_SIZES[alignment]
    matrix = dlib_chip_matrix(base.points68, size)
    image, points68 = render_chip(base, points68, matrix, size), transform_points(points68, matrix)
  example = finished({'image': image, 'parsing': landmark_parsing(points68, image.shape[0]),
                      'five': five_from_68(points68), 'points68': points68,
                      'detector': base.detector})
  example.update({key: np.float32(getattr(face, key)) for key in PLANTED_FEATURES
                  if key != 'strength'}, strength=np.float32(strength))
  return example


#: Per-example numbers the planted builder adds to the shared features, all float32 scalars.
PLANTED_FEATURES = ('strength', 'planted_change', 'measured_change', 'off_target')
