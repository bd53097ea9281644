"""dlib landmarks and five-point alignment on real photos (FairFace, skimage's astronaut)."""

import csv
import os
import warnings

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data
from skimage import transform as skimage_transform

from gestaltxai import cli, data, regions, saliency
from gestaltxai.data import detect
from gestaltxai.data.pipeline import FaceDataset


def lstsq_similarity(src, dst):
  """Least-squares similarity by a linear solve: x' = a x - b y + tx, y' = b x + a y + ty."""
  rows, rhs = [], []
  for (x, y), (u, v) in zip(src, dst):
    rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    rhs += [u, v]
  a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
  return np.array([[a, -b, tx], [b, a, ty]])


@pytest.fixture(scope='module')
def fairface_landmarks(fairface_dir):
  """HOG's landmarks of the FairFace photos it finds (the first stage of detector='auto')."""
  found = {}
  for path in sorted(fairface_dir.glob('*/*.jpg')):
    rgb = np.asarray(Image.open(path).convert('RGB'))
    try:
      found[path] = data.detect_landmarks(rgb, name=str(path), detector='hog')
    except data.NoFaceError:
      continue
  return found


def eye_residuals(aligned_five):
  """(2,) distances of the aligned eye centres from the template's at 224 px."""
  return np.linalg.norm(np.asarray(aligned_five)[:2] - data.template(224)[:2], axis=1)


def test_alignment_on_400_real_photos(fairface_dir, fairface_landmarks):
  total = len(list(fairface_dir.glob('*/*.jpg')))
  assert total == 400
  # dlib's HOG detector with one upsampling finds 287 of the 400 (SOURCE.md).
  print(f'dlib found a face in {len(fairface_landmarks)} of {total} photos')
  assert 280 <= len(fairface_landmarks) <= 295
  target = data.template(224)
  residuals = []
  for landmarks in fairface_landmarks.values():
    matrix = data.umeyama_similarity(landmarks.five, target)
    expected = lstsq_similarity(landmarks.five, target)
    moved = data.transform_points(landmarks.five, matrix)
    np.testing.assert_allclose(moved, data.transform_points(landmarks.five, expected), atol=0.1)
    residuals.append(eye_residuals(moved))
  residuals = np.concatenate(residuals)
  median, p95 = np.median(residuals), np.percentile(residuals, 95)
  print(f'eye residual to the template: median {median:.2f} px, 95th percentile {p95:.2f} px')
  assert median < 6.0 and p95 < 14.0


def test_eye_centres_agree_with_the_five_point_model(fairface_landmarks):
  """dlib's 5-point model (eye corners) and the 68-point eye contours agree."""
  gaps = []
  for lm in fairface_landmarks.values():
    corner_centres = np.stack([lm.eye_corners[2:4].mean(0), lm.eye_corners[0:2].mean(0)])
    iod = np.linalg.norm(lm.five[1] - lm.five[0])
    gaps.append(np.linalg.norm(corner_centres - lm.five[:2], axis=1) / iod)
  assert np.median(gaps) < 0.08


def test_warp_matches_skimage(fairface_landmarks):
  path, lm = next(iter(fairface_landmarks.items()))
  rgb = np.asarray(Image.open(path).convert('RGB'))
  aligned, matrix = data.align(rgb.astype(np.float64), lm.five)
  inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
  expected = skimage_transform.warp(rgb.astype(np.float64), skimage_transform.AffineTransform(inverse),
                                    output_shape=(224, 224), order=1, mode='constant', cval=0,
                                    preserve_range=True)
  # Compare where the source point lies inside the photo (borders differ by convention).
  ys, xs = np.mgrid[:224, :224]
  src = data.transform_points(np.stack([xs.ravel(), ys.ravel()], 1), inverse[:2])
  inside = ((src[:, 0] >= 1) & (src[:, 0] <= rgb.shape[1] - 2) & (src[:, 1] >= 1)
            & (src[:, 1] <= rgb.shape[0] - 2)).reshape(224, 224)
  assert inside.mean() > 0.5
  np.testing.assert_allclose(aligned[inside], expected[inside], atol=1e-6)
  labels = (np.arange(rgb.shape[0])[:, None] // 16 + np.arange(rgb.shape[1])[None] // 16) % 7
  warped_labels, _ = data.align(labels.astype(np.uint8), lm.five, order=0)
  assert set(np.unique(warped_labels)) <= set(range(7))  # nearest neighbour: no blends


def test_astronaut_full_chain(resnet50):
  """Photo -> dlib -> alignment -> landmark parsing -> RQ1 regions -> saliency -> coefficients."""
  rgb = skimage_data.astronaut()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # dlib also takes a patch of the suit for a small face
    lm = data.detect_landmarks(rgb, name='astronaut')
  aligned, matrix = data.align(rgb, lm.five)
  points = data.transform_points(lm.points68, matrix)
  np.testing.assert_allclose(data.transform_points(lm.five, matrix)[:2], data.template()[:2], atol=8)
  region = regions.reference_region_map(regions.landmark_parsing(points, 224))
  bgr = aligned[..., ::-1].astype(np.float32) - np.array([91.4953, 103.8827, 131.0912], np.float32)
  model, variables = resnet50
  rel = saliency.relevance('gradient', model, variables, bgr[None])
  coef = np.asarray(regions.coefficients(rel, region[None], 4))
  assert coef.shape == (1, 4) and np.isfinite(coef).all() and (coef[0, 1:] > 0).all()


def test_no_face_and_bad_images_are_clear_errors():
  with pytest.raises(data.NoFaceError, match='no face found in blank.png'):
    data.detect_landmarks(np.full((120, 120, 3), 128, np.uint8), name='blank.png')
  with pytest.raises(ValueError, match='gray.png.*uint8'):
    data.detect_landmarks(np.zeros((50, 50), np.uint8), name='gray.png')
  with pytest.raises(ValueError, match='five'):
    data.align(np.zeros((50, 50, 3)), np.zeros((4, 2)))


def test_several_faces_warn_and_use_the_largest():
  small = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((256, 256)))
  canvas = np.zeros((512, 768, 3), np.uint8)
  canvas[:, :512] = skimage_data.astronaut()
  canvas[128:384, 512:] = small
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    lm = data.detect_landmarks(canvas, name='two.png')
  assert lm.num_faces >= 2 and any('largest' in str(w.message) for w in caught)
  assert lm.box[2] < 512  # the large face on the left


