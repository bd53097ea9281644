"""Clinicians' HPO annotations in the reference's per-syndrome CSV layout.

One CSV per syndrome: ``image_num, image_name``, one column per HPO term and
a free-text ``Other``; a cell holds how many of three clinicians annotated
the term (``1X``, ``2X``, ``3X``) or is empty. A facial region's score per
image is the sum over its terms of 1X = 1/3, 2X = 2/3, 3X = 1 (the grouping of
terms into regions is package data, ``hpo_regions.json``, from the
reference's RQ2 notebook). Counts are summed as integers (thirds) so equal
scores stay exactly equal, which matters for rank ties.

``scale='reference'`` sums as the notebook instead: float32 cells of 0.333,
0.666 and 1.0, so 1X + 2X (0.999) ranks below 3X and ties among equal
thirds can differ; use it to reproduce the paper's numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import io
import json
import os
import pathlib

import numpy as np

_GROUPING = pathlib.Path(__file__).parent / 'hpo_regions.json'
#: Cell text -> clinicians (of three) who annotated the term.
CLINICIANS = {'': 0, '1X': 1, '2X': 2, '3X': 3}
RATERS = 3
#: The RQ2 notebook's value of a cell annotated by 0..3 clinicians, stored as float32.
REFERENCE_SHARES = np.array([0.0, 0.333, 0.666, 1.0], np.float32)
#: ``--hpo-scale``: exact thirds, or the notebook's float32 values.
SCALES = ('exact', 'reference')


@functools.lru_cache(maxsize=None)
def _grouping_file() -> dict:
  with open(_GROUPING, encoding='utf-8') as f:
    return json.load(f)


def hpo_region_grouping() -> dict[str, tuple[str, ...]]:
  """{region: HPO terms} of the reference's RQ2 notebook (overall, hair, eye, ... forehead)."""
  return {region: tuple(terms) for region, terms in _grouping_file()['regions'].items()}


def image_key(name: str) -> str:
  """An image name without its extension: the notebook matched names with '.png' dropped."""
  return os.path.splitext(name.strip())[0]


@dataclasses.dataclass(frozen=True)
class HpoAnnotations:
  """Annotated images and, per HPO term, how many clinicians annotated it."""
  images: tuple[str, ...]
  sources: tuple[str, ...]             # the CSV file of each image
  terms: tuple[str, ...]
  clinicians: np.ndarray               # (images, terms) int, 0..3
  unknown_terms: tuple[tuple[str, str], ...]  # (file, column) not in the grouping, not counted
  grouping: dict[str, tuple[str, ...]]         # region -> its HPO terms

  def region_scores(self, scale: str = 'exact') -> dict[str, np.ndarray]:
    """{region: (images,) float64 sum of its terms' shares of clinicians}.

    ``scale``: 'exact' (integer counts / 3) or 'reference' (the notebook's float32
    0.333 / 0.666 / 1.0 summed in float32, term by term in the grouping's order).
    """
    if scale not in SCALES:
      raise ValueError(f'the HPO scale must be one of {SCALES}, got {scale!r}')
    scores = {}
    for region, terms in self.grouping.items():
      columns = [self.terms.index(t) for t in terms if t in self.terms]
      if scale == 'exact':
        scores[region] = self.clinicians[:, columns].sum(axis=1) / RATERS
        continue
      # The notebook's np.sum over a float32 row; its term order (a Python set's) cannot be
      # reproduced, ours is sorted: sums of the same cells can differ in the last float32 bit.
      shares = np.ascontiguousarray(REFERENCE_SHARES[self.clinicians[:, columns]])
      scores[region] = shares.sum(axis=1, dtype=np.float32).astype(np.float64)
    return scores


#: How close a column name must be to an HPO term of the grouping to count as its misspelling.
MISSPELLING_CUTOFF = 0.85


def _check_spelling(path: pathlib.Path, columns, known) -> None:
  """A column that is nearly a known HPO term is a typo (it would silently count nothing)."""
  for column in columns:
    close = difflib.get_close_matches(column, sorted(known), n=1, cutoff=MISSPELLING_CUTOFF)
    if close:
      raise ValueError(f'{path}: column {column!r} is not an HPO term of the grouping; did you '
                       f'mean {close[0]!r}? Rename the column')


def read_hpo(directory: str | os.PathLike, grouping=None) -> HpoAnnotations:
  """Reads every ``*.csv`` of ``directory`` in the reference's layout.

  ``grouping`` ({region: terms}) defaults to :func:`hpo_region_grouping`.

  Columns named in the grouping are HPO terms; ``image_num``, ``image_name``
  and ``Other`` are ignored as the notebook does; any other column is kept
  out of the scores and reported in ``unknown_terms``.

  Raises:
    FileNotFoundError: no directory or no CSV in it.
    ValueError: a file without ``image_name``, an image in two files, or a
      cell other than empty/1X/2X/3X (naming file, line and column).
  """
  directory = pathlib.Path(directory)
  paths = sorted(directory.glob('*.csv')) if directory.is_dir() else []
  if not paths:
    raise FileNotFoundError(f'no HPO annotation CSV files in {directory}')
  grouping = hpo_region_grouping() if grouping is None else grouping
  known = {term for terms in grouping.values() for term in terms}
  ignored = set(_grouping_file()['ignored_columns'])
  terms = sorted(known)
  images, sources, rows, unknown, seen = [], [], [], [], {}
  for path in paths:
    try:
      text = path.read_text(encoding='utf-8-sig')
    except UnicodeDecodeError as err:
      raise ValueError(f'{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it '
                       'as UTF-8') from None
    with io.StringIO(text, newline='') as f:
      reader = csv.DictReader(f)
      header = [name.strip() for name in reader.fieldnames or ()]
      reader.fieldnames = header
      if 'image_name' not in header:
        raise ValueError(f'{path}: no image_name column (has {header})')
      unknown += [(path.name, name) for name in header if name not in known | ignored]
      _check_spelling(path, [name for name in header if name not in known | ignored], known)
      columns = [name for name in header if name in known]
      for line, record in enumerate(reader, 2):
        name = record['image_name'].strip()
        if image_key(name) in seen:
          raise ValueError(f'{path}:{line}: {name} is also annotated in {seen[image_key(name)]}')
        seen[image_key(name)] = path.name
        counts = np.zeros(len(terms), np.int64)
        for column in columns:
          cell = (record[column] or '').strip().upper()
          if cell not in CLINICIANS:
            raise ValueError(f'{path}:{line}: column {column!r} holds {record[column]!r}; '
                             f'expected empty, 1X, 2X or 3X')
          counts[terms.index(column)] = CLINICIANS[cell]
        images.append(name)
        sources.append(path.name)
        rows.append(counts)
  clinicians = np.stack(rows) if rows else np.zeros((0, len(terms)), np.int64)
  return HpoAnnotations(tuple(images), tuple(sources), tuple(terms), clinicians, tuple(unknown),
                        dict(grouping))
