"""Region maps and coefficients against a transcription of the reference and NumPy loops."""

import numpy as np
import pytest
from matplotlib.path import Path
from skimage.measure import label as skimage_label

from gestaltxai import regions
from gestaltxai.regions import LAPA


def reference_transcription(segmap):
  """The reference's RQ1 region code (extract_region_coefficients.py), kept loop for loop."""

  def get_largest_connected_components(segmentation):
    labels = skimage_label(segmentation)
    return labels == np.argmax(np.bincount(labels.flat)[1:]) + 1

  def box(i):
    cc = get_largest_connected_components(segmap == i)
    return list(np.argwhere(cc).min(axis=0)) + list(np.argwhere(cc).max(axis=0))

  right_eye = np.array([box(i) for i in [2, 4]])
  left_eye = np.array([box(i) for i in [3, 5]])
  reye_x1, reye_y1, reye_x2, reye_y2 = right_eye[:, 1].min(), right_eye[:, 0].min(), right_eye[:, 3].max(), right_eye[:, 2].max()
  leye_x1, leye_y1, leye_x2, leye_y2 = left_eye[:, 1].min(), left_eye[:, 0].min(), left_eye[:, 3].max(), left_eye[:, 2].max()
  reye_w, reye_h = reye_x2 - reye_x1, reye_y2 - reye_y1
  reye_x1, reye_y1, reye_x2, reye_y2 = reye_x1 - int(0.2 * reye_w), reye_y1 - int(0.2 * reye_h), reye_x2 + int(0.1 * reye_w), reye_y2 + int(0.2 * reye_h)
  leye_w, leye_h = leye_x2 - leye_x1, leye_y2 - leye_y1
  leye_x1, leye_y1, leye_x2, leye_y2 = leye_x1 - int(0.1 * leye_w), leye_y1 - int(0.2 * leye_h), leye_x2 + int(0.2 * leye_w), leye_y2 + int(0.2 * leye_h)
  nose = box(6)
  nose_x1, nose_y1, nose_x2, nose_y2 = nose[1], nose[0], nose[3], nose[2]
  nose_y1 = min(reye_y1, leye_y1) + int(0.3 * min(reye_h, leye_h))
  mouth = np.array([box(i) for i in [7, 9]])
  mouth_x1, mouth_y1, mouth_x2, mouth_y2 = mouth[:, 1].min(), mouth[:, 0].min(), mouth[:, 3].max(), mouth[:, 2].max()
  mouth_y2 += int(0.5 * (mouth_y1 - nose_y2))
  mouth_y1, nose_y2 = 2 * [int(0.5 * (mouth_y1 + nose_y2))]
  mouth_x1, mouth_x2 = mouth_x1 - int(0.2 * (mouth_x2 - mouth_x1)), mouth_x2 + int(0.2 * (mouth_x2 - mouth_x1))
  mouth_y2 = min(mouth_y2, 224)
  region_map = np.zeros(shape=(224, 224, 3), dtype=np.uint8)
  region_map[reye_y1:reye_y2, reye_x1:reye_x2, 0] = 1
  region_map[leye_y1:leye_y2, leye_x1:leye_x2, 0] = 1
  region_map[nose_y1:nose_y2, nose_x1:nose_x2, 1] = 1
  region_map[mouth_y1:mouth_y2, mouth_x1:mouth_x2, 2] = 1
  for i in range(0, 224):
    for j in range(0, 224):
      region_map[i, j, :] = [1, 0, 0] if (region_map[i, j, :] == [1, 1, 0]).all() else region_map[i, j, :]
  return region_map


def ellipse(shape, cy, cx, ry, rx):
  rows, cols = np.mgrid[:shape[0], :shape[1]]
  return ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1