def test_region_figure_is_drawn(fairface_dir, tmp_path):
  from experiments import figure_regions
  out = tmp_path / 'regions.png'
  figure_regions.draw([fairface_dir / 'train' / '1.jpg'], out)
  with Image.open(out) as im:
    assert im.size[0] > 300


# What the issue measured on FairFace400 and asks of the default detector.
MIN_FOUND = 375
MAX_MEDIAN_EYE_RESIDUAL = 5.0
HOG_SAMPLE = 12


def test_auto_detector_finds_the_faces_hog_misses(fairface_dir, fairface_landmarks, tmp_path,
                                                  capsys):
  """`prepare folder` over the photos HOG misses (and a sample it finds), default detector.

  The CNN runs only where HOG finds nothing, so HOG's 287 plus what the CNN
  finds among the misses is what detector='auto' finds in all 400.
  """
  photos = sorted(fairface_dir.glob('*/*.jpg'))
  missed = [p for p in photos if p not in fairface_landmarks]
  sample = [p for p in photos if p in fairface_landmarks][::len(fairface_landmarks) // HOG_SAMPLE]
  genders = {}
  for split in ('train', 'val'):
    with open(fairface_dir / f'fairface_label_{split}.csv', newline='') as f:
      genders.update({row['file']: row['gender'] for row in csv.DictReader(f)})
  images = tmp_path / 'photos'
  images.mkdir()
  with open(tmp_path / 'labels.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['file', 'gender'])
    for path in missed + sample:
      name = f'{path.parent.name}_{path.name}'
      os.symlink(path, images / name)
      writer.writerow([name, genders[f'{path.parent.name}/{path.name}']])
  assert cli.main(['prepare', 'folder', '--images', str(images), '--labels',
                   str(tmp_path / 'labels.csv'), '--label-column', 'gender', '--folds', '3',
                   '--data-dir', str(tmp_path / 'data')]) == 0
  printed = capsys.readouterr().out
  ds = FaceDataset.open(tmp_path / 'data')
  detectors = {ds.names[i]: np.asarray(ds[i]['detector']).item().decode() for i in range(len(ds))}
  hog_names = {f'{p.parent.name}_{p.name}' for p in sample}
  assert {n for n, d in detectors.items() if d == 'hog'} == hog_names
  found_by_cnn = [i for i, n in enumerate(ds.names) if detectors[n] == 'cnn']
  assert len(found_by_cnn) == len(ds) - len(sample)
  found = len(fairface_landmarks) + len(found_by_cnn)
  print(f'detector=auto found {found} of {len(photos)} faces ({len(found_by_cnn)} by the CNN)')
  assert found >= MIN_FOUND
  assert f"{len(found_by_cnn)} found by dlib's CNN detector" in printed
  assert f"{len(sample)} found by dlib's HOG detector" in printed
  no_face = [s for s in ds.metadata['skipped'] if s['reason'].startswith('NoFaceError')]
  assert all('(detector hog then cnn)' in s['reason'] for s in no_face)
  print(f'{len(no_face)} without a face, {len(missed) - len(found_by_cnn) - len(no_face)} with '
        'landmarks that miss a part')
  residuals = {
      'hog': np.concatenate([eye_residuals(data.transform_points(
          lm.five, data.umeyama_similarity(lm.five, data.template(224))))
          for lm in fairface_landmarks.values()]),
      'cnn': np.concatenate([eye_residuals(ds[i]['five']) for i in found_by_cnn]),
  }
  for kind, values in residuals.items():
    median, p95 = np.median(values), np.percentile(values, 95)
    print(f'{kind}: eye residual after alignment median {median:.2f} px, 95th percentile '
          f'{p95:.2f} px')
    assert median <= MAX_MEDIAN_EYE_RESIDUAL, kind


def test_large_photos_are_searched_smaller_and_landmarked_in_full(fairface_landmarks):
  """A 11 MP photo: the detector sees about 2 MP, the predictor the full photo."""
  path, small = next(iter(fairface_landmarks.items()))
  rgb = np.asarray(Image.open(path).convert('RGB'))
  factor = 15
  big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * factor, rgb.shape[0] * factor),
                                               Image.BICUBIC))
  assert big.shape[0] * big.shape[1] > 5 * detect.MAX_SEARCH_PIXELS
  found = data.detect_landmarks(big, name='big.jpg')
  assert found.detector == 'hog'
  np.testing.assert_allclose((np.array(found.box) + 0.5) / factor - 0.5, small.box, atol=3)
  # Pixel centres: x in the photo is (x + 0.5) * factor - 0.5 in the enlarged one.
  np.testing.assert_allclose((found.five + 0.5) / factor - 0.5, small.five, atol=1.5)
