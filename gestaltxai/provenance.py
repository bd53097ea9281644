"""Provenance as a chain: what each artefact was made from, written and checked side by side
(one module on purpose, each writer beside its checker, so longer than ~400 lines).

Every artefact records a content fingerprint of its inputs, and every stage
checks the chain of its inputs before any work:

==============  ==================================================  ==========================
artefact        records                                             where
==============  ==================================================  ==========================
dataset         its content (:func:`dataset_fingerprint`)           computed from its records
fold run        the dataset's, its photos', its fold's split's,     checkpoint metadata and
                and its own (config + dataset + split + fold)       ``metrics.json``:
                                                                    ``provenance``
table           the dataset's and each fold run's                   ``TABLE.json``: ``provenance``
maps file       the table's                                         ``TABLE.maps.npz``:
                                                                    ``provenance`` (JSON text)
stats folder    the table's (and the HPO files')                    ``DIR/provenance.json``
report          the whole chain, printed                            its provenance section
==============  ==================================================  ==========================

A fingerprint is a sha256 of content, never of paths: a moved folder keeps
its fingerprint, a rebuilt or re-split one does not. A check that fails
names both sides and the fix.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import pathlib
import platform
from typing import Any, Iterable, Mapping, Optional, Sequence

from gestaltxai.files import read_json
from gestaltxai.artifacts import coefficient_table, run_folder

#: The key under which artefacts keep their provenance record.
KEY = 'provenance'
#: The stats folder's record of what it was made from.
STATS_FILE = 'provenance.json'
#: Characters of a fingerprint shown in messages.
SHOWN = 12
#: The orbax item of a checkpoint that holds its JSON metadata.
_CHECKPOINT_METADATA = pathlib.Path('metadata') / 'metadata'


#: The packages whose versions an output records (benchmarks add their peers).
RECORDED_PACKAGES = ('gestaltxai', 'jax', 'jaxlib', 'flax', 'numpy', 'grain', 'pyarrow')


def software_versions(packages: Sequence[str] = RECORDED_PACKAGES) -> dict[str, str]:
  """{'python': version, package: installed version} of the installed ``packages``."""
  found = {'python': platform.python_version()}
  for package in packages:
    try:
      found[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def iso_time(seconds: float) -> str:
  """A POSIX time as ISO 8601 in UTC, to the second."""
  return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
      timespec='seconds')


def digest(value: Any) -> str:
  """sha256 of ``value`` as canonical JSON (sorted keys)."""
  text = json.dumps(value, sort_keys=True, separators=(',', ':'), default=_plain)
  return hashlib.sha256(text.encode()).hexdigest()


def _plain(value):
  if hasattr(value, 'tolist'):
    return value.tolist()
  return str(value)


def file_fingerprint(path: pathlib.Path) -> str:
  """sha256 of a file's bytes, or of a folder's file names and bytes."""
  path = pathlib.Path(path)
  found = hashlib.sha256()
  files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
  for file in files:
    if path.is_dir():
      found.update(str(file.relative_to(path)).encode() + b'\0')
    with open(file, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        found.update(block)
  return found.hexdigest()


def short(fingerprint: Optional[str]) -> str:
  return fingerprint[:SHOWN] if fingerprint else 'none recorded'


# Datasets.

def check_dataset_files(directory: pathlib.Path) -> None:
  """Refuses a dataset whose JSON files are damaged, naming the file."""
  from gestaltxai.data.schema import DATASET_JSON_FILES  # pylint: disable=import-outside-toplevel
  for name in DATASET_JSON_FILES:
    path = pathlib.Path(directory) / name
    if path.is_file():
      try:
        json.loads(path.read_text(encoding='utf-8'))
      except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: the dataset\'s {name} is not readable JSON ({err}); '
                         'rebuild the dataset with `gestaltxai prepare ... --overwrite`') from None


def _split_table(dataset) -> tuple[list[str], list[int], list[list[int]]]:
  """(names, labels, per fold the split of each image) of a :class:`FaceDataset`."""
  from gestaltxai.data.schema import SPLITS  # pylint: disable=import-outside-toplevel
  names = [str(n) for n in dataset.names]
  splits = [[0] * len(names) for _ in range(dataset.num_folds)]
  for fold in range(1, dataset.num_folds + 1):
    for code, split in enumerate(SPLITS):
      for index in dataset.indices(fold, split):
        splits[fold - 1][int(index)] = code
  return names, [int(v) for v in dataset.labels], splits


def _build_identity(dataset) -> dict:
  # pylint: disable-next=import-outside-toplevel
  from gestaltxai.data.schema import recorded_identity
  return recorded_identity(dataset.metadata) or {}  # where the inputs were is not what they are


def dataset_record(dataset) -> dict:
  """{'dataset', 'photos', 'path', 'num_folds'}: the dataset's content fingerprint, and
  that of its photos and labels alone (the same photos split otherwise share it)."""
  from gestaltxai.data.schema import BuildKey  # pylint: disable=import-outside-toplevel
  names, labels, splits = _split_table(dataset)
  build = _build_identity(dataset)
  photos = digest({'names': names, 'labels': labels, 'classes': list(dataset.classes),
                   'images': (build.get(BuildKey.INPUTS) or {}).get(BuildKey.IMAGES)})
  return {'dataset': digest({'build': build, 'photos': photos, 'splits': splits}),
          'photos': photos, 'path': str(dataset.directory), 'num_folds': dataset.num_folds}


def dataset_fingerprint(dataset) -> str:
  """sha256 of a dataset's content: its build record, images, labels and folds."""
  return dataset_record(dataset)['dataset']


