"""dlib's face chip as a dataset alignment, and fine-tuning dlib's network on it."""

import json

import numpy as np
import pytest

from gestaltxai import cli
from gestaltxai.data import builders
from gestaltxai.data.align import ALIGNMENT_SIZES
from gestaltxai.data.examples import aligned_example
from gestaltxai.train.configs import DLIB, get_config

EPOCHS = 3


def test_dlib_alignment_is_dlibs_face_chip_and_maps_follow(fairface_dir):
  import dlib
  from PIL import Image
  from gestaltxai.data.detect import PREDICTOR_68, model_path
  with Image.open(fairface_dir / 'val' / '1.jpg') as im:
    photo = np.asarray(im.convert('RGB'))
  faces = dlib.get_frontal_face_detector()(photo, 1)
  shape = dlib.shape_predictor(model_path(PREDICTOR_68))(photo, faces[0])
  expected = dlib.get_face_chip(photo, shape, size=150, padding=0.25)
  example = aligned_example(photo, '1.jpg', detector='hog', alignment='dlib')
  assert example['image'].shape == (150, 150, 3) and example['parsing'].shape == (150, 150)
  # Both warp bilinearly with the same matrix; they round differently (at most 1 level).
  assert np.abs(example['image'].astype(int) - expected.astype(int)).max() <= 1
  parts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
  assert example['points68'][30] == pytest.approx(  # the nose tip moves with the chip
      _chip_point(photo, shape, parts[30]), abs=0.6)


def _chip_point(photo, shape, point):
  """Where dlib's chip puts a photo point: mark it and find it in dlib's own chip."""
  import dlib
  marked = np.zeros(photo.shape[:2] + (3,), np.uint8)
  x, y = np.round(point).astype(int)
  marked[y - 1:y + 2, x - 1:x + 2] = 255
  chip = dlib.get_face_chip(marked, shape, size=150, padding=0.25)[..., 0].astype(float)
  rows, cols = np.indices(chip.shape)
  return np.array([(cols * chip).sum(), (rows * chip).sum()]) / chip.sum()


@pytest.fixture(scope='module')
def chip_data(tmp_path_factory):
  """20 synthetic faces as dlib chips, two classes: 12 train, 4 val, 4 test in fold 1."""
  return builders.build(builders.SyntheticFaces(
      classes=('unaffected', 'wide_eyes'), per_class=10, seed=2, progress=False,
      alignment='dlib', data_dir=str(tmp_path_factory.mktemp('chips'))), workers=0)


def test_the_dlib_configuration_lowers_the_training_loss(chip_data, tmp_path):
  from gestaltxai.data.pipeline import FaceDataset
  assert FaceDataset.open(chip_data)[0]['image'].shape == (ALIGNMENT_SIZES['dlib'],) * 2 + (3,)
  assert get_config('dlib') is DLIB
  assert cli.main(['train', '--data-dir', str(chip_data), '--out', str(tmp_path), '--config',
                   'dlib', '--epochs', str(EPOCHS), '--batch-size', '4', '--quiet']) == 0
  metrics = json.loads((tmp_path / 'fold-1' / 'metrics.json').read_text())
  losses = [epoch['train_loss'] for epoch in metrics['epochs']]
  assert losses[-1] < losses[0], losses
  assert metrics['config']['model']['kind'] == 'dlib'
  from gestaltxai.models import DlibFaceResNet
  from gestaltxai.train import load_checkpoint
  model, variables, config, _ = load_checkpoint(tmp_path / 'fold-1')
  assert isinstance(model, DlibFaceResNet) and config.frozen == ('stem',)
  assert variables['params']['fc']['bias'].shape == (2,)
