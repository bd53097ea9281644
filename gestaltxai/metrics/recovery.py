"""Planted-region recovery: does a method point at the region a class's trait was planted in?

Real syndrome data have no ground truth; the synthetic faces do (one trait
per class, in a known region, :data:`gestaltxai.data.synthetic.TRAIT_REGIONS`).
Two scores per method, each with the share a method pointing at random
regions would reach:

* classes: the share of trait classes whose largest RQ1 effect, |Cohen's d|
  of the region's coefficients against the control class, falls in the
  planted region (chance: one over the number of regions);
* images: the share of trait-class images whose planted region has the
  highest coefficient once each region is z-scored against the control
  images' coefficients of that region (chance: likewise). Only images the
  model classified correctly count, on both sides: a method explains the
  predicted class, and a trait face taken for another class is explained as
  that class.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np

from gestaltxai.stats.rq1 import Rq1Test
from gestaltxai.artifacts.coefficient_table import RAW_SUFFIX, CoefficientTable


@dataclasses.dataclass(frozen=True)
class Recovery:
  """One method's recovery of the planted regions.

  Attributes:
    classes, images: the two shares (NaN when nothing could be scored).
    chance_classes, chance_images: what pointing at a random region reaches.
    strongest: {trait class: region of the largest |d|} (the classes score).
    num_classes, num_images: how many were scored.
  """

  method: str
  classes: float
  images: float
  chance_classes: float
  chance_images: float
  strongest: dict[str, Optional[str]]
  num_classes: int
  num_images: int


def strongest_regions(tests: Sequence[Rq1Test], method: str,
                      planted: Mapping[str, Optional[str]]) -> dict[str, Optional[str]]:
  """{trait class: the region whose RQ1 test has the largest |Cohen's d|} for ``method``.

  A class none of whose regions could be tested maps to None.
  """
  strongest = {}
  for syndrome, region in planted.items():
    if region is None:
      continue
    effects = {t.region: abs(t.cohen_d) for t in tests
               if t.method == method and t.syndrome == syndrome and np.isfinite(t.cohen_d)}
    strongest[syndrome] = max(effects, key=effects.get) if effects else None
  return strongest


def image_hits(table: CoefficientTable, method: str, planted: Mapping[str, Optional[str]],
               control: str, regions: Sequence[str]) -> np.ndarray:
  """(N,) bool over the method's correctly classified trait-class images: whether the
  planted region has the highest z-score.

  Each region's coefficients are z-scored with the mean and standard
  deviation (ddof 1) of the correctly classified control images' coefficients
  of that region.
  """
  correct = table['predicted'] == table['label']
  control_rows = table.select(method=method, label=control) & correct
  values = np.stack([table[f'{r}{RAW_SUFFIX}'] for r in regions], axis=1)
  mean = np.nanmean(values[control_rows], axis=0)
  std = np.nanstd(values[control_rows], axis=0, ddof=1)
  hits = []
  for syndrome, region in planted.items():
    if region is None or region not in regions:
      continue
    rows = table.select(method=method, label=syndrome) & correct
    z = (values[rows] - mean) / std
    z = np.where(np.isfinite(z), z, -np.inf)
    hits.append(np.asarray(regions)[np.argmax(z, axis=1)] == region)
  return np.concatenate(hits) if hits else np.zeros(0, bool)


def recovery(table: CoefficientTable, tests: Sequence[Rq1Test],
             planted: Mapping[str, Optional[str]], control: str) -> dict[str, Recovery]:
  """Both recovery scores of every method of ``table``.

  Args:
    table: the coefficient table (RQ1 columns ``<region>_xai``).
    tests: RQ1 of the same table against ``control``.
    planted: {class: planted region, None for the control}.
    control: the class without a trait.
  """
  regions = table.regions(RAW_SUFFIX)
  chance = 1.0 / len(regions)
  scores = {}
  for method in table.methods:
    strongest = strongest_regions(tests, method, planted)
    scored = [c for c, r in strongest.items() if r is not None]
    class_share = (np.mean([strongest[c] == planted[c] for c in scored]) if scored
                   else float('nan'))
    hits = image_hits(table, method, planted, control, regions)
    scores[method] = Recovery(method, float(class_share),
                              float(hits.mean()) if hits.size else float('nan'),
                              chance, chance, strongest, len(scored), int(hits.size))
  return scores
