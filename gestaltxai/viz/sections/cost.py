"""The report's "Method cost" section: the benchmark records and each method's images per
second."""

from __future__ import annotations

from gestaltxai.viz import blocks, inputs, plots
from gestaltxai.viz.blocks import Section

#: The record fields shown, in order (``benchmarks/records.py`` makes them).
COLUMNS = ('benchmark', 'name', 'device', 'dtype', 'batch_size', 'images_per_s',
           'ms_per_image', 'passes', 'ratio', 'date')


def section(study: inputs.Study) -> Section:
  bench = study.inputs.bench
  result = Section('cost', 'Method cost')
  if bench is None:
    result.blocks.append(blocks.note('No benchmark records given (--bench FILE, JSON lines from '
                                     'benchmarks/).'))
    return result
  try:
    records = inputs.read_records(bench)
  except (OSError, ValueError) as err:
    study.warnings.append(f'--bench: {err}')
    result.blocks.append(blocks.note(f'Benchmark records could not be read: {err}'))
    return result
  rows = [[str(r.get(c, '')) if isinstance(r.get(c), (dict, list)) else r.get(c, '')
           for c in COLUMNS] for r in records]
  result.blocks.append(blocks.table(COLUMNS, rows, f'{len(records)} records from {bench}'))
  try:
    result.blocks.append(blocks.figure(plots.method_cost(records), 'fig-method-cost',
                                       'Images per second of each method (latest record per '
                                       'method, device, dtype and batch size).'))
  except ValueError as err:
    result.blocks.append(blocks.note(str(err)))
  return result
