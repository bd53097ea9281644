"""The files one stage writes and another reads: each module owns one file's names, keys and
layout, with its writer and its reader side by side (leaf modules: they import nothing of the
stages, so every stage can import them).

* :mod:`~gestaltxai.artifacts.run_folder`: ``RUNS/fold-K/metrics.json``, ``RUNS/summary.json``;
* :mod:`~gestaltxai.artifacts.coefficient_table`: ``TABLE.parquet|csv``, its provenance
  ``TABLE.json`` and its maps ``TABLE.maps.npz``.

The dataset's ``metadata.json`` belongs to :mod:`gestaltxai.data`, the statistics'
outputs to :mod:`gestaltxai.stats.results`, the demo's ``summary.json`` to
:mod:`gestaltxai.demo`.
"""
