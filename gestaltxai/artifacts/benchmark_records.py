"""Benchmark records: one JSON object per line (``benchmarks/results.jsonl``), appended by the
benchmarks and read by their tables and the report. The fields are listed in
``benchmarks/records.py``, which makes them."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
  """Appends one record as a JSON line (NaN written as null)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps(clean, sort_keys=True) + '\n')


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of a JSON-lines file, oldest first; a malformed line names its number."""
  records = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError as err:
          raise ValueError(f'{path}:{number}: not a JSON record ({err})') from err
  return records
