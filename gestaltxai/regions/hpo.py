"""The region map behind RQ2: the reference's eye/nose/mouth boxes plus forehead, chin and hair.

The reference's RQ2 notebook correlates clinicians' HPO annotations with
coefficients of per-image min-max normalised relevance on the same eye, nose
and mouth boxes as RQ1. Its HPO grouping also names forehead, chin and hair
terms; this map adds those regions from the parsing map alone (no landmarks
needed), taking only pixels outside the three boxes, so ids 1-3 are exactly
:func:`~gestaltxai.regions.maps.reference_region_map`'s. Overall and ears
have no region: LaPa has no ear label, and "overall" would overlap the rest.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from gestaltxai.regions.maps import LAPA, largest_component, reference_region_map

#: Region ids of :func:`hpo_region_map`; 1-3 are the reference's RQ1 regions.
HPO_REGIONS = ('none', 'eye', 'nose', 'mouth', 'forehead', 'chin', 'hair')

_BROWS = (LAPA['left_eyebrow'], LAPA['right_eyebrow'])
_LIPS = (LAPA['upper_lip'], LAPA['inner_mouth'], LAPA['lower_lip'])


def _part_rows(parsing: np.ndarray, labels) -> Optional[np.ndarray]:
  """Row indices of the largest component of each part in ``labels`` (None if all absent)."""
  rows = [np.nonzero(largest_component(parsing == label))[0] for label in labels]
  rows = [r for r in rows if r.size]
  return np.concatenate(rows) if rows else None


def hpo_region_map(parsing: np.ndarray,
                   reference_regions: Optional[np.ndarray] = None) -> np.ndarray:
  """LaPa parsing map (H, W) -> (H, W) int32 ids of :data:`HPO_REGIONS`.

  Args:
    parsing: (H, W) LaPa labels (a face parser's, or
      :func:`~gestaltxai.regions.landmark_parsing`'s).
    reference_regions: the parsing map's
      :func:`~gestaltxai.regions.reference_region_map`, when already computed
      (the datasets store it as ``regions``); computed here when None.

  Returns:
    (H, W) int32: 1 eye, 2 nose, 3 mouth as the reference's boxes; among the
    remaining pixels, 4 forehead (skin above the top of the brows), 5 chin
    (skin below the bottom of the lips), 6 hair (LaPa hair); 0 elsewhere. A
    region whose parts are missing (hair in landmark parsing) has no pixel,
    so its coefficient is NaN.

  Raises:
    ValueError: ``reference_regions`` does not match the map's shape, or a
      part the reference boxes need is missing (naming it).
  """
  parsing = np.asarray(parsing)
  if reference_regions is None:
    region = reference_region_map(parsing)
  else:
    region = np.array(reference_regions, np.int32)
    if region.shape != parsing.shape:
      raise ValueError(f'reference_regions {region.shape} and parsing {parsing.shape} differ')
  free = region == 0
  rows = np.arange(parsing.shape[0])[:, None]
  skin = free & (parsing == LAPA['skin'])
  brow_rows, lip_rows = _part_rows(parsing, _BROWS), _part_rows(parsing, _LIPS)
  if brow_rows is not None:
    region[skin & (rows < brow_rows.min())] = HPO_REGIONS.index('forehead')
  if lip_rows is not None:
    region[skin & (rows > lip_rows.max())] = HPO_REGIONS.index('chin')
  region[free & (parsing == LAPA['hair'])] = HPO_REGIONS.index('hair')
  return region
