"""The grain input pipeline: plans, padding, resizing, worker processes, resumable iterators."""

import json
import shutil

import numpy as np
import pytest

from gestaltxai.data import schema, sources
from gestaltxai.data.build import build
from gestaltxai.data.pipeline import (PAD, FaceDataset, batch_dataset, batches, iterate,
                                      plan_batches, resize_record)


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
  directory = build(sources.SyntheticFaces(
      classes=('unaffected', 'wide_mouth'), per_class=6, progress=False,
      data_dir=str(tmp_path_factory.mktemp('faces')), file_format='array_record'))
  return FaceDataset.open(directory)


def test_names_labels_and_folds_come_from_the_metadata_as_the_records_hold_them(faces,
                                                                                tmp_path):
  # The independent side: each record parsed whole, in record order.
  records = [faces[i] for i in range(len(faces))]
  names = [r['name'].decode() if isinstance(r['name'], bytes) else str(r['name'])
           for r in records]
  folds = np.stack([r['folds'] for r in records])
  assert schema.index(faces.metadata) is not None  # the build recorded them
  assert faces.names == names
  np.testing.assert_array_equal(faces.labels, [int(r['label']) for r in records])
  np.testing.assert_array_equal(faces.indices(2, 'val'), np.flatnonzero(folds[:, 1] == 1))
  # A dataset built before the index was recorded is read from its records.
  older = tmp_path / 'older'
  shutil.copytree(faces.directory, older)
  metadata = json.loads((older / schema.METADATA_FILE).read_text())
  del metadata[schema.MetadataKey.INDEX]
  (older / schema.METADATA_FILE).write_text(json.dumps(metadata))
  reread = FaceDataset.open(older)
  assert schema.index(reread.metadata) is None
  assert reread.names == names and reread.num_folds == folds.shape[1]
  np.testing.assert_array_equal(reread.indices(2, 'val'), faces.indices(2, 'val'))


def test_every_process_count_sees_one_global_order():
  indices = np.arange(100, 123)  # 23 records: a short last batch
  kwargs = dict(seed=3, epochs=(0, 1), shuffle=True, flip=True, remainder='pad')
  whole = plan_batches(indices, 8, **kwargs)
  parts = [plan_batches(indices, 8, process_index=p, process_count=4, **kwargs) for p in range(4)]
  # Process p owns columns [2p, 2p + 2) of every global batch.
  np.testing.assert_array_equal(np.concatenate([p.records for p in parts], axis=1), whole.records)
  np.testing.assert_array_equal(np.concatenate([p.flips for p in parts], axis=1), whole.flips)
  assert whole.records.shape == (2 * 3, 8)
  epoch0, epoch1 = whole.records[:3].ravel(), whole.records[3:].ravel()
  for epoch in (epoch0, epoch1):
    assert sorted(epoch[epoch != PAD]) == indices.tolist() and (epoch == PAD).sum() == 1
  assert not np.array_equal(epoch0, epoch1)  # a new shuffle every epoch
  assert not whole.flips[whole.records == PAD].any()
  dropped = plan_batches(indices, 8, seed=3, epochs=(0, 1), shuffle=True, remainder='drop')
  np.testing.assert_array_equal(dropped.records, whole.records[[0, 1, 3, 4]])
  with pytest.raises(ValueError, match='multiple of the process count'):
    plan_batches(indices, 6, process_count=4)


def test_padded_batches_have_fixed_shapes_and_a_valid_mask(faces):
  indices = faces.indices(1, 'train')
  assert len(indices) % 3 == 1
  got = list(batches(faces, indices, 3, mean_bgr=faces.mean_bgr(1), pad=True, image_size=48))
  assert [b['image'].shape for b in got] == [(3, 48, 48, 3)] * (len(indices) // 3 + 1)
  assert got[-1]['valid'].tolist() == [True, False, False]
  assert got[-1]['index'][-1] == PAD and got[-1]['name'][-1] == ''
  assert not got[-1]['image'][-1].any()
  names = [n for b in got for n, v in zip(b['name'], b['valid']) if v]
  assert names == [faces.names[i] for i in indices]
  short = list(batches(faces, indices, 3, mean_bgr=faces.mean_bgr(1), image_size=48))
  assert [len(b['name']) for b in short] == [3] * (len(indices) // 3) + [1]


def test_resize_keeps_image_maps_and_points_registered(faces):
  record = faces[0]
  small = resize_record(record, 112)
  # Area resampling by 2 is the mean of each 2x2 block.
  blocks = record['image'].astype(np.float64).reshape(112, 2, 112, 2, 3).mean((1, 3))
  assert np.abs(small['image'] - blocks).max() <= 1
  # Nearest keeps labels as they are, at about a quarter of the pixels.
  assert set(np.unique(small['parsing'])) <= set(np.unique(record['parsing']))
  for label in np.unique(record['regions']):
    share = (small['regions'] == label).mean() / (record['regions'] == label).mean()
    assert 0.8 < share < 1.2
  # Pixel centres: x at 224 covers [x - 0.5, x + 0.5], so it lands at (x + 0.5) / 2 - 0.5.
  np.testing.assert_allclose(small['five'], (record['five'] + 0.5) / 2 - 0.5, atol=1e-5)
  eyes = np.round(small['five'][:2]).astype(int)
  assert (small['regions'][eyes[:, 1], eyes[:, 0]] == 1).all()  # the eye centres stay in 'eye'


def test_restored_iterator_and_worker_processes_give_the_same_batches(faces):
  plan = plan_batches(faces.indices(2, 'train'), 4, seed=1, epochs=(0, 1, 2), shuffle=True,
                      flip=True, remainder='drop')
  dataset = batch_dataset(faces, plan, mean_bgr=faces.mean_bgr(2), image_size=32)
  everything = list(iterate(dataset))
  assert len(everything) == plan.steps
  for workers in (0, 2):
    stream = iterate(dataset, workers=workers)
    for _ in range(3):
      next(stream)
    resumed = iterate(dataset, workers=workers)
    resumed.set_state(stream.get_state())
    rest = list(resumed)
    assert len(rest) == plan.steps - 3
    for a, b in zip(everything[3:], rest):
      np.testing.assert_array_equal(a['index'], b['index'])
      np.testing.assert_array_equal(a['image'], b['image'])
  flipped = plan.flips[3:].ravel()
  mirrored = np.concatenate([b['image'] for b in rest])[flipped]
  records = plan.records[3:].ravel()[flipped]
  from gestaltxai.data.pipeline import flip_record, to_model_input
  expected = [to_model_input(flip_record(resize_record(faces[i], 32))['image'],
                             faces.mean_bgr(2)) for i in records]
  np.testing.assert_allclose(mirrored, np.stack(expected))
