"""dlib's HOG and CNN face detectors on FairFace400: faces found and alignment quality.

For every photo: the faces ``detect_landmarks(detector='auto')`` finds (HOG,
then the CNN where HOG finds none), and each detector's box alone. It prints

* faces found per detector under 'auto', and by each detector alone;
* the eye-centre residual after alignment at 224 px (distance of each
  aligned eye centre from the ArcFace template's; two per face): median and
  95th percentile per detector;
* the CNN -> HOG box map (centre shift and side in CNN box widths, medians
  over the photos both detectors find) and whether running the 68-point
  predictor on the mapped box instead of the CNN's own improves the
  landmarks: their distance from the landmarks on the HOG box (the geometry
  the predictor was trained on), as a share of the inter-ocular distance,
  with the map fitted on train/ and scored on val/ and the other way round;
  and the eye residual of the faces only the CNN finds, with either box
  (paired Wilcoxon test). The library runs the predictor on the CNN's own
  box unless the mapped one measurably improves that residual.

    python -m experiments.detector_residuals [--fairface ../shared/data/fairface400]

Takes about ten minutes of CPU (the CNN runs on every photo).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib

import numpy as np
from scipy import stats

from gestaltxai import data
from gestaltxai.data import detect
from gestaltxai.data.images import read_rgb

SIZE = 224
DEFAULT_FAIRFACE = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fairface400'


def eye_residuals(five: np.ndarray) -> np.ndarray:
  """(2,) distances of the aligned eye centres from the template's, at SIZE px."""
  target = data.template(SIZE)
  moved = data.transform_points(five, data.umeyama_similarity(five, target))
  return np.linalg.norm(moved[:2] - target[:2], axis=1)


def measure(path: pathlib.Path) -> dict:
  """One photo: the 'auto' result and each detector's largest box alone."""
  rgb = read_rgb(path)
  try:
    found = data.detect_landmarks(rgb, name=path.name)
    auto = {'detector': found.detector, 'five': found.five}
  except data.NoFaceError:
    auto = None
  boxes = {}
  for kind in ('hog', 'cnn'):
    found_boxes = detect.face_boxes(rgb, kind)
    boxes[kind] = found_boxes[0] if len(found_boxes) else None
  return {'name': f'{path.parent.name}/{path.name}', 'auto': auto, 'boxes': boxes}


def box_map(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
  """Median centre shift and side ratio taking CNN boxes onto HOG boxes (in CNN widths)."""
  shifts, scales = [], []
  for cnn, hog in pairs:
    width = cnn[2] - cnn[0]
    shifts.append(((hog[:2] + hog[2:]) / 2 - (cnn[:2] + cnn[2:]) / 2) / width)
    scales.append((hog[2] - hog[0]) / width)
  return {'shift': tuple(float(v) for v in np.median(shifts, 0)),
          'scale': float(np.median(scales))}


def mapped(box: np.ndarray, fitted: dict) -> np.ndarray:
  width = box[2] - box[0]
  centre = (box[:2] + box[2:]) / 2 + width * np.asarray(fitted['shift'])
  half = width * fitted['scale'] / 2
  return np.concatenate([centre - half, centre + half])


def summary(values) -> str:
  values = np.asarray(values)
  return f'median {np.median(values):.2f} px, 95th percentile {np.percentile(values, 95):.2f} px'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--fairface', type=pathlib.Path, default=DEFAULT_FAIRFACE)
  parser.add_argument('--workers', type=int, default=None)
  args = parser.parse_args()
  paths = sorted(args.fairface.glob('*/*.jpg'))
  with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
    results = list(pool.map(measure, paths, chunksize=4))
  photos = {r['name']: read_rgb(args.fairface / r['name']) for r in results}

  print(f'{len(results)} photos')
  auto = [r for r in results if r['auto']]
  for kind in ('hog', 'cnn'):
    alone = sum(r['boxes'][kind] is not None for r in results)
    faces = [r['auto']['five'] for r in auto if r['auto']['detector'] == kind]
    residuals = np.concatenate([eye_residuals(f) for f in faces])
    print(f"{kind}: alone finds {alone}; under 'auto' {len(faces)} faces, eye residual "
          f'{summary(residuals)}')
  print(f"auto: {len(auto)} of {len(results)} faces found")

  both = [r for r in results if r['boxes']['hog'] is not None and r['boxes']['cnn'] is not None]
  fitted = box_map([(r['boxes']['cnn'], r['boxes']['hog']) for r in both])
  print(f'CNN -> HOG box map on the {len(both)} photos both find: {fitted}')
  gaps = {'cnn box': [], 'mapped box': []}
  for fit_on, score_on in (('train', 'val'), ('val', 'train')):
    fitted = box_map([(r['boxes']['cnn'], r['boxes']['hog']) for r in both
                      if r['name'].startswith(fit_on)])
    for r in (r for r in both if r['name'].startswith(score_on)):
      rgb = photos[r['name']]
      reference = detect.landmarks_in_box(rgb, r['boxes']['hog'])
      iod = np.linalg.norm(reference[42:48].mean(0) - reference[36:42].mean(0))
      for label, box in (('cnn box', r['boxes']['cnn']),
                         ('mapped box', mapped(r['boxes']['cnn'], fitted))):
        distances = np.linalg.norm(detect.landmarks_in_box(rgb, box) - reference, axis=1)
        gaps[label].append(distances.mean() / iod)
  for label, values in gaps.items():
    print(f'68 points on the {label} vs on the HOG box (held-out half): mean distance '
          f'{np.median(values):.3f} IOD median, {np.percentile(values, 95):.3f} 95th percentile')

  cnn_only = [r for r in results if r['boxes']['hog'] is None and r['boxes']['cnn'] is not None]
  per_face = {}
  for label, to_box in (('cnn box', lambda b: b), ('mapped box', lambda b: mapped(b, fitted))):
    residuals = np.stack([eye_residuals(data.five_from_68(
        detect.landmarks_in_box(photos[r['name']], to_box(r['boxes']['cnn'])))) for r in cnn_only])
    per_face[label] = residuals.mean(1)
    print(f'{len(cnn_only)} faces only the CNN finds, predictor on the {label}: eye residual '
          f'{summary(residuals)}')
  better = (per_face['mapped box'] < per_face['cnn box']).mean()
  test = stats.wilcoxon(per_face['cnn box'], per_face['mapped box'])
  print(f'mapped box better for {better:.0%} of them; paired Wilcoxon p = {test.pvalue:.2f}')


if __name__ == '__main__':
  main()
