"""RQ2: do region coefficients agree with what clinicians annotated?

Per method, fold and region, as the reference's RQ2 notebook: the Spearman
correlation between an annotated image's HPO score for the region and its
coefficient of min-max normalised relevance (``<region>_xai_norm``), over the
fold's annotated rows (``role``, explained by the fold's own model); then per
method and region the mean and standard deviation (ddof 1, as pandas) of r
over folds, the paper's RQ2 table. The 95% interval is pingouin's: Fisher's z, tanh(atanh(r) +- z_crit /
sqrt(n - 3)); the p value is scipy's (t distribution with n - 2 degrees of
freedom).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional, Sequence

import numpy as np
from scipy import stats

from gestaltxai.stats.hpo import HpoAnnotations, image_key
from gestaltxai.stats.records import Skipped
from gestaltxai.stats.rq1 import chosen_methods
from gestaltxai.artifacts.coefficient_table import NORMALIZED_SUFFIX, CoefficientTable

#: Fisher's z interval has standard error 1 / sqrt(n - 3): four images at least.
MIN_IMAGES = 4


@dataclasses.dataclass(frozen=True)
class Rq2Config:
  confidence: float = 0.95
  suffix: str = NORMALIZED_SUFFIX
  methods: Optional[tuple[str, ...]] = None  # None: every method of the table
  role: str = 'annotated'                    # the rows correlated (gestaltxai.roles)
  hpo_scale: str = 'exact'                   # HpoAnnotations.region_scores


@dataclasses.dataclass(frozen=True)
class Rq2Correlation:
  """One row of ``rq2.csv``."""
  method: str
  fold: int
  region: str
  n: int
  r: float
  ci_low: float
  ci_high: float
  p_value: float


@dataclasses.dataclass(frozen=True)
class Rq2Summary:
  """One row of ``rq2_summary.csv``: r over folds."""
  method: str
  region: str
  folds: int
  r_mean: float
  r_std: float


def spearman(x: np.ndarray, y: np.ndarray,
             confidence: float = 0.95) -> tuple[float, float, float, float]:
  """(r, interval low, interval high, two-sided p) of Spearman's rank correlation.

  Args:
    x, y: (n,) float, n >= 4, neither constant.
    confidence: of the Fisher z interval.
  """
  r, p = stats.spearmanr(x, y)
  critical = stats.norm.ppf(0.5 + confidence / 2)
  with np.errstate(divide='ignore'):  # r = +-1: atanh is infinite, the interval [r, r]
    z = np.arctanh(r)
  half = critical / np.sqrt(len(x) - 3)
  return float(r), float(np.tanh(z - half)), float(np.tanh(z + half)), float(p)


def _annotated_rows(table: CoefficientTable, hpo: HpoAnnotations):
  """(table rows that are annotated, their HPO image index), and annotated images not in it."""
  index = {image_key(name): i for i, name in enumerate(hpo.images)}
  keys = [image_key(name) for name in table['image_name'].tolist()]
  found = np.array([index.get(k, -1) for k in keys], np.int64)
  in_table = set(keys)
  missing = [(hpo.sources[i], name) for i, name in enumerate(hpo.images)
             if image_key(name) not in in_table]
  return found, missing


#: Absent images named per annotation file in ``skipped.csv``.
_NAMES_SHOWN = 5


def rq2(table: CoefficientTable, hpo: HpoAnnotations,
        config: Rq2Config = Rq2Config()) -> tuple[list[Rq2Correlation], list[Skipped]]:
  """Spearman correlations per method, fold and region, and what could not be computed.

  Regions are those of the HPO grouping with a ``<region><suffix>`` column;
  the others, annotated images that are not in the table, HPO columns the
  grouping does not know, folds with fewer than :data:`MIN_IMAGES` annotated
  images and constant scores are listed as skipped with the reason.
  """
  if 'fold' not in table:
    raise ValueError(f'{table.path}: RQ2 correlates per fold and the table has no fold column')
  found, missing = _annotated_rows(table, hpo)
  absent: dict[str, list[str]] = {}
  for source, name in missing:
    absent.setdefault(source, []).append(name)
  # One row per annotation file: a table of some folds leaves out the others' images.
  skipped = [Skipped('rq2', '', source, '', f'{len(names)} annotated image(s) not in '
                     f'{table.path}: {", ".join(names[:_NAMES_SHOWN])}'
                     + (', ...' if len(names) > _NAMES_SHOWN else ''))
             for source, names in absent.items()]
  skipped += [Skipped('rq2', '', source, '', f'column {column!r} is not an HPO term of the '
                      'region grouping; not counted') for source, column in hpo.unknown_terms]
  present = table.regions(config.suffix)
  regions = [r for r in hpo.grouping if r in present]
  skipped += [Skipped('rq2', '', '', region, f'no {region}{config.suffix} column in {table.path}')
              for region in hpo.grouping if region not in present]
  scores = hpo.region_scores(config.hpo_scale)
  folds = sorted({int(f) for f in table['fold'][np.isfinite(table['fold'])]})
  correlations = []
  for method in chosen_methods(table, config.methods):
    for fold in folds:
      rows = table.select(method=method, fold=fold, role=config.role) & (found >= 0)
      for region in regions:
        coefficient = table[f'{region}{config.suffix}'][rows]
        score = scores[region][found[rows]]
        valid = ~np.isnan(coefficient)
        coefficient, score = coefficient[valid], score[valid]
        reason = None
        if len(score) < MIN_IMAGES:
          reason = (f'{len(score)} annotated image(s) with a coefficient in fold {fold}; '
                    f'the interval needs {MIN_IMAGES}')
        elif np.ptp(score) == 0:
          reason = f'every annotated image of fold {fold} has the same {region} HPO score'
        elif np.ptp(coefficient) == 0:
          reason = f'the {region} coefficient is constant in fold {fold}'
        if reason:
          skipped.append(Skipped('rq2', method, str(fold), region, reason))
          continue
        r, low, high, p = spearman(coefficient, score, config.confidence)
        correlations.append(Rq2Correlation(method, fold, region, len(score), r, low, high, p))
  return correlations, skipped


def summarize(correlations: Sequence[Rq2Correlation]) -> list[Rq2Summary]:
  """Mean and standard deviation (ddof 1; NaN for one fold) of r over folds."""
  keys = list(dict.fromkeys((c.method, c.region) for c in correlations))
  summary = []
  for method, region in keys:
    r = np.array([c.r for c in correlations if (c.method, c.region) == (method, region)])
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)
      std = float(np.std(r, ddof=1)) if len(r) > 1 else float('nan')
    summary.append(Rq2Summary(method, region, len(r), float(r.mean()), std))
  return summary
