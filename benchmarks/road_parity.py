"""ROAD's imputation against pytorch-grad-cam's copy of the ROAD code's NoisyLinearImputer.

Both without noise (the noise is the only random part): the same image, the same removed
pixels, the largest absolute difference of the filled images. PyTorch and grad-cam are
benchmark dependencies only.

    python benchmarks/road_parity.py [--size 32] [--share 0.5]
"""

import argparse
import time

import jax.numpy as jnp
import numpy as np
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from gestaltxai.metrics import linear_imputation


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--share', type=float, default=0.5, help='share of pixels removed')
  parser.add_argument('--images', type=int, default=4)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  images = rng.random((args.images, args.size, args.size, 3)).astype(np.float32)
  removed = rng.random((args.images, args.size, args.size)) < args.share
  started = time.perf_counter()
  ours = np.asarray(linear_imputation(jnp.asarray(images), jnp.asarray(removed)))
  ours_seconds = time.perf_counter() - started
  imputer = NoisyLinearImputer(noise=0.0)
  started = time.perf_counter()
  theirs = np.stack([imputer(torch.from_numpy(image.transpose(2, 0, 1).copy()),
                             torch.from_numpy((~hole).astype(np.float32))).numpy()
                     .transpose(1, 2, 0) for image, hole in zip(images, removed)])
  theirs_seconds = time.perf_counter() - started
  print(f'{args.images} images {args.size}x{args.size}, {args.share:.0%} removed: max |ours - '
        f'grad-cam| = {np.abs(ours - theirs).max():.2e}; ours {ours_seconds:.2f} s (with '
        f'compilation), grad-cam {theirs_seconds:.2f} s')


if __name__ == '__main__':
  main()
