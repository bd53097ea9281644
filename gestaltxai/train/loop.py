"""Training one fold end to end: resume, epochs, epoch selection, checkpoints, held-out scores.

The dataset's split roles (:mod:`gestaltxai.roles`) say which images
train, which select the epoch (``val_*`` in the history) and which are held
out and scored (``test`` in ``metrics.json``, the contract's name): on
NIH-Faces the reference's ``val`` both selects and is scored, on our own
builders ``val`` selects and ``test`` is scored.

``RUNS/fold-K/`` after a run is laid out by :mod:`gestaltxai.artifacts.run_folder`:
orbax checkpoints of the latest and the chosen epoch, ``metrics.json``
rewritten after every epoch (``test`` once the run ends) and the held-out
confusion figure. ``best_epoch`` is the chosen epoch (the best on the select
split; with ``selection='inner'`` on a share of the training images kept out of
training; with ``selection='last'`` the last).

The same call on a folder that holds checkpoints resumes from the latest
one: model, optimizer and schedule position, and the data iterator (the
flips and shuffles are functions of (seed, epoch), so no random state is
lost).
"""

from __future__ import annotations

import pathlib
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.data.align import ALIGNMENT_SIZES
from gestaltxai.data.pipeline import (FaceDataset, batch_dataset, cache_records, iterate,
                                      plan_batches)
from gestaltxai.files import differences
from gestaltxai import outputs, provenance as chain
from gestaltxai.artifacts import run_folder
from gestaltxai.artifacts.run_folder import FoldMetrics, fold_dir
from gestaltxai.train import checkpoints as ckpt
from gestaltxai.train.config import ModelConfig, TrainConfig
from gestaltxai.train.metrics import (confusion_matrix, format_table, plot_confusion, scores,
                                     summarize)
from gestaltxai.train.optim import HEAD, epoch_schedule, make_optimizer
from gestaltxai.train.step import DataParallel, TrainState, host_value

#: Config fields a resumed run may change: they do not change what is computed. (The
#: number of decoding workers shapes the saved iterator state, so it must stay.)
RESUMABLE_CHANGES = ('epochs', 'cache')


def initial_variables(model, config: TrainConfig, num_classes: int,
                      weights: Optional[pathlib.Path], key: jax.Array,
                      mean_bgr: Optional[np.ndarray] = None) -> dict:
  """Random variables, VGGFace2 weights (a pickle) or a trained fold (an orbax folder);
  for the 'dlib' model kind without ``weights``, dlib's weights with their stem
  converted to take BGR minus ``mean_bgr`` (the pipeline's input).

  A new head is initialised from ``key`` where the class count differs.
  """
  def fresh():
    sample = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
    return jax.jit(model.init)(key, sample)

  if weights is None and config.model.kind == 'dlib':
    return _dlib_variables(num_classes, key, mean_bgr)
  if weights is None:
    return fresh()
  weights = pathlib.Path(weights)
  if weights.is_dir():
    _, loaded, saved_config, _ = ckpt.load_checkpoint(weights)
    changed = differences({'model': saved_config.to_dict()['model']},
                          {'model': config.to_dict()['model']})
    if changed:
      raise ValueError(f'{weights} holds another network than the {config.name} '
                       f'configuration\'s: {"; ".join(changed)}')
    if loaded['params'][HEAD]['bias'].shape != (num_classes,):
      loaded = {**loaded, 'params': {**loaded['params'], HEAD: fresh()['params'][HEAD]}}
    return loaded
  if config.model != ModelConfig():
    raise ValueError(f'{weights}: VGGFace2 weights fit the ResNet-50 of the reference '
                     f'configuration, not the {config.name} configuration\'s {config.model}')
  from gestaltxai.models import load_vggface2  # pylint: disable=import-outside-toplevel
  try:
    return load_vggface2(weights, num_classes=num_classes, rng=key)
  except KeyError as err:
    raise ValueError(f'{weights}: not VGGFace2 ResNet-50 weights ({err})') from err


