"""Files that are either whole or absent, and what differs between two records of arguments."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable

import numpy as np


def atomic_write(path: pathlib.Path, write: Callable[[pathlib.Path], Any]) -> None:
  """Calls ``write(temporary_path)`` beside ``path``, then renames it into place.

  A reader (or a resumed run) never sees half a file: a crash leaves the old
  file, or none, and no temporary behind.
  """
  path = pathlib.Path(path)
  temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    write(temporary)
    os.replace(temporary, path)
  finally:
    temporary.unlink(missing_ok=True)


def write_json(path: pathlib.Path, value: Any) -> None:
  """``value`` as indented JSON, atomically; NumPy scalars and arrays become numbers and lists."""
  atomic_write(path, lambda p: p.write_text(json.dumps(value, indent=1, default=json_default)))


def read_json(path: pathlib.Path, what: str) -> Any:
  """A JSON file; a corrupt one is a ValueError naming the file (and what it is)."""
  try:
    return json.loads(pathlib.Path(path).read_text(encoding='utf-8'))
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    raise ValueError(f'{path}: the {what} is not readable JSON ({err}); rewrite it with the '
                     'command that made it') from None


def save_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  """``np.savez`` to exactly ``path`` (given a name, NumPy would append ``.npz``)."""
  with open(path, 'wb') as f:
    np.savez(f, **arrays)


def json_default(value):
  if isinstance(value, (np.integer, np.floating, np.bool_)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'cannot write {type(value).__name__} to JSON')


def differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = '') -> list[str]:
  """'field: saved -> current' for every leaf that differs between two nested dicts."""
  out = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key), current.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out += differences(a, b, f'{prefix}{key}.')
    elif a != b:
      out.append(f'{prefix}{key}: {a!r} -> {b!r}')
  return out
