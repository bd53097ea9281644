"""A shard's outputs from its batches' fetched arrays: table rows built column-wise from (B, R)
coefficients, each row's status, and the per-class sums of maps and faces the maps file
averages."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa

from gestaltxai.artifacts import coefficient_table as table_files
from gestaltxai.extract.batches import faces_rgb
from gestaltxai.roles import EVERY_ROLE

NON_FINITE_RELEVANCE = 'non-finite relevance'
EMPTY_REGION = 'empty region'
#: Keys of a shard's maps partials (summed over shards at assembly; the examples' arrays use
#: the maps file's own keys).
CLASS_SUMS_PREFIX, CLASS_COUNTS, IMAGE_SUMS, IMAGE_COUNTS = (
    'class_sums/', 'class_counts', 'image_sums', 'image_counts')
#: The shard partials' list of methods (not summed).
METHODS = 'methods'


@dataclasses.dataclass(frozen=True)
class RowLayout:
  """What a row holds: the region columns of each coefficient kind and the classes."""

  regions: Sequence[str]
  rq2_regions: Sequence[str]
  classes: Sequence[str]

  @property
  def columns(self) -> list[str]:
    return table_files.columns(self.regions, self.rq2_regions, self.classes)


def statuses(problems: np.ndarray, finite: np.ndarray, coefficients: np.ndarray,
             regions: Sequence[str]) -> np.ndarray:
  """(N,) str: the row's problem, else 'non-finite relevance', else the empty regions (NaN
  coefficients, ``coefficients`` (N, R)), else 'ok'."""
  empty = np.isnan(coefficients)
  out = np.full(len(problems), table_files.OK, dtype=object)
  for row in np.flatnonzero(empty.any(axis=1)):  # rare: a region the face does not show
    out[row] = f'{EMPTY_REGION}: ' + ', '.join(np.asarray(regions)[empty[row]])
  out[~finite] = NON_FINITE_RELEVANCE
  has_problem = problems != ''
  out[has_problem] = problems[has_problem]
  return out


def batch_rows(layout: RowLayout, fold: int, method: str, batch: Mapping,
               probabilities: np.ndarray, predicted: np.ndarray, result: Mapping,
               row_roles: Mapping[int, tuple[str, str]]) -> tuple[dict[str, pa.Array], int]:
  """({column: values} of the batch's valid rows for one method, their problem rows).

  Args:
    batch: the host batch's :data:`~gestaltxai.extract.batches.ROW_FIELDS`.
    probabilities: (B, K) float32; predicted: (B,) int32 class indices.
    result: the method's fetched step: 'coefficients' (B, R + 1) and 'normalized'
      (B, R2 + 1) float32, column 0 the background; 'finite' (B,) bool.
    row_roles: {record index: (split, role)}; an image missing here has split '' and
      role 'all'.
  """
  rows = np.flatnonzero(batch['valid'])
  problems = np.array([batch['problem'][r] for r in rows], dtype=object)
  usable = problems == ''
  finite = np.asarray(result['finite'])[rows].astype(bool)
  explained = (usable & finite)[:, None]
  coefficients = np.where(explained, result['coefficients'][rows, 1:], np.nan)
  normalized = np.where(explained, result['normalized'][rows, 1:], np.nan)
  status = statuses(problems, finite, np.asarray(result['coefficients'])[rows, 1:],
                    layout.regions)
  placed = [row_roles.get(int(i), ('', EVERY_ROLE)) for i in batch['index'][rows]]
  classes = np.asarray(layout.classes, dtype=object)
  predicted_names = np.where(usable, classes[np.asarray(predicted)[rows]], None)
  probabilities = np.where(usable[:, None], np.asarray(probabilities, np.float64)[rows], np.nan)
  names = [str(batch['name'][r]) for r in rows]
  columns = {'image_name': pa.array(names, pa.string()),
             'fold': pa.array(np.full(len(rows), fold, np.int64)),
             'split': pa.array([s for s, _ in placed], pa.string()),
             'role': pa.array([r for _, r in placed], pa.string()),
             'method': pa.array([method] * len(rows), pa.string())}
  for regions, kind, values in ((layout.regions, table_files.RAW_SUFFIX, coefficients),
                                (layout.rq2_regions, table_files.NORMALIZED_SUFFIX, normalized)):
    for r, region in enumerate(regions):
      columns[f'{region}{kind}'] = pa.array(values[:, r].astype(np.float64))
  columns['label'] = pa.array(classes[np.asarray(batch['label'])[rows]].tolist(), pa.string())
  columns['predicted'] = pa.array(predicted_names.tolist(), pa.string())
  for c, name in enumerate(layout.classes):
    columns[f'{table_files.PROBABILITY_PREFIX}{name}'] = pa.array(probabilities[:, c])
  columns['status'] = pa.array(status.tolist(), pa.string())
  return columns, int((status != table_files.OK).sum())


def shard_outputs(layout: RowLayout, fold: int, methods: Sequence[str],
                  collected: Sequence[Mapping], row_roles: Mapping[int, tuple[str, str]],
                  examples: Optional[Mapping[str, np.ndarray]] = None
                  ) -> tuple[pa.Table, dict[str, np.ndarray], int]:
  """(the shard's rows, its maps partials, its count of problem rows).

  Args:
    collected: per batch {'batch', 'probabilities', 'predicted', 'results': {method:
      fetched step}, 'mean_bgr'}.
    examples: the maps file's example arrays, kept by the run's first shard only.
  """
  num_classes = len(layout.classes)
  parts: dict[str, list[pa.Array]] = {name: [] for name in layout.columns}
  class_sums: dict[str, np.ndarray] = {}
  class_counts = np.zeros((len(methods), num_classes), np.int64)
  image_sums, image_counts = None, np.zeros(num_classes, np.int64)
  problems = 0
  for part in collected:
    batch = part['batch']
    labels = np.asarray(batch['label'])
    usable = np.asarray(batch['usable'], bool)
    rgb = faces_rgb(batch['image'][usable], part['mean_bgr'])
    if image_sums is None:
      image_sums = np.zeros((num_classes, *batch['image'].shape[1:]), np.float64)
    np.add.at(image_sums, labels[usable], rgb)
    image_counts += np.bincount(labels[usable], minlength=num_classes)
    for m, method in enumerate(methods):
      result = part['results'][method]
      if 'class_sums' in result:
        key = f'{CLASS_SUMS_PREFIX}{method}'
        class_sums[key] = class_sums.get(key, 0.0) + result['class_sums'].astype(np.float64)
      columns, part_problems = batch_rows(layout, fold, method, batch, part['probabilities'],
                                          part['predicted'], result, row_roles)
      for name, values in columns.items():
        parts[name].append(values)
      problems += part_problems
      counted = usable & np.asarray(result['finite'], bool)  # as the device's class sums
      class_counts[m] += np.bincount(labels[counted], minlength=num_classes)
  table = pa.table({name: pa.concat_arrays(values) if values else pa.array([], pa.null())
                    for name, values in parts.items()})
  maps = {**class_sums, CLASS_COUNTS: class_counts, METHODS: np.array(list(methods)),
          **(examples or {})}
  if image_sums is not None:
    maps[IMAGE_SUMS], maps[IMAGE_COUNTS] = image_sums, image_counts
  return table, maps, problems