class _Evaluator:
  """Loss, accuracy and predictions of a model over one split, in fixed-shape batches."""

  def __init__(self, parallel: DataParallel, source, indices: np.ndarray, config: TrainConfig,
               mean_bgr: np.ndarray):
    index, count = parallel.process_block
    plan = plan_batches(indices, config.batch_size, process_index=index, process_count=count,
                        remainder='pad')
    self.parallel = parallel
    self.batches = batch_dataset(source, plan, mean_bgr=mean_bgr, image_size=config.image_size)
    self.workers = config.workers

  def __call__(self, variables) -> dict:
    losses, labels, predicted = [], [], []
    for batch in iterate(self.batches, workers=self.workers):
      out = {k: host_value(v) for k, v in
             self.parallel.evaluate(variables, self.parallel.put_batch(batch)).items()}
      valid = out['valid']
      losses.append(out['loss'][valid])
      labels.append(out['label'][valid])
      predicted.append(out['predicted'][valid])
    labels, predicted = np.concatenate(labels), np.concatenate(predicted)
    return {'loss': float(np.concatenate(losses).astype(np.float64).mean()),
            'accuracy': float((labels == predicted).mean()), 'labels': labels,
            'predicted': predicted}


#: The roles training reads (annotated images take no part in it).
TRAINING_ROLES = ('train', 'select', 'held_out')


#: ``selection='inner'``: the share of each class's training images set aside to choose the
#: epoch on (at least one image of a class with two or more).
INNER_SHARE = 0.2


