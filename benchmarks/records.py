"""Benchmark records: one JSON object per line, the source of the tables in RESULTS.md.

Every benchmark appends records with :func:`write_record` to a JSON-lines file
(``benchmarks/results.jsonl`` by default). Each record carries where, when and
how it was measured, so a table can be regenerated and compared later:

=================  ==========================================================
field              meaning
=================  ==========================================================
benchmark          'method_cost', 'train_step' or 'extract'
name               the method, training configuration or extraction run
device             e.g. 'cpu: Intel Xeon ... (2 cores)' or 'gpu: NVIDIA H100'
device_count       devices the measurement used
dtype              compute dtype, 'float32' or 'bfloat16'
batch_size         images per call
images_per_s       the headline figure
ms_per_image       1000 / images_per_s
date               ISO date of the run
versions           {'python', 'jax', 'jaxlib', 'flax', and peers such as 'torch'}
command            the command line that produced the record
=================  ==========================================================

Benchmarks add fields of their own (passes, FLOPs, temporary bytes, a peer's
images/s and the ratio to it); readers ignore fields they do not know.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import sys
from typing import Any, Optional

from gestaltxai import provenance
from gestaltxai.artifacts import benchmark_records

DEFAULT_PATH = pathlib.Path(__file__).resolve().parent / 'results.jsonl'
_VERSIONED = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'torch', 'captum', 'zennit')


def versions() -> dict[str, str]:
  """Python and the installed versions of the packages a measurement depends on."""
  return provenance.software_versions(_VERSIONED)


def device_description() -> tuple[str, int]:
  """('<platform>: <device kind> (<cores> cores)', device count) of JAX's default backend."""
  import jax  # pylint: disable=import-outside-toplevel
  devices = jax.devices()
  kind = devices[0].device_kind
  if devices[0].platform == 'cpu':
    kind = f'{_cpu_model()} ({os.cpu_count()} cores)'
  return f'{devices[0].platform}: {kind}', len(devices)


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown cpu'


def make_record(benchmark: str, name: str, *, images_per_s: float, batch_size: int,
                dtype: str, **fields: Any) -> dict[str, Any]:
  """A record with the common fields filled in; ``fields`` add the benchmark's own."""
  device, count = device_description()
  record = {'benchmark': benchmark, 'name': name, 'device': device,
            'device_count': fields.pop('device_count', count), 'dtype': dtype,
            'batch_size': batch_size, 'images_per_s': images_per_s,
            'ms_per_image': 1000.0 / images_per_s if images_per_s else float('nan'),
            'date': datetime.date.today().isoformat(), 'versions': versions(),
            'command': ' '.join([os.path.basename(sys.orig_argv[0]), *sys.orig_argv[1:]])}
  record.update(fields)
  return record


def write_record(record: dict[str, Any], path: Optional[os.PathLike] = None) -> None:
  """Appends one record as a JSON line (NaN written as null)."""
  benchmark_records.append_record(path or DEFAULT_PATH, record)


def read_records(path: Optional[os.PathLike] = None) -> list[dict[str, Any]]:
  """The records of a JSON-lines file, oldest first; a malformed line names its number."""
  return benchmark_records.read_records(path or DEFAULT_PATH)