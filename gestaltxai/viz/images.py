"""Arrays for display: model inputs back to RGB, heatmap overlays, colour ranges, a face."""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps

#: Relevance maps are spiky (a few pixels carry most of a gradient's mass):
#: colour ranges end at this percentile so the rest of the map stays visible.
CLIP_PERCENTILE = 99.5
TEMPLATE_SIZE = 224

# Grey levels of the template face, by LaPa label (background, skin, brows,
# eyes, nose, lips, inner mouth, hair): a drawing, not a photo.
_TEMPLATE_GREYS = np.array([1.0, 0.86, 0.35, 0.35, 0.3, 0.3, 0.72, 0.55, 0.25, 0.55, 0.45])


def to_display(x, mean_bgr: Sequence[float]) -> np.ndarray:
  """Undoes the model's input convention for display.

  Args:
    x: (..., H, W, 3) float, BGR minus ``mean_bgr`` (the model's input).
    mean_bgr: (3,) the channel mean that was subtracted (the fold's, or
      VGGFace2's 91.4953, 103.8827, 131.0912).

  Returns:
    (..., H, W, 3) uint8 RGB, clipped to [0, 255].
  """
  bgr = np.asarray(x, np.float32) + np.asarray(mean_bgr, np.float32)
  return np.clip(np.rint(bgr), 0, 255).astype(np.uint8)[..., ::-1]


def robust_range(maps, clip_percentile: float = CLIP_PERCENTILE) -> tuple[float, float]:
  """(low, high) colour range of relevance maps: 0 (or the minimum if negative) to a percentile."""
  values = np.asarray(maps, np.float64)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return 0.0, 1.0
  low = min(0.0, float(values.min()))
  high = float(np.percentile(values, clip_percentile))
  if high <= low:
    high = float(values.max()) if values.max() > low else low + 1.0
  return low, high


def colorize(values, vmin: float, vmax: float, cmap: str) -> np.ndarray:
  """(...,) float -> (..., 3) float RGB in [0, 1] through ``cmap`` over [vmin, vmax]."""
  scaled = (np.asarray(values, np.float64) - vmin) / (vmax - vmin)
  return np.asarray(colormaps[cmap](np.clip(scaled, 0.0, 1.0)))[..., :3]


def overlay(image_rgb, relevance, *, cmap: str = 'turbo', alpha: float = 0.5,
            vmin: Optional[float] = None, vmax: Optional[float] = None) -> np.ndarray:
  """Blends a colour-mapped relevance map over a face.

  Args:
    image_rgb: (H, W, 3) uint8 RGB (see :func:`to_display`), or (H, W) grey.
    relevance: (H, W) float.
    cmap: a matplotlib colour map name.
    alpha: weight of the heatmap (0: face only, 1: heatmap only).
    vmin, vmax: the colour range; :func:`robust_range` of this map when None
      (pass a range shared by several maps to make them comparable).

  Returns:
    (H, W, 3) float RGB in [0, 1].
  """
  image = np.asarray(image_rgb, np.float64) / 255.0
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  relevance = np.asarray(relevance, np.float64)
  if relevance.shape != image.shape[:2]:
    raise ValueError(f'relevance {relevance.shape} does not match the image {image.shape[:2]}')
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must be in [0, 1], got {alpha}')
  if vmin is None or vmax is None:  # callers that share a range give both
    low, high = robust_range(relevance)
    vmin = low if vmin is None else vmin
    vmax = high if vmax is None else vmax
  return (1.0 - alpha) * image + alpha * colorize(relevance, vmin, vmax, cmap)


@functools.lru_cache(maxsize=None)
def template_face(size: int = TEMPLATE_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """(grey drawing (size, size) float in [0, 1], region map (size, size) int32 of HPO_REGIONS).

  The mean face of the synthetic shape model (fitted to dlib landmarks of
  FairFace) in the aligned frame, rasterised by landmark parsing; its region
  map is :func:`gestaltxai.regions.hpo_region_map` (ids 1-3 the reference's
  eye, nose and mouth boxes).
  """
  # pylint: disable=import-outside-toplevel
  from gestaltxai.data.synthetic import SIZE, shape_model
  from gestaltxai.regions import hpo_region_map, landmark_parsing
  points = shape_model()['mean'] * (size / SIZE)
  parsing = landmark_parsing(points, size)
  drawing = _TEMPLATE_GREYS[parsing]
  drawing.setflags(write=False)
  regions = hpo_region_map(parsing)
  regions.setflags(write=False)
  return drawing, regions
