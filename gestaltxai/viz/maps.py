"""Figures of maps over faces: explanation grids, class-mean maps, region importance on a face.

Each function returns a :class:`matplotlib.figure.Figure` built without
pyplot (no global figure state): save it with ``fig.savefig(path)``, or show
it in a notebook by leaving it as a cell's value.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from gestaltxai.viz.images import (CLIP_PERCENTILE, colorize, overlay, robust_range,
                                   template_face)

PANEL_INCHES = 1.55
LABEL_POINTS = 8
#: Colour-range choices: one range per map, or per method (comparable across images).
SCALES = ('map', 'method')


#: Width of a colour-bar column and height of a colour-bar row, in panels.
BAR_FRACTION = 0.12
BAR_ROW_FRACTION = 0.3


def _grid(rows: int, cols: int, colorbar: bool,
          bar_row: bool = False) -> tuple[Figure, np.ndarray]:
  """rows x cols square panels, plus a thin colour-bar column or a short last row; axes off."""
  width_ratios = [1.0] * cols + ([BAR_FRACTION] if colorbar else [])
  height_ratios = [1.0] * rows + ([BAR_ROW_FRACTION] if bar_row else [])
  fig = Figure(figsize=(PANEL_INCHES * sum(width_ratios), PANEL_INCHES * sum(height_ratios) + 0.3),
               layout='constrained')
  axes = np.asarray(fig.subplots(len(height_ratios), len(width_ratios), squeeze=False,
                                 gridspec_kw={'width_ratios': width_ratios,
                                              'height_ratios': height_ratios}))
  for ax in axes.ravel():
    ax.set_axis_off()
  return fig, axes


def _colorbar(fig: Figure, ax, vmin: float, vmax: float, cmap: str,
              orientation: str = 'vertical') -> None:
  """A colour bar of [vmin, vmax] in ``ax``, small print, powers of ten beside the axis."""
  ax.set_axis_on()
  bar = fig.colorbar(ScalarMappable(mcolors.Normalize(vmin, vmax), cmap), cax=ax,
                     orientation=orientation)
  bar.ax.tick_params(labelsize=LABEL_POINTS - 2)
  bar.formatter.set_powerlimits((-2, 3))
  axis = bar.ax.yaxis if orientation == 'vertical' else bar.ax.xaxis
  axis.offsetText.set_fontsize(LABEL_POINTS - 2)


def overlay_grid(images: np.ndarray, maps: Mapping[str, np.ndarray], *,
                 names: Optional[Sequence[str]] = None, cmap: str = 'turbo', alpha: float = 0.5,
                 scale: str = 'method', clip_percentile: float = CLIP_PERCENTILE) -> Figure:
  """Faces and their relevance maps, one row per image, methods side by side.

  Args:
    images: (E, H, W, 3) uint8 RGB faces (:func:`~gestaltxai.viz.to_display`
      turns model inputs into these).
    maps: {method: (E, H, W) float relevance}.
    names: E row titles.
    cmap, alpha: heatmap colour map and weight over the face.
    scale: 'map' gives each map its own colour range; 'method' one range per
      method over all images (so heatmaps compare across images; a colour
      bar per method then labels it).
    clip_percentile: colour ranges end at this percentile of the values.
  """
  if scale not in SCALES:
    raise ValueError(f'scale must be one of {SCALES}, got {scale!r}')
  images = np.asarray(images)
  methods = list(maps)
  for method in methods:
    if np.shape(maps[method]) != images.shape[:3]:
      raise ValueError(f'maps[{method!r}] has shape {np.shape(maps[method])}; images are '
                       f'{images.shape[:3]}')
  shared = scale == 'method'
  fig, axes = _grid(len(images), len(methods) + 1, colorbar=False, bar_row=shared)
  ranges = {m: robust_range(maps[m], clip_percentile) for m in methods}
  for i, image in enumerate(images):
    axes[i, 0].imshow(image)
    axes[i, 0].set_title(names[i] if names is not None else f'image {i}', fontsize=LABEL_POINTS)
    for j, method in enumerate(methods, 1):
      relevance = maps[method][i]
      low, high = ranges[method] if shared else robust_range(relevance, clip_percentile)
      axes[i, j].imshow(overlay(image, relevance, cmap=cmap, alpha=alpha, vmin=low, vmax=high))
      if i == 0:
        axes[i, j].set_title(method, fontsize=LABEL_POINTS)
  if shared:
    for j, method in enumerate(methods, 1):
      # A horizontal colour bar under each method's column.
      _colorbar(fig, axes[-1, j].inset_axes([0.05, 0.55, 0.9, 0.35]), *ranges[method], cmap,
                orientation='horizontal')
    axes[-1, 0].text(0.5, 0.7, 'colour range\nper method', ha='center', va='center',
                     fontsize=LABEL_POINTS, transform=axes[-1, 0].transAxes)
  return fig


def _class_rows(methods: Sequence[str], classes: Sequence[str], ranges, panel, cmap) -> Figure:
  """A row per method and a column per class, one colour bar per row.

  ``ranges[i]`` is row i's (low, high); ``panel(i, k, low, high)`` gives the
  (H, W, 3) image of method i and class k.
  """
  fig, axes = _grid(len(methods), len(classes), colorbar=True)
  for i, method in enumerate(methods):
    low, high = ranges[i]
    for k, name in enumerate(classes):
      axes[i, k].imshow(panel(i, k, low, high))
      if i == 0:
        axes[i, k].set_title(name, fontsize=LABEL_POINTS)
    axes[i, 0].text(-0.06, 0.5, method, rotation=90, ha='right', va='center',
                    fontsize=LABEL_POINTS, transform=axes[i, 0].transAxes)
    _colorbar(fig, axes[i, -1], low, high, cmap)
  return fig


def class_mean_maps(mean_images: np.ndarray, maps: Mapping[str, np.ndarray],
                    classes: Sequence[str], *, cmap: str = 'turbo', alpha: float = 0.55,
                    clip_percentile: float = CLIP_PERCENTILE) -> Figure:
  """Mean relevance of each class's images over its mean aligned face, a row per method.

  Args:
    mean_images: (K, H, W, 3) uint8 RGB mean face of each class (shown in grey
      under the map).
    maps: {method: (K, H, W) float mean relevance over the class's images}.
    classes: K column titles.

  One colour range per method (row), so the classes compare.
  """
  grey = np.asarray(mean_images).astype(np.float64).mean(axis=-1)
  methods = list(maps)
  ranges = [robust_range(maps[m], clip_percentile) for m in methods]
  return _class_rows(methods, classes, ranges, lambda i, k, low, high: overlay(
      grey[k], maps[methods[i]][k], cmap=cmap, alpha=alpha, vmin=low, vmax=high), cmap)


def region_faces(values: np.ndarray, *, methods: Sequence[str], classes: Sequence[str],
                 regions: Sequence[str], cmap: str = 'magma', size: int = 224) -> Figure:
  """Region importance painted on a template face, a row per method, a column per class.

  Args:
    values: (methods, classes, regions) float, e.g. the mean region
      coefficient of each class; NaN leaves a region unpainted.
    regions: names of the last axis; those of
      :data:`gestaltxai.regions.HPO_REGIONS` are painted (eye, nose, mouth as
      the reference's boxes, forehead, chin, hair), others are ignored.

  One colour range per method (row), over its classes and regions.
  """
  from gestaltxai.regions import HPO_REGIONS  # pylint: disable=import-outside-toplevel
  values = np.asarray(values, np.float64)
  expected = (len(methods), len(classes), len(regions))
  if values.shape != expected:
    raise ValueError(f'values has shape {values.shape}; expected {expected}')
  drawing, region_map = template_face(size)
  face = np.repeat(drawing[..., None], 3, axis=-1)
  inside = {r: region_map == HPO_REGIONS.index(name) for r, name in enumerate(regions)
            if name in HPO_REGIONS}
  ranges = []
  for row in values:
    finite = row[np.isfinite(row)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    ranges.append((low, high if high > low else low + 1.0))

  def paint(i, k, low, high):
    painted = face.copy()
    for r, mask in inside.items():
      if np.isfinite(values[i, k, r]):
        painted[mask] = 0.25 * face[mask] + 0.75 * colorize(values[i, k, r], low, high, cmap)
    return painted

  return _class_rows(methods, classes, ranges, paint, cmap)