def synthetic_parsing(rng, mouth_y=170, spurious=True):
  """A LaPa map with jittered parts and small spurious blobs of the same labels."""
  s = (224, 224)
  m = np.zeros(s, np.uint8)
  j = lambda: rng.integers(-6, 7)
  m[ellipse(s, 112 + j(), 112, 100, 80)] = LAPA['skin']
  m[ellipse(s, 70 + j(), 150 + j(), 5, 22)] = LAPA['left_eyebrow']
  m[ellipse(s, 70 + j(), 74 + j(), 5, 22)] = LAPA['right_eyebrow']
  m[ellipse(s, 88 + j(), 150 + j(), 7, 15)] = LAPA['left_eye']
  m[ellipse(s, 88 + j(), 74 + j(), 7, 15)] = LAPA['right_eye']
  m[ellipse(s, 118 + j(), 112 + j(), 28, 14)] = LAPA['nose']
  m[ellipse(s, mouth_y - 6, 112 + j(), 6, 26)] = LAPA['upper_lip']
  m[ellipse(s, mouth_y, 112, 3, 20)] = LAPA['inner_mouth']
  m[ellipse(s, mouth_y + 6, 112 + j(), 7, 25)] = LAPA['lower_lip']
  if spurious:  # noise the largest-component rule must drop
    for label in (4, 5, 6, 7, 9):
      y, x = rng.integers(5, 219, 2)
      m[y:y + 3, x:x + 3] = label
  return m


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_reference_region_map_matches_the_reference_loop(seed):
  segmap = synthetic_parsing(np.random.default_rng(seed))
  expected = reference_transcription(segmap)
  got = regions.reference_region_map(segmap)
  eye, nose, mouth = (expected[..., k].astype(bool) for k in range(3))
  assert (eye & nose).sum() == 0  # the reference's overlap rule gave it to the eye
  np.testing.assert_array_equal(got == 1, eye)
  np.testing.assert_array_equal(got == 2, nose & ~eye)
  np.testing.assert_array_equal(got == 3, mouth & ~eye & ~nose)
  assert (got == 2).any() and (got == 3).any()


def test_eye_nose_overlap_goes_to_the_eye():
  segmap = synthetic_parsing(np.random.default_rng(4), spurious=False)
  boxes = regions.reference_region_boxes(segmap)
  ny1, nx1, ny2, nx2 = boxes['nose']
  ry1, rx1, ry2, rx2 = boxes['right_eye']
  assert ny1 < ry2 and nx1 < rx2  # the boxes overlap
  region = regions.reference_region_map(segmap)
  assert (region[ny1:ry2, nx1:min(rx2, nx2)] == 1).all()
  np.testing.assert_array_equal(region == 1, reference_transcription(segmap)[..., 0] == 1)


def test_mouth_box_clipped_at_the_bottom_border():
  segmap = synthetic_parsing(np.random.default_rng(5), mouth_y=212, spurious=False)
  expected = reference_transcription(segmap)
  got = regions.reference_region_map(segmap)
  assert regions.reference_region_boxes(segmap)['mouth'][2] == 224
  np.testing.assert_array_equal(got == 3, (expected[..., 2] == 1) & (expected[..., 0] == 0)
                                & (expected[..., 1] == 0))


def test_boxes_past_the_left_border_are_clipped():
  """The reference's negative slice start would wrap around; ours stops at 0."""
  segmap = np.zeros((224, 224), np.uint8)
  src = synthetic_parsing(np.random.default_rng(6), spurious=False)
  segmap[:, :170] = src[:, 54:]  # the image-left eye box now starts left of 0
  box = regions.reference_region_boxes(segmap)['right_eye']
  assert box[1] == 0
  region = regions.reference_region_map(segmap)
  assert (region[box[0]:box[2], 0] == 1).all()


@pytest.mark.parametrize('part,label', [('nose', 6), ('left_eye', 4), ('lower_lip', 9)])
def test_missing_part_is_a_clear_error(part, label):
  segmap = synthetic_parsing(np.random.default_rng(7))
  segmap[segmap == label] = LAPA['skin']
  with pytest.raises(ValueError, match=f'no {part}'):
    regions.reference_region_map(segmap)