def inner_split(train: np.ndarray, labels: np.ndarray, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """(train, select): :data:`INNER_SHARE` of each class's training records, drawn with
  ``seed``, leave training to choose the epoch on (sorted record indices)."""
  rng = np.random.default_rng(seed)
  select = []
  for label in np.unique(labels[train]):
    members = rng.permutation(train[labels[train] == label])
    if len(members) > 1:
      select.append(members[:max(1, int(round(INNER_SHARE * len(members))))])
  select = np.sort(np.concatenate(select)) if select else np.zeros(0, np.int64)
  return np.setdiff1d(train, select), select


def _role_indices(dataset: FaceDataset, fold: int, config: TrainConfig) -> dict[str, np.ndarray]:
  """{role: record indices} of the roles training reads, each checked non-empty; with
  ``selection='inner'`` the select images come out of the training images."""
  roles, batch_size = dataset.roles, config.batch_size
  found = {role: dataset.role_indices(fold, role) for role in TRAINING_ROLES}
  for role, indices in found.items():
    if not len(indices):
      raise ValueError(f'fold {fold} of {dataset.directory} has no {roles.split(role)} images '
                       f'(the {role} role; {roles.describe()})')
  if config.selection == 'inner':
    found['train'], found['select'] = inner_split(found['train'], dataset.labels, config.seed)
    if not len(found['select']):
      raise ValueError(f'fold {fold}: no class has two training images, so --select inner has '
                       'none to choose the epoch on; use --select last')
  if len(found['train']) < batch_size:
    raise ValueError(f'fold {fold} has {len(found["train"])} training images, fewer than '
                     f'one batch of {batch_size}')
  return found


def chosen_epoch(history: Sequence[dict], selection: str) -> int:
  """The epoch a fold keeps: the best accuracy on the select images (earliest of ties; 'best'
  and 'inner'), or the last."""
  return history[-1]['epoch'] if selection == 'last' else ckpt.best_step(history)


def _check_resumable(saved: dict, expected: dict, directory: pathlib.Path) -> None:
  current = {k: v for k, v in expected['config'].items() if k not in RESUMABLE_CHANGES}
  before = {k: v for k, v in saved['config'].items() if k not in RESUMABLE_CHANGES}
  changed = differences(before, current)
  changed += differences({'classes': saved['classes']}, {'classes': expected['classes']})
  if changed:
    raise ValueError(f'{directory} holds a run of another configuration ({"; ".join(changed)}); '
                     'choose another --out, or delete it to start over')


def _check_alignment(dataset: FaceDataset, config: TrainConfig) -> None:
  """dlib's network needs dlib's chips: resizing ArcFace-aligned faces would crop them wrong."""
  stored = dataset.builder.info.features['image'].shape[0]
  if config.model.kind == 'dlib' and stored != ALIGNMENT_SIZES['dlib']:
    raise ValueError(f'the {config.name} configuration trains dlib\'s face ResNet on dlib\'s '
                     f'{ALIGNMENT_SIZES["dlib"]} px face chips; {dataset.directory} holds '
                     f'{stored} px faces: prepare it with --alignment dlib')


def _dlib_variables(num_classes: int, key: jax.Array, mean_bgr: np.ndarray) -> dict:
  from gestaltxai.models.dlib_face_net import (  # pylint: disable=import-outside-toplevel
      bgr_input_params, load_dlib_face_net)
  _, variables = load_dlib_face_net(num_classes=num_classes, rng=key)
  # Affine layers, not BatchNorm: no batch statistics to carry.
  return {'params': bgr_input_params(variables['params'], mean_bgr), 'batch_stats': {}}


def train_fold(dataset: FaceDataset, fold: int, config: TrainConfig, runs: pathlib.Path, *,
               weights: Optional[pathlib.Path] = None, devices: Optional[Sequence] = None,
               progress: bool = False, log: Callable[[str], None] = print) -> dict:
  """Trains ``fold`` into ``runs/fold-K`` (resuming a run found there) and tests its best epoch.

  Args:
    weights: VGGFace2 weights (a pickle) or a trained fold's folder to start from.
    devices: the mesh (default: every device of every process).

  Returns:
    The content of ``metrics.json``.
  """
  _check_alignment(dataset, config)
  classes = dataset.classes
  roles = dataset.roles
  splits = _role_indices(dataset, fold, config)
  mean_bgr = dataset.mean_bgr(fold)
  model = config.model.build(len(classes), config.dtype)
  steps_per_epoch = len(splits['train']) // config.batch_size
  tx = make_optimizer(config, steps_per_epoch)
  parallel = DataParallel(model, tx, config.batch_size, devices)
  index, count = parallel.process_block
  source = (cache_records(dataset, np.unique(np.concatenate(list(splits.values()))),
                          config.image_size)
            if config.cache else dataset)
  train_plan = plan_batches(splits['train'], config.batch_size, seed=config.seed,
                            epochs=range(config.epochs), shuffle=True, flip=config.flip,
                            process_index=index, process_count=count, remainder='drop')
  stream = iterate(batch_dataset(source, train_plan, mean_bgr=mean_bgr,
                                 image_size=config.image_size), workers=config.workers)
  evaluators = {role: _Evaluator(parallel, source, splits[role], config, mean_bgr)
                for role in ('select', 'held_out')}
  if config.selection == 'best' and roles.select == roles.held_out:
    log(f'fold {fold}: the epoch is chosen on the held-out split {roles.held_out!r}, which is '
        'then scored (the reference\'s protocol; optimistic). --select inner chooses it on '
        'training images set aside, --select last fixes it.')

  out = fold_dir(runs, fold)
  made_from = chain.run_record(dataset, fold, config.to_dict())
  chain.check_runs_folder(runs, made_from, out.name)
  outputs.check_writable(out)  # a read-only or full folder, before orbax waits on it
  keep = ckpt.LatestAndBest()
  checkpoints = ckpt.manager(out / ckpt.CHECKPOINTS, policy=keep)
  identity = {'config': config.to_dict(), 'fold': fold, 'classes': classes,
              'image_size': config.image_size, 'mean_bgr': [float(v) for v in mean_bgr],
              'dataset': str(dataset.directory), 'devices': jax.device_count(),
              'processes': jax.process_count(), chain.KEY: made_from}
  create = jax.jit(lambda v: TrainState.create(v, tx), out_shardings=parallel.replicated)
  key = jax.random.PRNGKey(config.seed)
  latest = checkpoints.latest_step()
  if latest is None and (out / run_folder.METRICS_FILE).exists():
    raise FileExistsError(f'{out} holds a run\'s {run_folder.METRICS_FILE} but no checkpoint: '
                          'give --overwrite to train it again, or choose another --out')
  if latest is None:
    state = create(parallel.replicate(
        initial_variables(model, config, len(classes), weights, key, mean_bgr)))
    history = []
  else:
    saved = ckpt.read_metadata(checkpoints, latest)
    _check_resumable(saved, identity, out)
    chain.check_resume(saved, made_from, out)
    chain.check_extension(saved['config'], identity['config'], out)
    variables = jax.eval_shape(model.init, key, jnp.zeros(
        (1, config.image_size, config.image_size, 3), jnp.float32))
    state = ckpt.restore_training(checkpoints, latest,
                                  parallel.abstract(jax.eval_shape(create, variables)), stream)
    history = saved['history']
    keep.best_epoch = saved['best_epoch']
    log(f'fold {fold}: resuming after epoch {latest} from {checkpoints.directory}')

  lead = jax.process_index() == 0
  if lead and len(history) < config.epochs:  # evaluate's summary of the folds goes stale
    outputs.remove([pathlib.Path(runs) / name for name in run_folder.SUMMARIES])
  rate = epoch_schedule(config, steps_per_epoch, config.learning_rate)
  bar = _progress_bar(progress and lead, (config.epochs - len(history)) * steps_per_epoch,
                      f'fold {fold}')
  for epoch in range(len(history) + 1, config.epochs + 1):
    started = time.perf_counter()
    state, train = _train_epoch(parallel, state, stream, steps_per_epoch, bar)
    val = evaluators['select'](state.variables)
    history.append({'epoch': epoch, 'train_loss': train['loss'],
                    'train_accuracy': train['accuracy'],
                    'val_loss': val['loss'], 'val_accuracy': val['accuracy'],
                    'learning_rate': float(rate((epoch - 1) * steps_per_epoch)),
                    'seconds': time.perf_counter() - started})
    best = keep.best_epoch = chosen_epoch(history, config.selection)
    ckpt.save(checkpoints, epoch, state, stream, {
        **identity, 'epoch': epoch, 'best_epoch': best, 'history': history,
        'best_val_accuracy': next(h['val_accuracy'] for h in history if h['epoch'] == best)})
    if lead:
      run_folder.write_metrics(runs, FoldMetrics(fold, identity['config'], list(classes),
                                                 history, best, provenance=made_from))
    _log_epoch(log if not bar else bar.write, fold, config.epochs, history[-1])
  if bar:
    bar.close()
  ckpt.wait(checkpoints)

  best = chosen_epoch(history, config.selection)
  variables = ckpt.restore_variables(checkpoints, best, parallel.abstract(state.variables))
  checkpoints.close()
  test = evaluators['held_out'](variables)
  confusion = confusion_matrix(test['labels'], test['predicted'], len(classes))
  metrics = FoldMetrics(
      fold, identity['config'], list(classes), history, best,
      test={**scores(confusion), 'loss': test['loss'], 'confusion': confusion.tolist(),
            'split': roles.held_out, 'images': int(len(splits['held_out'])),
            'selection': config.selection},
      roles=roles.to_dict(), provenance=made_from)
  result = metrics.to_json(with_provenance=False)
  if lead:
    run_folder.write_metrics(runs, metrics)
    plot_confusion(confusion, classes, out / run_folder.CONFUSION_FIGURE,
                   f'fold {fold}, epoch {best}: held-out ({roles.held_out}) accuracy '
                   f'{result["test"]["accuracy"]:.3f}')
  log(f'fold {fold}: {config.selection} epoch {best}, held-out ({roles.held_out}, '
      f'{len(splits["held_out"])} images) accuracy {result["test"]["accuracy"]:.3f}, '
      f'macro F1 {result["test"]["macro_f1"]:.3f}')
  return result


def _train_epoch(parallel: DataParallel, state: TrainState, stream, steps: int,
                 bar) -> tuple[TrainState, dict]:
  """``steps`` train steps; the epoch's mean loss and accuracy."""
  started = time.perf_counter()
  losses, correct = [], 0.0
  pending = None

  def record(metrics):
    nonlocal correct
    losses.append(float(host_value(metrics['loss'])))
    correct += float(host_value(metrics['correct']))
    _advance(bar, losses[-1], parallel.global_batch_size, started, len(losses))

  for _ in range(steps):
    state, metrics = parallel.train(state, parallel.put_batch(next(stream)))
    if pending is not None:  # read the previous step's numbers while this one runs
      record(pending)
    pending = metrics
  record(pending)
  return state, {'loss': float(np.mean(losses)),
                 'accuracy': correct / (steps * parallel.global_batch_size)}


def _log_epoch(log, fold, epochs, entry) -> None:
  log(f'fold {fold} epoch {entry["epoch"]}/{epochs}: train loss {entry["train_loss"]:.3f} '
      f'acc {entry["train_accuracy"]:.3f} | val loss {entry["val_loss"]:.3f} '
      f'acc {entry["val_accuracy"]:.3f} | lr {entry["learning_rate"]:.2e} | '
      f'{entry["seconds"]:.1f} s')


def _progress_bar(enabled: bool, total: int, description: str):
  if not enabled:
    return None
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm(total=total, desc=description, unit='step', dynamic_ncols=True)


def _advance(bar, loss: float, batch_size: int, started: float, steps: int) -> None:
  if bar:
    rate = steps * batch_size / max(time.perf_counter() - started, 1e-9)
    bar.set_postfix_str(f'loss {loss:.3f}, {rate:.0f} img/s', refresh=False)
    bar.update(1)


def evaluate_runs(runs: pathlib.Path) -> tuple[dict, str]:
  """Summarises the tested folds under ``runs``: writes summary.json and confusion.png.

  Returns:
    The summary ({'folds', 'mean', 'std', 'classes', 'confusion'}) and its table as text.
  """
  runs = pathlib.Path(runs)
  results = run_folder.read_runs(runs)
  unfinished = [name for name, result in results.items() if not result.finished]
  if unfinished:
    raise ValueError(f'{", ".join(unfinished)} under {runs} not finished: no test result yet '
                     '(run `gestaltxai train` again to resume)')
  chain.check_one_dataset(runs, results)
  classes = {tuple(result.classes) for result in results.values()}
  if len(classes) > 1:
    raise ValueError(f'the folds under {runs} disagree on the classes: {sorted(classes)}')
  summary = summarize({name: result.test for name, result in results.items()})
  confusion = np.sum([result.test['confusion'] for result in results.values()], axis=0)
  summary.update(classes=list(classes.pop()), confusion=confusion.tolist(),
                 best_epochs={name: result.best_epoch for name, result in results.items()},
                 held_out={name: {key: result.test.get(key)
                                  for key in ('split', 'images', 'selection')}
                           for name, result in results.items()})
  run_folder.write_summary(runs, summary)
  plot_confusion(confusion, summary['classes'], runs / run_folder.CONFUSION_FIGURE,
                 f'{", ".join(results)}: mean held-out accuracy {summary["mean"]["accuracy"]:.3f}')
  return summary, format_table(summary) + '\n' + _held_out_line(summary['held_out'])


def _held_out_line(held_out: dict[str, dict]) -> str:
  """'scored on the held-out split val (fold-1 18 images); epoch: best on the select split'."""
  splits = sorted({str(v['split']) for v in held_out.values()})
  selections = sorted({str(v['selection']) for v in held_out.values()})
  images = ', '.join(f'{name} {v["images"]}' for name, v in held_out.items())
  return (f'scored on the held-out split {"/".join(splits)} ({images} images); epoch: '
          f'{"/".join(selections)} ("best": the best accuracy on the select split; "inner": '
          'on a share of the training images; "last": the last)')
