"""Synthetic faces with planted traits: the ground truth no real dataset has.

Each face is drawn from a 68-landmark shape model (fitted to the FairFace
sample, see ``experiments/make_shape_model.py``): a random identity from its
principal modes, pose jitter (a small similarity transform), a planted trait
for its class, then rendered from the landmark parsing map (skin, brows,
eyes with irises, nose, lips, inner mouth) with random skin tone, lighting,
background, blur and sensor noise, at 224x224 in the ArcFace-aligned frame.

Traits move landmarks by a fraction of the mean inter-ocular distance (IOD,
70 px at 224), in the region a correct explanation should point at; the
displacements below are at strength 1, and each face's strength is drawn
from :data:`STRENGTH_RANGE` (:func:`trait_strength`), the ground truth of
RQ2's synthetic HPO annotations:

=================  ======  ==========================================================
class              region  trait
=================  ======  ==========================================================
unaffected         --      none
wide_eyes          eye     each eye and brow 0.06 IOD further out (hypertelorism)
long_philtrum      mouth   lips and chin 0.09 IOD lower (longer nose-mouth distance)
wide_mouth         mouth   mouth 25% wider about its centre
short_nose         nose    nose tip and nostrils 0.09 IOD higher (shorter nose)
=================  ======  ==========================================================

With the identity spread of the shape model each trait shifts its landmark
measure (:data:`TRAIT_MEASURES`) by more than two pooled standard deviations
(Cohen's d > 2), checked in the tests. Everything is a deterministic function
of (seed, class, index).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from gestaltxai.data.align import ALIGNMENT_SIZES
from gestaltxai.regions.landmarks import landmark_parsing
from gestaltxai.regions.maps import LAPA

#: Faces are drawn aligned, as the ArcFace alignment stores photos.
SIZE = ALIGNMENT_SIZES['arcface']
_ASSETS = pathlib.Path(__file__).parent / 'assets'
MEAN_IOD = 70.0  # the ArcFace template's eye distance at 224 px

# Identity, pose and appearance ranges.
IDENTITY_SCALE = 0.7      # of the shape model's standard deviations
POSE_ROTATION_DEG = 6.0
POSE_SCALE = 0.05
POSE_SHIFT_PX = 4.0
LIGHTING_STRENGTH = 0.25
BLUR_SIGMA = 0.8
NOISE_STD = 4.0

_RIGHT = np.r_[17:22, 36:42]   # image-left brow and eye
_LEFT = np.r_[22:27, 42:48]
_MOUTH = np.r_[48:68]
_CHIN = np.r_[6:11]
_NOSE_LOWER = np.r_[30:36]


def _wide_eyes(p, s):
  p = p.copy()
  p[_RIGHT, 0] -= 0.06 * s * MEAN_IOD
  p[_LEFT, 0] += 0.06 * s * MEAN_IOD
  return p


def _long_philtrum(p, s):
  p = p.copy()
  p[np.r_[_MOUTH, _CHIN], 1] += 0.09 * s * MEAN_IOD
  return p


def _wide_mouth(p, s):
  p = p.copy()
  centre = p[_MOUTH, 0].mean()
  p[_MOUTH, 0] = centre + (p[_MOUTH, 0] - centre) * (1 + 0.25 * s)
  return p


def _short_nose(p, s):
  p = p.copy()
  p[_NOSE_LOWER, 1] -= 0.09 * s * MEAN_IOD
  return p


TRAITS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    'unaffected': lambda p, s: p,
    'wide_eyes': _wide_eyes,
    'long_philtrum': _long_philtrum,
    'wide_mouth': _wide_mouth,
    'short_nose': _short_nose,
}
TRAIT_REGIONS = {'unaffected': None, 'wide_eyes': 'eye', 'long_philtrum': 'mouth',
                 'wide_mouth': 'mouth', 'short_nose': 'nose'}
#: The HPO term each trait is (the reference's RQ2 grouping puts it in TRAIT_REGIONS' region).
TRAIT_HPO = {'unaffected': None, 'wide_eyes': 'Hypertelorism', 'long_philtrum': 'Long philtrum',
             'wide_mouth': 'Wide mouth', 'short_nose': 'Short nose'}
#: Range of a face's trait strength (1 is the displacement documented above). From 1 to 2
#: the tiny model learns these faces to 0.55 test accuracy in the tiny demo's budget (0.42
#: at 0.6 to 1.4) and to 0.90 in the default demo's (5 classes, chance 0.2).
STRENGTH_RANGE = (1.0, 2.0)
_STRENGTH_STREAM = 1  # a random stream apart from the face's own


def _eye_spacing(p):
  return p[42:48, 0].mean() - p[36:42, 0].mean()


#: Landmark measure each trait moves, in pixels.
TRAIT_MEASURES: dict[str, Callable[[np.ndarray], float]] = {
    'wide_eyes': _eye_spacing,
    'long_philtrum': lambda p: p[51, 1] - p[33, 1],   # nose base to upper lip
    'wide_mouth': lambda p: p[54, 0] - p[48, 0],
    'short_nose': lambda p: p[33, 1] - p[27, 1],      # nasion to nose base
}


@functools.lru_cache(maxsize=None)
def shape_model() -> dict[str, np.ndarray]:
  """mean (68, 2), modes (K, 68, 2), stds (K,) of the aligned 68-point shapes."""
  with np.load(_ASSETS / 'face_shape_model.npz') as f:
    return {k: f[k] for k in ('mean', 'modes', 'stds')}


@dataclasses.dataclass(frozen=True)
class SyntheticFace:
  image: np.ndarray      # (224, 224, 3) uint8 RGB
  parsing: np.ndarray    # (224, 224) uint8 LaPa labels
  points68: np.ndarray   # (68, 2) float32 (x, y)


def sample_shape(rng: np.random.Generator, trait: str, strength: float = 1.0) -> np.ndarray:
  """A random identity with a pose jitter and the class's planted trait, (68, 2)."""
  if trait not in TRAITS:
    raise ValueError(f'unknown trait {trait!r}; choose from {sorted(TRAITS)}')
  model = shape_model()
  coefficients = rng.normal(size=len(model['stds'])) * model['stds'] * IDENTITY_SCALE
  points = model['mean'] + np.tensordot(coefficients, model['modes'], axes=1)
  points = TRAITS[trait](points.astype(np.float64), strength)
  angle = np.deg2rad(rng.uniform(-POSE_ROTATION_DEG, POSE_ROTATION_DEG))
  scale = 1 + rng.uniform(-POSE_SCALE, POSE_SCALE)
  rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  centre = np.array([SIZE / 2, SIZE / 2])
  shift = rng.uniform(-POSE_SHIFT_PX, POSE_SHIFT_PX, 2)
  return (points - centre) @ rotation.T + centre + shift