def split_fingerprint(dataset, fold: int) -> str:
  """sha256 of which image is in which split of ``fold``."""
  names, labels, splits = _split_table(dataset)
  return digest({'names': names, 'labels': labels, 'split': splits[fold - 1]})


# Fold runs.


def run_record(dataset, fold: int, config: Mapping[str, Any]) -> dict:
  """What a fold run is made from; ``run`` fingerprints all of it with the config."""
  record = {**dataset_record(dataset), 'fold': fold, 'split': split_fingerprint(dataset, fold)}
  record['run'] = digest({'config': dict(config), 'dataset': record['dataset'],
                          'split': record['split'], 'fold': fold})
  return record


def read_checkpoint_metadata(epoch_dir: pathlib.Path) -> dict:
  """The JSON metadata of one saved epoch (``RUNS/fold-K/checkpoints/<epoch>``)."""
  path = pathlib.Path(epoch_dir) / _CHECKPOINT_METADATA
  if not path.is_file():
    raise FileNotFoundError(f'{epoch_dir}: no checkpoint metadata ({path} is missing); '
                            'retrain the fold with `gestaltxai train --overwrite`')
  return read_json(path, 'checkpoint metadata')


def _recorded_run(metadata: Mapping, where: pathlib.Path) -> dict:
  record = metadata.get(KEY)
  if not isinstance(record, dict) or 'dataset' not in record:
    raise ValueError(f'{where} records no dataset fingerprint (made by an earlier gestaltxai), '
                     'so what it was trained on cannot be checked: retrain it with '
                     '`gestaltxai train --overwrite`, or use another RUNS folder')
  return record


def _dataset_mismatch(where: str, recorded: Mapping, current: Mapping, given: str) -> str:
  """'<where> was made from dataset A (path), <given> is dataset B (path)', and why."""
  text = (f'{where} was made from dataset {short(recorded.get("dataset"))} '
          f'({recorded.get("path", "?")}); {given} is dataset {short(current["dataset"])} '
          f'({current["path"]})')
  if recorded.get('photos') == current['photos']:
    text += (': the same photos split otherwise, so images it trained on would count as '
             'held-out images (leakage)')
  return text


def check_run_for_extraction(epoch_dir: pathlib.Path, dataset, fold: int) -> dict:
  """Refuses a checkpoint trained on another dataset or split than ``dataset``'s ``fold``."""
  metadata = read_checkpoint_metadata(epoch_dir)
  recorded = _recorded_run(metadata, epoch_dir)
  current = {**dataset_record(dataset), 'split': split_fingerprint(dataset, fold)}
  if recorded['dataset'] != current['dataset'] or recorded.get('split') != current['split']:
    raise ValueError(_dataset_mismatch(f'the run {epoch_dir}', recorded, current, '--data-dir')
                     + '; give the --runs trained on this --data-dir, or retrain on it')
  if recorded.get('fold') not in (None, fold):
    raise ValueError(f'{epoch_dir} is a run of fold {recorded["fold"]}, not of fold {fold}')
  return recorded


def _fold_metrics(runs: pathlib.Path, skip: Sequence[str] = ()
                  ) -> dict[str, tuple[pathlib.Path, run_folder.FoldMetrics]]:
  """{fold folder name: (its ``metrics.json``, its content)} of every fold under ``runs``."""
  return {name: (path, run_folder.read_metrics(path))
          for name, path in run_folder.metrics_paths(runs).items() if name not in skip}


