"""Shards on disk: the unit of work, of resumption and of splitting over processes.

``TABLE.shards/`` beside the output holds:

* ``manifest.json``: the run's arguments and its shards, written once; a
  later run into the same output must bring the same arguments;
* per finished shard ``<id>.parquet`` (its rows), ``<id>.npz`` (its per-class
  sums of relevance maps and of face images) and ``<id>.json`` (images,
  seconds, device). Each file is written under a temporary name and renamed,
  the parquet last: a shard whose parquet exists is complete.

When every shard is there, :meth:`ShardStore.assemble` writes the table (one
Parquet row group per shard, or CSV) and its maps file, again atomically.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gestaltxai.artifacts.coefficient_table import FORMATS
from gestaltxai.files import atomic_write, differences, json_default, save_npz, write_json

MANIFEST = 'manifest.json'


@dataclasses.dataclass(frozen=True)
class Shard:
  """Consecutive test images of one fold: ``indices`` into the dataset."""

  id: str
  fold: int
  indices: tuple[int, ...]


def plan_shards(fold_indices: dict[int, Sequence[int]], shard_size: int) -> list[Shard]:
  """Each fold's images (in order) cut into shards of ``shard_size``, folds in order."""
  if shard_size < 1:
    raise ValueError(f'the shard size must be at least 1, got {shard_size}')
  shards = []
  for fold in sorted(fold_indices):
    indices = [int(i) for i in fold_indices[fold]]
    for number, start in enumerate(range(0, len(indices), shard_size)):
      shards.append(Shard(f'fold-{fold}-{number:05d}', fold,
                          tuple(indices[start:start + shard_size])))
  return shards


class ShardStore:
  """The shard folder of one output table."""

  def __init__(self, table: pathlib.Path):
    self.table = pathlib.Path(table)
    self.directory = self.table.with_name(self.table.name + '.shards')

  def open(self, arguments: dict, shards: Sequence[Shard]) -> None:
    """Starts a run, or continues one with the same arguments; refuses other arguments."""
    manifest = {'arguments': _plain(arguments), 'shards': [s.id for s in shards]}
    path = self.directory / MANIFEST
    if path.exists():
      saved = json.loads(path.read_text())
      changed = differences(saved['arguments'], manifest['arguments'])
      if changed:
        raise ValueError(f'{self.table} was started with other arguments ('
                         + '; '.join(changed[:6]) + '): use another --out, or give '
                         '--overwrite to start over')
      if saved['shards'] != manifest['shards']:
        raise ValueError(f'{self.directory}: the shards differ from this run\'s; give '
                         '--overwrite to start over')
      return
    self.directory.mkdir(parents=True, exist_ok=True)
    # Concurrent processes may all write it; they write the same bytes.
    write_json(path, manifest)

  def done(self, shard: Shard) -> bool:
    return (self.directory / f'{shard.id}.parquet').exists()

  def missing(self, shards: Iterable[Shard]) -> list[Shard]:
    return [s for s in shards if not self.done(s)]

  def write(self, shard: Shard, table: pa.Table, maps: dict[str, np.ndarray],
            info: dict) -> None:
    """Stores a finished shard; the parquet, renamed last, marks it complete."""
    atomic_write(self.directory / f'{shard.id}.npz', lambda p: save_npz(p, maps))
    write_json(self.directory / f'{shard.id}.json', info)
    atomic_write(self.directory / f'{shard.id}.parquet',
                 lambda p: pq.write_table(table, p))

  def info(self, shard: Shard) -> dict:
    path = self.directory / f'{shard.id}.json'
    try:
      return json.loads(path.read_text())
    except ValueError as err:
      raise ValueError(_corrupt(path, err)) from None

  def maps(self, shard: Shard) -> dict[str, np.ndarray]:
    path = self.directory / f'{shard.id}.npz'
    try:
      with np.load(path, allow_pickle=False) as archive:
        return dict(archive)
    except (OSError, ValueError) as err:
      raise ValueError(_corrupt(path, err)) from None

  def assemble(self, shards: Sequence[Shard], out_format: str) -> int:
    """Writes the table from every shard, in shard order; returns the number of rows."""
    if out_format not in FORMATS:
      raise ValueError(f'format must be one of {FORMATS}, got {out_format!r}')
    tables = [_read_shard(self.directory / f'{s.id}.parquet') for s in shards]
    rows = sum(t.num_rows for t in tables)

    def write(path):
      if out_format == 'csv':
        pa_csv.write_csv(pa.concat_tables(tables), path)
        return
      with pq.ParquetWriter(path, tables[0].schema) as writer:
        for table in tables:
          writer.write_table(table)

    atomic_write(self.table, write)
    return rows


def _corrupt(path: pathlib.Path, err: Exception) -> str:
  return (f'{path}: a damaged shard file ({err}); delete {path.with_suffix(".parquet")} and run '
          'the same command again to recompute the shard')


def _read_shard(path: pathlib.Path) -> pa.Table:
  try:
    return pq.read_table(path)
  except (pa.ArrowInvalid, OSError) as err:
    raise ValueError(_corrupt(path, err)) from None


def _plain(value):
  """JSON round trip: tuples become lists, so saved and current arguments compare equal."""
  return json.loads(json.dumps(value, default=json_default))