def render(points68: np.ndarray, rng: np.random.Generator) -> SyntheticFace:
  """Renders a face from landmarks: the parsing map is exactly what is drawn."""
  parsing = landmark_parsing(points68, SIZE)
  tone = rng.uniform()
  skin = (1 - tone) * np.array([236, 198, 168]) + tone * np.array([92, 58, 40])
  skin = skin * rng.uniform(0.92, 1.08, 3)
  palette = np.zeros((11, 3))
  palette[LAPA['background']] = rng.uniform(20, 235, 3)
  palette[LAPA['skin']] = skin
  palette[[LAPA['left_eyebrow'], LAPA['right_eyebrow']]] = skin * rng.uniform(0.25, 0.45)
  palette[[LAPA['left_eye'], LAPA['right_eye']]] = [235, 232, 226]
  palette[LAPA['nose']] = skin * 0.9
  palette[[LAPA['upper_lip'], LAPA['lower_lip']]] = skin * [0.85, 0.55, 0.55] + [30, 0, 0]
  palette[LAPA['inner_mouth']] = [70, 25, 25]
  image = palette[parsing]

  rows, cols = np.mgrid[:SIZE, :SIZE].astype(np.float64)
  iris = rng.uniform(20, 110, 3)
  for eye in (np.r_[36:42], np.r_[42:48]):
    cx, cy = points68[eye].mean(0)
    radius = 0.45 * (points68[eye, 1].max() - points68[eye, 1].min()) + 1.0
    inside = ((cols - cx) ** 2 + (rows - cy) ** 2 <= radius ** 2) & np.isin(
        parsing, [LAPA['left_eye'], LAPA['right_eye']])
    image[inside] = iris

  direction = rng.uniform(0, 2 * np.pi)
  light = 1 + LIGHTING_STRENGTH * (np.cos(direction) * (cols / SIZE - 0.5)
                                   + np.sin(direction) * (rows / SIZE - 0.5)) * 2
  image = image * light[..., None] * rng.uniform(0.85, 1.15)
  image = ndimage.gaussian_filter(image, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0))
  image = image + rng.normal(0, NOISE_STD, image.shape)
  return SyntheticFace(np.clip(np.rint(image), 0, 255).astype(np.uint8), parsing,
                       points68.astype(np.float32))