def _run_records(folds: Mapping[str, tuple[pathlib.Path, run_folder.FoldMetrics]],
                 required: bool) -> dict[str, dict]:
  return {name: _recorded_run({KEY: metrics.provenance}, path) if required
          else metrics.provenance for name, (path, metrics) in folds.items()}


def recorded_runs(runs: pathlib.Path, skip: Sequence[str] = (),
                  required: bool = True) -> dict[str, dict]:
  """{fold folder name: its provenance} of every ``fold-K`` under ``runs`` with metrics
  (``{}`` for a fold that records none, unless ``required``: then an error)."""
  return _run_records(_fold_metrics(runs, skip), required)


def check_runs_folder(runs: pathlib.Path, record: Mapping, fold_name: str) -> None:
  """Refuses to train a fold into ``runs`` beside folds of another dataset."""
  for name, other in recorded_runs(runs, skip=(fold_name,)).items():
    if other['dataset'] != record['dataset']:
      raise ValueError(_dataset_mismatch(f'{pathlib.Path(runs) / name}', other, record,
                                         '--data-dir') + f'; one cross-validation comes '
                       f'from one dataset: train into another --out than {runs}')


def check_one_dataset(runs: pathlib.Path,
                      results: Mapping[str, run_folder.FoldMetrics]) -> None:
  """Refuses to summarise folds (``{fold name: metrics}``) of different datasets."""
  if not any(metrics.provenance for metrics in results.values()):
    return  # folds of an earlier gestaltxai record nothing to compare
  records = {name: _recorded_run({KEY: metrics.provenance},
                                 run_folder.fold_dir(runs, metrics.fold) / run_folder.METRICS_FILE)
             for name, metrics in results.items()}
  first_name, first = next(iter(records.items()))
  for name, record in records.items():
    if record['dataset'] != first['dataset']:
      raise ValueError(_dataset_mismatch(f'{pathlib.Path(runs) / name}', record, first,
                                         f'{pathlib.Path(runs) / first_name}\'s')
                       + '; one cross-validation comes from one dataset: retrain the odd '
                       'folds with --overwrite, or move them to their own RUNS folder')


def fold_count_note(runs: pathlib.Path) -> Optional[str]:
  """'note: 2 of 5 folds ...' when ``runs`` holds fewer folds than their dataset has."""
  found = recorded_runs(runs, required=False)
  counts = {record.get('num_folds') for record in found.values()} - {None}
  if len(counts) != 1 or len(found) >= next(iter(counts)):
    return None
  return (f'note: {len(found)} of {next(iter(counts))} folds ({", ".join(found)}); train the '
          'others for the full cross-validation')


def check_resume(saved: Mapping, record: Mapping, directory: pathlib.Path) -> None:
  """Refuses to resume (or re-test) a fold saved from another dataset or split."""
  recorded = _recorded_run(saved, directory)
  if recorded['dataset'] != record['dataset'] or recorded.get('split') != record['split']:
    raise ValueError(_dataset_mismatch(str(directory), recorded, record, '--data-dir')
                     + '; choose another --out, or replace the run with --overwrite')


def check_extension(saved_config: Mapping, config: Mapping, directory: pathlib.Path) -> None:
  """Refuses a changed epoch count where the learning-rate schedule depends on it.

  With ``restart_epochs`` unset, the cosine's period is the number of epochs:
  a run extended from E to E' epochs would have trained its first E epochs
  under rates that a fresh E'-epoch run never has.
  """
  before, after = saved_config.get('epochs'), config.get('epochs')
  if before == after:
    return
  if after < before:
    raise ValueError(f'{directory} holds a {before}-epoch run; --epochs {after} would discard '
                     f'epochs: give --epochs {before}, another --out, or --overwrite')
  if not config.get('restart_epochs'):
    raise ValueError(f'{directory} holds a {before}-epoch run whose cosine schedule spans its '
                     f'{before} epochs; a fresh {after}-epoch run has other rates, so it cannot '
                     f'be extended: give another --out, or --overwrite to train {after} epochs '
                     'from the start')


# Tables and what is made from them.


def table_record(dataset_record_: Optional[Mapping], runs: Mapping[int, Mapping]) -> dict:
  """The table's provenance before it exists: its dataset and each fold's run."""
  return {'dataset': dict(dataset_record_ or {}),
          'runs': {str(fold): {k: run.get(k) for k in ('run', 'split')}
                   for fold, run in sorted(runs.items())}}


