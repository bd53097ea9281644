"""Outputs whole or absent: a command claims every file it owns before it writes any.

Finished work is recognised by its own files (a table by ``TABLE.parquet``,
``TABLE.json`` or ``TABLE.maps.npz``, not by its ``.shards`` folder) and is
replaced only with ``--overwrite``; replacing removes every file the command
owns there, so nothing of an earlier run survives beside the new files. An
output folder that cannot take a file is found before any work.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Mapping, Sequence

from gestaltxai.artifacts import coefficient_table
from gestaltxai.files import differences, json_default

#: Bytes written to probe an output folder: a read-only folder, a full disk or a tight
#: file-size limit shows here (a disk that fills during the run shows at the next save).
PROBE_BYTES = 1 << 16


def remove(paths: Sequence[pathlib.Path]) -> None:
  for path in paths:
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
      path.unlink()


def claim(paths: Sequence[pathlib.Path], overwrite: bool, what: str) -> None:
  """Refuses if any of ``paths`` exists, unless ``overwrite``: then removes them all."""
  existing = [pathlib.Path(p) for p in paths if pathlib.Path(p).exists()]
  if existing and not overwrite:
    raise FileExistsError(f'{existing[0]} holds {what}: give --overwrite to replace it, or '
                          'choose another --out')
  remove(existing)


def check_writable(directory: pathlib.Path) -> None:
  """Creates ``directory`` and writes a probe file there: refuses a read-only or full one."""
  directory = pathlib.Path(directory)
  probe = directory / f'.gestaltxai-probe-{os.getpid()}'
  try:
    directory.mkdir(parents=True, exist_ok=True)
    with open(probe, 'wb') as f:
      f.write(b'\0' * PROBE_BYTES)
      f.flush()
      os.fsync(f.fileno())
  except OSError as err:
    raise OSError(f'cannot write to {directory} ({err.strerror or err}): make room or choose '
                  'another --out') from None
  finally:
    try:
      probe.unlink(missing_ok=True)
    except OSError:
      pass


def claim_table(table: pathlib.Path, shards: pathlib.Path, arguments: Mapping,
                overwrite: bool) -> None:
  """Lets an extraction start, resume (same arguments in ``shards``), or replace a table.

  A table whose shards are gone is finished work: refused unless ``overwrite``.
  A shard folder of other arguments is refused by the shard store, which names them.
  """
  from gestaltxai.extract.store import MANIFEST  # pylint: disable=import-outside-toplevel
  manifest = pathlib.Path(shards) / MANIFEST
  if manifest.is_file():
    try:
      saved = json.loads(manifest.read_text())
    except ValueError as err:
      raise ValueError(f'{manifest}: not readable JSON ({err}); replace the run with '
                       '--overwrite') from None
    current = json.loads(json.dumps(dict(arguments), default=json_default))
    if not differences(saved.get('arguments', {}), current) or not overwrite:
      return
  shards = pathlib.Path(shards)
  started = shards.is_dir() and any(shards.iterdir())
  owned = [*coefficient_table.finished_files(table), *([shards] if started else [])]
  claim(owned, overwrite, 'a finished coefficient table (its provenance says what made it)')
