"""Upsampling of layer maps to the input size, as PyTorch's ``F.interpolate`` does it.

Each mode is a pair of (out, in) weight matrices applied to rows and columns,
so resizing is two small matrix products on the device.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency.core import result_dtype

# PyTorch's bicubic kernel constant (Keys' a; jax.image uses -0.5).
BICUBIC_A = -0.75


def _cubic(t: np.ndarray) -> np.ndarray:
  a, t = BICUBIC_A, np.abs(t)
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _bicubic(in_size, out_size):
  # Source coordinate (i + 0.5) * in / out - 0.5, not clamped (PyTorch for
  # cubic); four taps at floor - 1 .. floor + 2 clamped to the border.
  src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  base = np.floor(src)
  weights = np.zeros((out_size, in_size))
  for offset in (-1, 0, 1, 2):
    taps = np.clip(base + offset, 0, in_size - 1).astype(int)
    np.add.at(weights, (np.arange(out_size), taps), _cubic(src - (base + offset)))
  return weights


def _linear_between(src, in_size, out_size):
  """(out, in) weights of linear interpolation at source positions ``src`` (out,)."""
  low = np.minimum(np.floor(src).astype(int), in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = src - low
  weights = np.zeros((out_size, in_size))
  np.add.at(weights, (np.arange(out_size), low), 1 - frac)
  np.add.at(weights, (np.arange(out_size), high), frac)
  return weights


def _bilinear(in_size, out_size):
  # Half-pixel centres, source clamped at 0 (PyTorch align_corners=False and
  # cv2.resize INTER_LINEAR when enlarging).
  src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
  return _linear_between(src, in_size, out_size)


def _bilinear_aligned(in_size, out_size):
  # Corner pixels aligned, source i (in - 1) / (out - 1) (PyTorch align_corners=True,
  # nn.UpsamplingBilinear2d, which pytorch-grad-cam's Score-CAM uses for its masks).
  src = np.arange(out_size) * ((in_size - 1) / max(out_size - 1, 1))
  return _linear_between(src, in_size, out_size)


def _nearest(in_size, out_size):
  # PyTorch's legacy 'nearest': floor(i * in / out).
  src = np.minimum(np.floor(np.arange(out_size) * (in_size / out_size)).astype(int), in_size - 1)
  weights = np.zeros((out_size, in_size))
  weights[np.arange(out_size), src] = 1.0
  return weights


_MODES = {'bicubic': _bicubic, 'bilinear': _bilinear, 'bilinear_aligned': _bilinear_aligned,
          'nearest': _nearest}


@functools.lru_cache(maxsize=None)
def resize_matrix(in_size: int, out_size: int, mode: str = 'bicubic') -> np.ndarray:
  """(out_size, in_size) float64 interpolation weights along one axis."""
  if mode not in _MODES:
    raise ValueError(f'unknown interpolation {mode!r}; choose from {sorted(_MODES)}')
  return _MODES[mode](in_size, out_size)


def upsample(maps, size: tuple[int, int], mode: str = 'bicubic'):
  """(B, h, w) or (B, h, w, C) -> (B, H, W[, C]), at least float32, PyTorch ``interpolate``."""
  dtype = result_dtype(maps)
  rows = jnp.asarray(resize_matrix(maps.shape[1], size[0], mode), dtype)
  cols = jnp.asarray(resize_matrix(maps.shape[2], size[1], mode), dtype)
  return jnp.einsum('Hh,bhw...,Ww->bHW...', rows, maps.astype(dtype), cols)

