"""Training: the reference's optimizer, metrics, and one run on 1 device, 4 devices,
2 processes, and killed and resumed: the same losses and parameters every time."""

import json
import math
import os
import pathlib
import pickle
import signal
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import cli
from gestaltxai.data import builders
from gestaltxai.train import TrainConfig, load_checkpoint, make_optimizer, scores
from gestaltxai.train.metrics import confusion_matrix

ROOT = pathlib.Path(__file__).resolve().parents[1]
EPOCHS = 3
# The tiny configuration at a batch that 4 devices and 2 processes divide, at a rate that
# suits the small batch. Different device counts round differently (1e-7); where a max-pool
# window holds near-ties, that can route a gradient to another pixel, which some batches of
# a few images amplify to 1e-4 and more within a few steps. This data and rate stay at 1e-7.
TRAIN_ARGS = ['--config', 'tiny', '--epochs', str(EPOCHS), '--batch-size', '8', '--seed', '5',
              '--learning-rate', '0.002', '--quiet']


def test_schedule_and_head_rate_follow_the_reference_formulas():
  # PyTorch: SGD(momentum=0.9) with param groups (fc at 10x) and
  # CosineAnnealingWarmRestarts(T_0, eta_min=0) stepped after every epoch:
  # lr(e) = base * (1 + cos(pi * (e mod T_0) / T_0)) / 2 for 0-based epoch e;
  # buffer_t = 0.9 buffer_{t-1} + g_t, p_t = p_{t-1} - lr * buffer_t.
  base, restart, steps_per_epoch, epochs = 1e-3, 25, 2, 30
  config = TrainConfig(learning_rate=base, restart_epochs=restart, epochs=epochs)
  tx = make_optimizer(config, steps_per_epoch)
  params = {'conv1': {'kernel': jnp.zeros(3)}, 'fc': {'bias': jnp.zeros(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  update = jax.jit(tx.update)
  buffer, rates = 0.0, []
  for step in range(steps_per_epoch * epochs):
    epoch = step // steps_per_epoch
    rate = base * (1 + math.cos(math.pi * (epoch % restart) / restart)) / 2
    rates.append(rate)
    buffer = 0.9 * buffer + 1.0
    updates, state = update(grads, state, params)
    np.testing.assert_allclose(updates['conv1']['kernel'], -rate * buffer, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(updates['fc']['bias'], -10 * rate * buffer, rtol=1e-5, atol=1e-12)
  # Epoch 24 ends the cycle near 0; epoch 25 restarts at the base rate.
  assert rates[24 * steps_per_epoch] < 0.01 * base and rates[25 * steps_per_epoch] == base


def test_scores_match_a_per_class_count():
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
  predicted = np.array([0, 1, 0, 1, 0, 2, 2, 1, 4, 3])  # class 4 predicted, never true
  confusion = confusion_matrix(labels, predicted, 5)
  assert confusion.sum() == 10 and confusion[2, 2] == 2 and confusion[2, 4] == 1
  f1, support = [], []
  for c in sorted(set(labels) | set(predicted)):
    tp = sum((l == c) and (p == c) for l, p in zip(labels, predicted))
    fp = sum((l != c) and (p == c) for l, p in zip(labels, predicted))
    fn = sum((l == c) and (p != c) for l, p in zip(labels, predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    support.append(sum(l == c for l in labels))
  got = scores(confusion)
  assert got['accuracy'] == pytest.approx(0.6)
  assert got['macro_f1'] == pytest.approx(np.mean(f1))
  assert got['weighted_f1'] == pytest.approx(np.dot(f1, support) / len(labels))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """20 synthetic faces, two classes: 12 train, 4 val, 4 test in fold 1."""
  return builders.build(builders.SyntheticFaces(
      classes=('unaffected', 'wide_eyes'), per_class=10, seed=2, progress=False,
      data_dir=str(tmp_path_factory.mktemp('faces')), file_format='array_record'))


@pytest.fixture(scope='module')
def reference_run(data_dir, tmp_path_factory):
  """The uninterrupted run on this process's single device."""
  runs = tmp_path_factory.mktemp('runs_one_device')
  assert cli.main(['train', '--data-dir', str(data_dir), '--out', str(runs)] + TRAIN_ARGS) == 0
  return runs


def _environment(devices: int) -> dict:
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return env


def _train_command(data_dir, runs) -> list[str]:
  return [sys.executable, '-m', 'gestaltxai.cli', 'train', '--data-dir', str(data_dir),
          '--out', str(runs)] + TRAIN_ARGS


def _assert_same_run(runs, reference, *, rtol):
  """Per-epoch numbers, best epoch, test scores and final variables agree."""
  got, want = (json.loads((r / 'fold-1' / 'metrics.json').read_text()) for r in (runs, reference))
  assert got['config'] == want['config'] and got['best_epoch'] == want['best_epoch']
  for a, b in zip(got['epochs'], want['epochs'], strict=True):
    for key in ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'learning_rate'):
      assert a[key] == pytest.approx(b[key], rel=rtol), key
  assert got['test']['confusion'] == want['test']['confusion']
  (_, mine, _, meta), (_, theirs, _, _) = (load_checkpoint(r / 'fold-1', 'latest')
                                          for r in (runs, reference))
  assert meta['epoch'] == EPOCHS
  flat_mine = jax.tree_util.tree_flatten_with_path(mine)[0]
  flat_theirs = jax.tree.leaves(theirs)
  assert any('batch_stats' in jax.tree_util.keystr(path) for path, _ in flat_mine)
  # Absolute tolerance on the network's scale: a convolution's bias ahead of a
  # BatchNorm gets no gradient in exact arithmetic, so its values are rounding alone.
  scale = max(float(np.max(np.abs(b))) for b in flat_theirs)
  for (path, a), b in zip(flat_mine, flat_theirs, strict=True):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale,
                               err_msg=jax.tree_util.keystr(path))


def test_reference_run_writes_the_documented_files(reference_run, data_dir):
  fold = reference_run / 'fold-1'
  metrics = json.loads((fold / 'metrics.json').read_text())
  assert [e['epoch'] for e in metrics['epochs']] == list(range(1, EPOCHS + 1))
  assert set(metrics['epochs'][0]) >= {'epoch', 'train_loss', 'train_accuracy', 'val_loss',
                                       'val_accuracy'}
  best = max(metrics['epochs'], key=lambda e: e['val_accuracy'])['epoch']
  assert metrics['best_epoch'] == best
  test = metrics['test']
  from gestaltxai.data.pipeline import FaceDataset, batches
  dataset = FaceDataset.open(data_dir)
  test_indices = dataset.indices(1, 'test')
  assert np.sum(test['confusion']) == len(test_indices)
  assert set(test) >= {'accuracy', 'macro_f1', 'weighted_f1'}
  assert (fold / 'confusion.png').stat().st_size > 1000
  model, variables, config, meta = load_checkpoint(fold)  # the best epoch
  assert meta['epoch'] == best and meta['classes'] == ['unaffected', 'wide_eyes']
  assert config.name == 'tiny' and meta['image_size'] == config.image_size
  steps = sorted(int(p.name) for p in (fold / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == sorted({best, EPOCHS})  # only the best and the latest are kept
  # The metadata alone rebuilds the inputs: the fold's BGR mean at the configured size.
  np.testing.assert_allclose(meta['mean_bgr'], dataset.mean_bgr(1))
  batch = next(batches(dataset, test_indices, len(test_indices), mean_bgr=meta['mean_bgr'],
                       image_size=meta['image_size']))
  predicted = np.asarray(model.apply(variables, batch['image'])).argmax(-1)
  confusion = confusion_matrix(batch['label'], predicted, 2)
  assert confusion.tolist() == test['confusion']
  assert cli.main(['evaluate', '--runs', str(reference_run)]) == 0
  summary = json.loads((reference_run / 'summary.json').read_text())
  assert summary['mean']['accuracy'] == test['accuracy'] and summary['std']['accuracy'] is None


def test_four_devices_give_the_one_device_run(reference_run, data_dir, tmp_path):
  done = subprocess.run(_train_command(data_dir, tmp_path), env=_environment(4),
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert '4 devices in 1 processes' in done.stdout
  _assert_same_run(tmp_path, reference_run, rtol=1e-4)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_give_the_one_process_run(reference_run, data_dir, tmp_path):
  coordinator = f'localhost:{_free_port()}'
  workers = [subprocess.Popen(
      _train_command(data_dir, tmp_path) + ['--coordinator', coordinator, '--num-processes', '2',
                                            '--process-id', str(i)],
      env=_environment(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [w.communicate(timeout=300) for w in workers]
  for worker, (_, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
  assert '4 devices in 2 processes' in outputs[0][0]
  _assert_same_run(tmp_path, reference_run, rtol=1e-4)


KILL_AFTER_FIRST_EPOCH = textwrap.dedent('''
    import os, signal, sys
    from gestaltxai import cli
    from gestaltxai.train import checkpoints

    real_save = checkpoints.save

    def save_then_die(manager, epoch, *args, **kwargs):
      if epoch == 2:  # epoch 1 is on disk; die while epoch 2 is being written
        manager.wait_until_finished()
        real_save(manager, epoch, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
      real_save(manager, epoch, *args, **kwargs)

    checkpoints.save = save_then_die
    cli.main(sys.argv[1:])
''')


def test_killed_run_resumes_to_the_uninterrupted_result(reference_run, data_dir, tmp_path):
  killed = subprocess.run(
      [sys.executable, '-c', KILL_AFTER_FIRST_EPOCH] + _train_command(data_dir, tmp_path)[3:],
      env=_environment(1), capture_output=True, text=True, timeout=300, check=False)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  metrics = json.loads((tmp_path / 'fold-1' / 'metrics.json').read_text())
  assert len(metrics['epochs']) == 1 and 'test' not in metrics
  assert cli.main(['train', '--data-dir', str(data_dir), '--out', str(tmp_path)] + TRAIN_ARGS) == 0
  _assert_same_run(tmp_path, reference_run, rtol=0)
  # A different configuration is refused, naming what differs.
  with pytest.raises(ValueError, match=r'learning_rate: 0.002 -> 0.01'):
    from gestaltxai.train.configs import TINY
    from gestaltxai.data.pipeline import FaceDataset
    from gestaltxai.train import train_fold
    train_fold(FaceDataset.open(data_dir), 1, TINY.replace(learning_rate=1e-2, batch_size=4,
                                                           epochs=EPOCHS, seed=5), tmp_path)


@pytest.mark.parametrize('args, message', [
    (['--fold', '9'], 'fold 9 is out of range'),
    (['--data-dir', '{tmp}'], 'expected one prepared dataset'),
    (['--batch-size', '64'], 'fewer than one batch of 64'),
    (['--weights', '{tmp}/vgg.pkl'], 'VGGFace2 weights fit the ResNet-50'),
    (['--config', 'reference', '--weights', '{tmp}/vgg.pkl'], 'not VGGFace2 ResNet-50 weights'),
])
def test_bad_input_is_one_clear_line(args, message, data_dir, tmp_path, capsys):
  with open(tmp_path / 'vgg.pkl', 'wb') as f:  # another network's state dict
    pickle.dump({'features.0.weight': np.zeros((64, 3, 3, 3), np.float32)}, f)
  argv = ['train', '--data-dir', str(data_dir), '--out', str(tmp_path / 'runs')] + TRAIN_ARGS
  argv += [a.format(tmp=tmp_path) for a in args]
  assert cli.main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1


SMALL_FILES = textwrap.dedent('''
    import resource, signal, sys
    # Files stop growing at 200 kB, as on a disk that fills during training (EFBIG rather
    # than ENOSPC): the output folder's probe passes, the checkpoint's arrays do not.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    from gestaltxai import cli
    sys.exit(cli.main(sys.argv[1:]))
''')


def test_a_full_disk_is_one_clear_error(data_dir, tmp_path):
  command = [sys.executable, '-c', SMALL_FILES] + _train_command(data_dir, tmp_path)[3:]
  done = subprocess.run(command, env=_environment(1), capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 1
  # orbax also logs the failure from its saving thread; ours is the one line of the CLI.
  ours = [line for line in done.stderr.splitlines() if line.startswith('gestaltxai train:')]
  assert len(ours) == 1, done.stderr[-3000:]
  assert ours[0].startswith('gestaltxai train: saving a checkpoint in ')
  assert 'File too large' in ours[0] and 'no checkpoint is complete' in ours[0]
  assert not [p for p in (tmp_path / 'fold-1' / 'checkpoints').iterdir() if p.name.isdigit()]
