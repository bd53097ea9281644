"""Where a dataset is built before it exists: the staging folder, its item cache, the workers.

A build into ``DATA`` works in the sibling folder ``.DATA.building``:

* ``items/<digest>.npz``: one finished example, or the reason its photo
  cannot be used, per item, written atomically by the worker that made it
  (a temporary file renamed into place). A stopped build keeps every item it
  finished; the next run with the same inputs skips them.
* ``tfds/<run>/``: the TFDS builder's output, moved into ``DATA`` with one
  rename once it is complete.

Nothing that can be mistaken for a dataset is ever under ``DATA`` before
that rename, so readers that search ``DATA`` for ``dataset_info.json`` find a
complete dataset or none. The folder is removed when the build succeeds, and
an interrupted one's leftovers (partial files, a half-written TFDS folder)
are removed by the next build, which holds ``DATA``'s lock.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import pathlib
import shutil
import signal
import tempfile
import uuid
import warnings
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from gestaltxai.data.examples import UNUSABLE

try:
  import fcntl
except ImportError:  # Windows: no advisory locks; one build per folder is then the user's care
  fcntl = None

#: The cache entry member holding the item's Outcome, as JSON.
_INFO = 'info'
_PARTIAL_SUFFIX = '.partial'


@dataclasses.dataclass(frozen=True)
class Item:
  """One photo (or synthetic face) to prepare.

  Attributes:
    name: the example's key and name (a file name, unique in the dataset).
    label: class index.
    recipe: a picklable no-argument callable (``functools.partial`` of a
      module-level function) returning the finished example's arrays; it
      raises one of ``examples.UNUSABLE`` when the photo cannot be used.
    digest: hex digest of everything the recipe's result depends on (file
      contents, given points, options); None when an input file is missing.
    folds: (K,) int8 fold splits when the source gives them, else None.
  """

  name: str
  label: int
  recipe: Callable[[], dict]
  digest: Optional[str]
  folds: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What preparing an item gave: an example (in the cache) or the reason it is unusable."""

  detector: Optional[str] = None
  warnings: tuple[str, ...] = ()
  error: Optional[str] = None
  mean_rgb: Optional[tuple[float, float, float]] = None  # the aligned image's channel means

  @property
  def usable(self) -> bool:
    return self.error is None


def jsonable(value):
  """``json.dumps``'s ``default`` for NumPy values (arrays by dtype, shape and values)."""
  if isinstance(value, np.ndarray):
    return {'dtype': str(value.dtype), 'shape': list(value.shape), 'values': value.tolist()}
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f'{type(value).__name__} has no JSON form')


def digest(*parts) -> str:
  """sha256 over parts: bytes as they are, arrays by their bytes, anything else by its JSON."""
  hasher = hashlib.sha256()
  for part in parts:
    if isinstance(part, np.ndarray):
      part = f'{part.dtype}{part.shape}'.encode() + np.ascontiguousarray(part).tobytes()
    if not isinstance(part, bytes):
      part = json.dumps(part, sort_keys=True, default=jsonable)
    hasher.update(len(part).to_bytes(8, 'little'))
    hasher.update(part.encode() if isinstance(part, str) else part)
  return hasher.hexdigest()


def file_digest(path: str | os.PathLike) -> Optional[str]:
  """sha256 of a file's bytes; None when it does not exist."""
  try:
    with open(path, 'rb') as f:
      return hashlib.file_digest(f, 'sha256').hexdigest()
  except FileNotFoundError:
    return None


def available_cpus() -> int:
  """Cores this process may run on."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


class Staging:
  """The staging folder of a build into ``target``."""

  def __init__(self, target: pathlib.Path):
    target = pathlib.Path(os.path.abspath(target))
    self.target = target
    self.root = target.parent / f'.{target.name}.building'
    self.items = self.root / 'items'
    self.tfds = self.root / 'tfds'

  def entry(self, item_digest: str) -> pathlib.Path:
    return self.items / f'{item_digest}.npz'

  def clean_leftovers(self) -> None:
    """Removes what an interrupted build left half-written; finished items stay."""
    shutil.rmtree(self.tfds, ignore_errors=True)
    if self.items.is_dir():
      for partial in self.items.glob(f'*{_PARTIAL_SUFFIX}'):
        partial.unlink(missing_ok=True)

  def remove(self) -> None:
    shutil.rmtree(self.root, ignore_errors=True)

  def new_tfds_dir(self) -> pathlib.Path:
    """A fresh folder for one TFDS run (TFDS reads any dataset already in its folder)."""
    return self.tfds / uuid.uuid4().hex

  def read(self, item_digest: str, keys: Optional[Sequence[str]] = None) -> dict:
    """The cached example's arrays (``keys`` only, when given)."""
    with np.load(self.entry(item_digest)) as entry:
      return {key: entry[key] for key in (keys or entry.files) if key != _INFO}

  def outcome(self, item_digest: str) -> Optional[Outcome]:
    """The cached outcome of an item, or None when it has not been prepared."""
    path = self.entry(item_digest)
    if not path.exists():
      return None
    with np.load(path) as entry:
      info = json.loads(str(entry[_INFO]))
    info['warnings'] = tuple(info['warnings'])
    if info['mean_rgb'] is not None:
      info['mean_rgb'] = tuple(info['mean_rgb'])
    return Outcome(**info)