def read_table_provenance(table: pathlib.Path,
                          path: Optional[pathlib.Path] = None) -> Optional[dict]:
  """The provenance in ``TABLE.json`` (or ``path``), None where there is none."""
  path = pathlib.Path(path) if path else coefficient_table.provenance_path(table)
  if not path.is_file():
    return None
  record = coefficient_table.read_provenance(path)
  return record.get(KEY) if isinstance(record, dict) else None


def made_from_table(table: pathlib.Path, extra: Optional[Mapping] = None) -> dict:
  """The record of an artefact made from ``table``: its path and content fingerprint."""
  return {'table': {'path': str(table), 'fingerprint': file_fingerprint(table)},
          **(extra or {})}


def _check_table(recorded: Optional[Mapping], table: pathlib.Path, what: str, fix: str) -> None:
  if not isinstance(recorded, Mapping) or not isinstance(recorded.get('table'), Mapping):
    raise ValueError(f'{what} records no table fingerprint (made by an earlier gestaltxai or '
                     f'by hand), so it cannot be checked against {table}: {fix}')
  saved, current = recorded['table'].get('fingerprint'), file_fingerprint(table)
  if saved != current:
    raise ValueError(f'{what} was made from table {short(saved)} '
                     f'({recorded["table"].get("path")}); --table {table} is {short(current)}: '
                     f'{fix}')


def write_stats_provenance(directory: pathlib.Path, table: pathlib.Path,
                           hpo: Optional[pathlib.Path]) -> pathlib.Path:
  from gestaltxai.files import write_json  # pylint: disable=import-outside-toplevel
  extra = {'hpo': {'path': str(hpo), 'fingerprint': file_fingerprint(hpo)} if hpo else None,
           'dataset': (read_table_provenance(table) or {}).get('dataset')}
  path = pathlib.Path(directory) / STATS_FILE
  write_json(path, made_from_table(table, extra))
  return path


def check_stats(directory: pathlib.Path, table: pathlib.Path) -> dict:
  path = pathlib.Path(directory) / STATS_FILE
  recorded = read_json(path, 'stats provenance') if path.is_file() else None
  _check_table(recorded, table, f'--stats {directory}',
               f'run `gestaltxai stats --table {table} --out {directory} --overwrite`')
  return recorded


def check_maps(maps: pathlib.Path, table: pathlib.Path) -> dict:
  try:
    recorded = coefficient_table.read_maps_provenance(maps)
  except ValueError as err:
    raise ValueError(f'--maps {err}') from None
  _check_table(recorded, table, f'--maps {maps}',
               'give the maps file written beside this table by `gestaltxai extract`')
  return recorded


def check_dataset_for_table(data_dir: pathlib.Path, table_provenance: Optional[Mapping],
                            table_classes: Iterable[str], table: pathlib.Path) -> dict:
  """Refuses a --data-dir other than the table's dataset (by fingerprint, else by classes)."""
  from gestaltxai.data.pipeline import FaceDataset  # pylint: disable=import-outside-toplevel
  current = dataset_record(FaceDataset.open(data_dir))
  recorded = (table_provenance or {}).get('dataset') or {}
  if recorded.get('dataset'):
    if recorded['dataset'] != current['dataset']:
      raise ValueError(_dataset_mismatch(f'--table {table}', recorded, current,
                                         f'--data-dir {data_dir}')
                       + '; give the dataset the table was extracted from')
  else:
    _check_classes(FaceDataset.open(data_dir).classes, table_classes, f'--data-dir {data_dir}',
                   table)
  return current