def test_coefficients_match_a_numpy_loop():
  rng = np.random.default_rng(0)
  relevance = rng.random((3, 20, 24)).astype(np.float32)
  labels = rng.integers(-1, 6, (3, 20, 24))
  labels[1][labels[1] == 2] = 0  # region 2 empty in image 1
  got = np.asarray(regions.coefficients(relevance, labels, 5))
  for b in range(3):
    for r in range(5):
      mask = labels[b] == r
      if mask.any():
        assert got[b, r] == pytest.approx(relevance[b][mask].sum() / mask.sum(), rel=1e-5)
      else:
        assert np.isnan(got[b, r])
  assert np.isnan(got[1, 2])
  normalized = np.asarray(regions.normalized_coefficients(relevance, labels, 5))
  for b in range(3):
    scaled = (relevance[b] - relevance[b].min()) / (relevance[b].max() - relevance[b].min())
    mask = labels[b] == 3
    assert normalized[b, 3] == pytest.approx(scaled[mask].mean(), rel=1e-5)


def test_coefficients_reject_mismatched_shapes():
  with pytest.raises(ValueError, match='B, H, W'):
    regions.coefficients(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), int), 3)


def mean_face_points():
  """A plausible 68-point face in a 224 frame, from the template geometry."""
  t = np.linspace(0, np.pi, 17)
  jaw = np.stack([112 - 80 * np.cos(t), 100 + 115 * np.sin(t)], 1)
  brow_r = np.stack([np.linspace(50, 95, 5), 80 - 6 * np.sin(np.linspace(0, np.pi, 5))], 1)
  brow_l = brow_r * [-1, 1] + [224, 0]
  bridge = np.stack([np.full(4, 112.0), np.linspace(100, 135, 4)], 1)
  nostrils = np.stack([np.linspace(98, 126, 5), [145, 148, 150, 148, 145]], 1)
  a = np.linspace(0, 2 * np.pi, 7)[:-1]
  eye_r = np.stack([77 + 14 * np.cos(a + np.pi), 103 - 6 * np.sin(a)], 1)
  eye_l = eye_r * [-1, 1] + [224, 0]
  b = np.linspace(0, 2 * np.pi, 13)[:-1]
  outer = np.stack([112 - 30 * np.cos(b), 185 - 12 * np.sin(b)], 1)
  c = np.linspace(0, 2 * np.pi, 9)[:-1]
  inner = np.stack([112 - 20 * np.cos(c), 185 - 3 * np.sin(c)], 1)
  return np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, outer, inner])


def test_landmark_parsing_agrees_with_an_independent_rasteriser():
  points = mean_face_points()
  parsing = regions.landmark_parsing(points, 224)
  centres = np.stack(np.meshgrid(np.arange(224) + 0.0, np.arange(224) + 0.0), -1).reshape(-1, 2)
  for label, idx in ((LAPA['right_eye'], range(36, 42)), (LAPA['left_eye'], range(42, 48)),
                     (LAPA['inner_mouth'], range(60, 68))):
    inside = Path(points[list(idx)]).contains_points(centres).reshape(224, 224)
    ours = parsing == label
    assert (ours & inside).sum() / inside.sum() > 0.95
    assert (ours & ~inside).sum() <= 0.25 * inside.sum()  # only the outline band
  for part in range(1, 10):
    assert (parsing == part).any(), regions.LAPA_LABELS[part]
  assert parsing[int(points[30, 1]) - 5, int(points[30, 0])] == LAPA['nose']
  region = regions.reference_region_map(parsing)
  assert region[103, 77] == 1 and region[185, 112] == 3


def test_fine_regions_split_skin_by_landmarks():
  points = mean_face_points()
  fine = regions.fine_region_map(regions.landmark_parsing(points, 224), points)
  f = {n: i for i, n in enumerate(regions.FINE_REGIONS)}
  assert len(regions.FINE_REGIONS) >= 14
  assert fine[60, 112] == f['forehead']
  assert fine[int(points[8, 1]) - 4, 112] == f['chin']
  assert fine[150, 60] == f['right_cheek'] and fine[150, 164] == f['left_cheek']
  assert fine[103, 77] == LAPA['right_eye']