def trait_strength(seed: int, trait: str, index: int) -> float:
  """How strongly face ``index`` of class ``trait`` shows its trait (0 for unaffected).

  Uniform in :data:`STRENGTH_RANGE`, from a random stream of its own, so the
  face's identity and rendering do not depend on it. It is the ground truth
  of RQ2: the synthetic HPO annotations grade it by tertile.
  """
  if TRAIT_REGIONS[trait] is None:
    return 0.0
  rng = np.random.default_rng([seed, sorted(TRAITS).index(trait), index, _STRENGTH_STREAM])
  return float(rng.uniform(*STRENGTH_RANGE))


def synthetic_face(seed: int, trait: str, index: int,
                   strength: Optional[float] = None) -> SyntheticFace:
  """The face ``index`` of class ``trait``: a pure function of its arguments.

  ``strength`` scales the planted trait; by default :func:`trait_strength`.
  """
  class_id = sorted(TRAITS).index(trait)
  rng = np.random.default_rng([seed, class_id, index])
  strength = trait_strength(seed, trait, index) if strength is None else strength
  return render(sample_shape(rng, trait, strength), rng)


def hpo_annotations(names: Sequence[str], traits: Sequence[str],
                    strengths: Sequence[float]) -> dict[str, list[dict[str, str]]]:
  """HPO annotations of synthetic faces in the reference's per-syndrome CSV layout.

  Each trait class's faces are annotated with the class's HPO term
  (:data:`TRAIT_HPO`) by one, two or three of three "clinicians"
  ('1X', '2X', '3X') by the tertile of their strength within the class; the
  unaffected are not annotated (the reference annotated syndromes only).

  Returns:
    {class: rows}, each row {'image_num', 'image_name', <term>, 'Other'}.
  """
  by_class: dict[str, list[tuple[str, float]]] = {}
  for name, trait, strength in zip(names, traits, strengths):
    if TRAIT_HPO.get(trait):
      by_class.setdefault(trait, []).append((name, strength))
  tables = {}
  for trait, members in by_class.items():
    values = np.array([s for _, s in members])
    cuts = np.quantile(values, [1 / 3, 2 / 3])
    rows = []
    for number, (name, strength) in enumerate(members, 1):
      clinicians = 1 + int(np.searchsorted(cuts, strength, side='right'))
      rows.append({'image_num': str(number), 'image_name': name,
                   TRAIT_HPO[trait]: f'{clinicians}X', 'Other': ''})
    tables[trait] = rows
  return tables