@contextlib.contextmanager
def exclusive(directory: pathlib.Path) -> Iterator[None]:
  """Holds ``directory``'s advisory lock: one build at a time per data folder.

  Raises:
    BlockingIOError: another process holds it (another ``prepare`` writing there).
  """
  if fcntl is None:
    yield
    return
  descriptor = os.open(directory, os.O_RDONLY)
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
      raise BlockingIOError(f'another process is preparing a dataset in {directory}; wait for '
                            'it to finish or choose another data folder') from err
    yield
  finally:
    os.close(descriptor)  # releases the lock


def _prepare(recipe: Callable[[], dict], destination: str) -> Outcome:
  """Runs one recipe and writes its entry atomically (in a worker process)."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    try:
      example = recipe()
      error = None
    except UNUSABLE as err:
      example, error = {}, f'{type(err).__name__}: {err}'
  outcome = Outcome(
      detector=None if error else str(example.pop('detector')),
      warnings=tuple(dict.fromkeys(str(w.message) for w in caught)),
      error=error,
      mean_rgb=None if error else tuple(
          float(v) for v in example['image'].reshape(-1, 3).mean(0, dtype=np.float64)))
  info = json.dumps(dataclasses.asdict(outcome))
  directory = os.path.dirname(destination)
  with tempfile.NamedTemporaryFile(dir=directory, suffix=_PARTIAL_SUFFIX, delete=False) as f:
    np.savez_compressed(f, **{_INFO: np.array(info)}, **example)
  os.replace(f.name, destination)
  return outcome


def _ignore_interrupts() -> None:
  # Ctrl-C reaches the whole process group; the parent decides what stops.
  signal.signal(signal.SIGINT, signal.SIG_IGN)


class PreparationError(RuntimeError):
  """Preparing an item failed in a way that is not about the photo (a bug, a dead worker)."""


def prepare_items(items: Sequence[Item], staging: Staging, *, workers: Optional[int] = None,
                  progress: bool = True) -> dict[str, Outcome]:
  """Prepares every item not yet in the cache; returns each digest's outcome.

  Args:
    items: what to prepare; items without a digest (missing input) are not run.
    staging: the build's staging folder.
    workers: worker processes; None: every available core; 0: this process.
    progress: show a progress bar.

  Raises:
    PreparationError: an item failed for a reason other than its photo; the
      items finished so far stay in the cache.
  """
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=import-outside-toplevel
  staging.items.mkdir(parents=True, exist_ok=True)
  outcomes, todo = {}, {}
  for item in items:
    if item.digest is None or item.digest in outcomes or item.digest in todo:
      continue
    cached = staging.outcome(item.digest)
    if cached is None:
      todo[item.digest] = item
    else:
      outcomes[item.digest] = cached
  if outcomes and progress:
    print(f'continuing: {len(outcomes)} of {len(outcomes) + len(todo)} images were prepared '
          f'before ({staging.root})')
  bar = tqdm_utils.tqdm(total=len(todo), desc='aligning faces', unit='image', disable=not progress)
  workers = min(available_cpus() if workers is None else workers, len(todo))
  if workers == 0:
    for key, item in todo.items():
      outcomes[key] = _run_guarded(
          item, functools.partial(_prepare, item.recipe, str(staging.entry(key))))
      bar.update()
    bar.close()
    return outcomes
  context = multiprocessing.get_context('spawn')  # fork is unsafe once JAX has threads
  pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                initializer=_ignore_interrupts)
  futures = {}
  try:
    for key, item in todo.items():
      futures[pool.submit(_prepare, item.recipe, str(staging.entry(key)))] = (key, item)
    for future in concurrent.futures.as_completed(futures):
      key, item = futures[future]
      outcomes[key] = _run_guarded(item, future.result)
      bar.update()
  except BaseException as err:
    # Cancel what has not started: the pool's own cancel_futures is lost once the
    # executor is collected, and its workers would carry on through the queue.
    for future in futures:
      future.cancel()
    pool.shutdown(wait=False)
    if isinstance(err, KeyboardInterrupt):
      raise KeyboardInterrupt(f'the images prepared so far are kept in {staging.root}: run the '
                              'same command again to continue') from None
    raise
  finally:
    bar.close()
  pool.shutdown()
  return outcomes


def _run_guarded(item: Item, run: Callable[[], Outcome]) -> Outcome:
  try:
    return run()
  except concurrent.futures.process.BrokenProcessPool as err:
    raise PreparationError(
        f'a worker process died while preparing {item.name} (out of memory?); the images '
        'finished so far are kept: run the same command again to continue') from err
  except Exception as err:
    raise PreparationError(
        f'preparing {item.name} failed: {type(err).__name__}: {err}; the images finished so '
        'far are kept: run the same command again to continue') from err
