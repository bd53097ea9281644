"""Perturbation methods: occlusion, the drop in the target logit when a window is replaced."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency.checks import (broadcast_baseline, optional, positive_int,
                                        positive_ints)
from gestaltxai.saliency.chunking import auto_chunked_map
from gestaltxai.saliency.core import gather_targets, result_dtype
from gestaltxai.saliency.registry import method


def _pair(value) -> tuple[int, int]:
  return (value, value) if np.ndim(value) == 0 else tuple(value)


def window_masks(size: int, window: int, stride: int) -> np.ndarray:
  """(count, size) float32: row k marks pixels [k * stride, k * stride + window).

  Captum's placement: ``ceil((size - window) / stride) + 1`` windows, the
  last one cut at the border.
  """
  if window > size:
    raise ValueError(f'occlusion window {window} is larger than the image side {size}')
  if stride > window and size > window:
    raise ValueError(f'occlusion stride {stride} exceeds the window {window}: pixels would '
                     'be left unoccluded')
  count = -(-(size - window) // stride) + 1
  starts = np.arange(count)[:, None] * stride
  pixels = np.arange(size)[None, :]
  return ((pixels >= starts) & (pixels < starts + window)).astype(np.float32)


def num_windows(height: int, width: int, window, stride) -> int:
  """Occlusion windows over a height x width image (int or (height, width) window and stride)."""
  (wh, ww), (sh, sw) = _pair(window), _pair(stride)
  return len(window_masks(height, wh, sh)) * len(window_masks(width, ww, sw))


@method('occlusion', 'Occlusion',
        cost=lambda o, height, width: (num_windows(height, width, o['window'], o['stride']) + 1,
                                       0),
        traced=('baseline',),
        checks={'window': positive_ints, 'stride': positive_ints,
                'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def occlusion(model, variables, x, target, *, key=None, window=15, stride=8, baseline=0.0,
              max_batch=None, memory_budget=None):
  """Occlusion, (B, H, W, 3) float32. Cost: (windows + 1) forwards, no backward.

  Each window (all channels) is set to ``baseline``; a pixel's attribution
  is the mean, over the windows that cover it, of f(x) - f(occluded), f the
  target logit. Defaults (15x15, stride 8, baseline 0: 784 windows at
  224x224) are the reference's Captum ``Occlusion(sliding_window_shapes=
  (3, 15, 15), strides=(3, 8, 8), baselines=0)``.

  Args:
    window, stride: int or (height, width), in pixels.
    baseline: the fill value: a scalar, (C,), (B, 1, 1, 1) or image-shaped.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  (wh, ww), (sh, sw) = _pair(window), _pair(stride)
  rows = jnp.asarray(window_masks(x.shape[1], wh, sh))
  cols = jnp.asarray(window_masks(x.shape[2], ww, sw))
  fill = broadcast_baseline(baseline, x)

  def target_logits(images):
    return gather_targets(model.logits(variables, images), target)

  def occluded_logits(index):
    r, c = index
    mask = (rows[r][:, None] * cols[c][None, :])[None, :, :, None].astype(x.dtype)
    return target_logits(x * (1 - mask) + fill * mask)

  n_rows, n_cols = rows.shape[0], cols.shape[0]
  index = jnp.divmod(jnp.arange(n_rows * n_cols), n_cols)
  scores = auto_chunked_map(occluded_logits, index, x.shape[0], max_batch,
                            memory_budget)  # (windows, B)
  drops = (target_logits(x)[None] - scores).reshape(n_rows, n_cols, -1)
  # Windows are separable (row band x column band), so the sum of each
  # window's drop over its pixels is two small matrix products.
  total = jnp.einsum('rh,rcb,cw->bhw', rows, drops, cols)
  coverage = rows.sum(0)[:, None] * cols.sum(0)[None, :]
  attribution = total / coverage
  return jnp.broadcast_to(attribution[..., None], x.shape).astype(result_dtype(x))
