"""How far bfloat16 compute moves each method's relevance maps and region coefficients.

    python -m benchmarks.bf16_agreement [--weights resnet50_ft_weight.pkl] [--images DIR]

Real faces (FairFace, aligned by dlib), the full ResNet-50, float32 versus
bfloat16 compute (parameters float32), the same predicted class. Reports per
method: Pearson correlation of the relevance maps, their relative L2 error,
and the largest relative error of the eye/nose/mouth coefficients.
"""

from __future__ import annotations

import argparse
import pathlib

import jax.numpy as jnp
import numpy as np
from PIL import Image

from gestaltxai import data, regions, saliency
from gestaltxai.data import builders
from gestaltxai.data.pipeline import VGGFACE2_MEAN_BGR, to_model_input
from gestaltxai.models import ResNet50, load_vggface2, port_vggface2, random_vggface2_state_dict

DEFAULT_IMAGES = pathlib.Path(__file__).resolve().parents[2] / 'shared/data/fairface400/train'
DEFAULT_METHODS = ('gradient', 'input_x_gradient', 'integrated_gradients', 'smoothgrad',
                   'grad_cam', 'guided_backprop', 'lrp_epsilon_plus_flat', 'deeplift')


def aligned_faces(directory, count):
  images, maps = [], []
  for path in sorted(directory.glob('*.jpg')):
    try:
      example = builders.aligned_example(np.asarray(Image.open(path).convert('RGB')), path.name)
    except data.NoFaceError:
      continue
    images.append(example['image'])
    maps.append(regions.reference_region_map(example['parsing']))
    if len(images) == count:
      break
  return to_model_input(np.stack(images), VGGFACE2_MEAN_BGR), np.stack(maps)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--weights', type=pathlib.Path)
  parser.add_argument('--images', type=pathlib.Path, default=DEFAULT_IMAGES)
  parser.add_argument('--count', type=int, default=4)
  parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS))
  args = parser.parse_args()
  if args.weights:
    variables = load_vggface2(args.weights)
  else:
    variables = port_vggface2(random_vggface2_state_dict(0, num_classes=12))
  classes = variables['params']['fc']['kernel'].shape[1]
  x, region_maps = aligned_faces(args.images, args.count)
  x = jnp.asarray(x)
  f32, bf16 = ResNet50(classes), ResNet50(classes, dtype=jnp.bfloat16)
  target = saliency.predict(f32, variables, x)
  same_top1 = bool((saliency.predict(bf16, variables, x) == target).all())
  print(f'{len(x)} faces; bfloat16 top-1 equals float32: {same_top1}')
  print(f'{"method":24s} {"map corr":>9s} {"rel L2":>8s} {"coef rel err":>12s}')
  for name in args.methods:
    maps = [np.asarray(saliency.relevance(name, m, variables, x, target), np.float64)
            for m in (f32, bf16)]
    corr = np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(*maps)])
    rel_l2 = np.linalg.norm(maps[1] - maps[0]) / np.linalg.norm(maps[0])
    coefs = [np.asarray(regions.coefficients(jnp.asarray(m), jnp.asarray(region_maps), 4))[:, 1:]
             for m in maps]
    coef_err = np.max(np.abs(coefs[1] - coefs[0]) / np.abs(coefs[0]))
    print(f'{name:24s} {corr:9.4f} {rel_l2:8.3f} {coef_err:12.3f}', flush=True)


if __name__ == '__main__':
  main()
