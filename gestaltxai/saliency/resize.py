"""Upsampling of layer maps to the input size, as PyTorch's ``F.interpolate`` does it."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

# PyTorch's bicubic kernel constant (Keys' a; jax.image uses -0.5).
BICUBIC_A = -0.75


def _cubic(t: np.ndarray) -> np.ndarray:
  a, t = BICUBIC_A, np.abs(t)
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@functools.lru_cache(maxsize=None)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) float32 weights of PyTorch bicubic, ``align_corners=False``.

  Source coordinate (i + 0.5) * in / out - 0.5 (not clamped, as PyTorch does
  for cubic), four taps at floor - 1 .. floor + 2 clamped to the border.
  """
  src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  base = np.floor(src)
  weights = np.zeros((out_size, in_size), np.float64)
  for offset in (-1, 0, 1, 2):
    taps = np.clip(base + offset, 0, in_size - 1).astype(int)
    np.add.at(weights, (np.arange(out_size), taps), _cubic(src - (base + offset)))
  return weights.astype(np.float32)


def upsample_bicubic(maps, size: tuple[int, int]):
  """(B, h, w) -> (B, H, W) float32, PyTorch ``interpolate(mode='bicubic')``."""
  rows = jnp.asarray(bicubic_matrix(maps.shape[1], size[0]))
  cols = jnp.asarray(bicubic_matrix(maps.shape[2], size[1]))
  return jnp.einsum('Hh,bhw,Ww->bHW', rows, maps.astype(jnp.float32), cols)
