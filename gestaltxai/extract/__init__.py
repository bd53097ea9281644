"""Extraction at scale: dataset x methods -> a region coefficient table.

* :func:`extraction` checks every input and returns an :class:`Extraction`,
  whose :meth:`~Extraction.run` computes this process's shards and
  :meth:`~Extraction.assemble` writes the table (Parquet or CSV), its maps
  (``TABLE.maps.npz``) and its provenance (``TABLE.json``).
* :mod:`gestaltxai.extract.batches`: host batches (region maps, problems, keys).
* :mod:`gestaltxai.extract.step`: the compiled device steps (coefficients on
  the device; only (B, regions) leave it).
* :mod:`gestaltxai.extract.rows`: a shard's rows and map sums from fetched arrays.
* :mod:`gestaltxai.extract.store`: shards, the manifest, atomic writes.
* :mod:`gestaltxai.extract.spec`: methods with options, region sets, columns.
"""

from gestaltxai.artifacts.coefficient_table import (FORMATS, NO_FOLD, NORMALIZED_SUFFIX,
                                                    maps_path, provenance_path)
from gestaltxai.artifacts.coefficient_table import RAW_SUFFIX as COEFFICIENT_SUFFIX
from gestaltxai.extract.run import (EXAMPLES, REFERENCE_METHODS, Extraction, extraction,
                                    process_split)
from gestaltxai.extract.spec import (REGION_SETS, RQ2_REGIONS, MethodSpec, columns, method_specs,
                                     parse_method_options)
from gestaltxai.extract.step import DeviceSteps, method_step, predict_step
from gestaltxai.extract.store import Shard, ShardStore, plan_shards
from gestaltxai.train.fold_models import ModelSource

__all__ = ['COEFFICIENT_SUFFIX', 'DeviceSteps', 'EXAMPLES', 'Extraction', 'FORMATS',
           'MethodSpec', 'ModelSource', 'NORMALIZED_SUFFIX', 'NO_FOLD', 'REFERENCE_METHODS',
           'REGION_SETS', 'RQ2_REGIONS', 'Shard', 'ShardStore', 'columns', 'extraction',
           'maps_path', 'method_specs', 'method_step', 'parse_method_options', 'plan_shards',
           'predict_step', 'process_split', 'provenance_path']