def check_runs_for_table(runs: pathlib.Path, table_provenance: Optional[Mapping],
                         table_classes: Iterable[str], table: pathlib.Path) -> dict:
  """Refuses --runs whose folds are not the runs the table was extracted with."""
  table_dataset = ((table_provenance or {}).get('dataset') or {}).get('dataset')
  # Runs that record nothing can be checked against a table that records nothing by classes.
  folds = _fold_metrics(runs)
  found = _run_records(folds, required=bool(table_dataset))
  if not found:
    raise FileNotFoundError(f'--runs {runs}: no fold-K/{run_folder.METRICS_FILE} (written by '
                            '`gestaltxai train`)')
  table_runs = (table_provenance or {}).get('runs') or {}
  for name, record in found.items():
    if table_dataset and record['dataset'] != table_dataset:
      raise ValueError(_dataset_mismatch(f'--runs {pathlib.Path(runs) / name}', record,
                                         table_provenance['dataset'], f'--table {table}\'s')
                       + '; give the runs the table was extracted with')
    saved = table_runs.get(str(run_folder.fold_number(name)), {}).get('run')
    if saved and saved != record.get('run'):
      raise ValueError(f'--runs {pathlib.Path(runs) / name} is run {short(record.get("run"))}; '
                       f'--table {table} was extracted with run {short(saved)}: give the runs '
                       'the table was extracted with')
  if not table_dataset:
    for name, (_, metrics) in folds.items():
      confusion = metrics.test.get('confusion') or []
      if metrics.classes:
        _check_classes(metrics.classes, table_classes, f'--runs {runs}/{name}', table)
      elif confusion and len(confusion) != len(list(table_classes)):
        raise ValueError(f'--runs {runs}/{name} has a {len(confusion)}-class confusion matrix; '
                         f'--table {table} has {len(list(table_classes))} classes: give the '
                         'runs the table was made from')
  return found


def _check_classes(classes: Iterable[str], table_classes: Iterable[str], given: str,
                   table: pathlib.Path) -> None:
  if sorted(classes) != sorted(table_classes):
    raise ValueError(f'{given} has classes {sorted(classes)}; --table {table} has '
                     f'{sorted(table_classes)}: give the inputs the table was made from')


def chain_lines(table: pathlib.Path, table_provenance: Optional[Mapping],
                stats: Optional[Mapping] = None, maps: Optional[Mapping] = None,
                runs: Optional[Mapping[str, Mapping]] = None) -> list[str]:
  """The chain a report was built from, one line per link."""
  table_provenance = table_provenance or {}
  dataset = table_provenance.get('dataset') or {}
  lines = [f'dataset {short(dataset.get("dataset"))} ({dataset.get("path", "not recorded")})']
  for fold, run in sorted((table_provenance.get('runs') or {}).items()):
    lines.append(f'  -> fold {fold} run {short(run.get("run"))} (split '
                 f'{short(run.get("split"))})')
  lines.append(f'  -> table {short(file_fingerprint(table))} ({table})')
  if runs:
    lines.append('  runs read: ' + ', '.join(f'{n} {short(r.get("run"))}'
                                            for n, r in sorted(runs.items())))
  if stats:
    lines.append(f'  -> stats from table {short(stats["table"]["fingerprint"])}')
  if maps:
    lines.append(f'  -> maps from table {short(maps["table"]["fingerprint"])}')
  return lines


def check_report_inputs(table: pathlib.Path, table_classes: Iterable[str], *,
                        runs: Optional[pathlib.Path] = None,
                        stats: Optional[pathlib.Path] = None,
                        maps: Optional[pathlib.Path] = None,
                        default_maps: Optional[pathlib.Path] = None,
                        data_dir: Optional[pathlib.Path] = None,
                        table_provenance_path: Optional[pathlib.Path] = None) -> list[str]:
  """Refuses report inputs made from another table, dataset or runs; returns the chain.

  Explicitly given inputs must exist and match; the maps file found beside the
  table is checked when it records its table.
  """
  table = pathlib.Path(table)
  for flag, path in (('--runs', runs), ('--stats', stats), ('--maps', maps),
                     ('--data-dir', data_dir), ('--provenance', table_provenance_path)):
    if path is not None and not pathlib.Path(path).exists():
      raise FileNotFoundError(f'{flag} {path} does not exist')
  recorded = read_table_provenance(table, table_provenance_path)
  described = (recorded or {}).get('table')
  if described and described != file_fingerprint(table):
    raise ValueError(f'{table_provenance_path or coefficient_table.provenance_path(table)} '
                     f'describes table '
                     f'{short(described)}; --table {table} is {short(file_fingerprint(table))}: '
                     'give the provenance written beside this table by `gestaltxai extract`')
  stats_record = check_stats(stats, table) if stats is not None else None
  maps_record_ = check_maps(maps, table) if maps is not None else None
  if maps is None and default_maps is not None:
    try:
      maps_record_ = check_maps(default_maps, table)
    except ValueError as err:
      if 'records no table fingerprint' not in str(err):
        raise
  run_records = (check_runs_for_table(runs, recorded, table_classes, table)
                 if runs is not None else None)
  if data_dir is not None:
    check_dataset_for_table(data_dir, recorded, table_classes, table)
  return chain_lines(table, recorded, stats_record, maps_record_, run_records)
