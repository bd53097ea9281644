"""Faithfulness: does changing what a map calls relevant change the prediction?

Petsiuk et al., "RISE" (BMVC 2018): **deletion** sets pixels to a baseline
in order of relevance, most relevant first, and follows the probability of
the target class; a faithful map makes it fall fast (a small area).
**Insertion** starts from a blurred copy of the image and restores pixels in
the same order; a faithful map makes the probability rise fast (a large
area). **Region deletion** removes whole regions in the order of their
coefficients, the analogue for region coefficients at R + 1 forwards.

Every function here is pure and jitted, takes any model
:func:`~gestaltxai.models.contract.explainable` accepts (level 1: logits),
and runs all steps of a batch in one computation, ``max_batch`` images per
forward. Areas are normalised to [0, 1]: the x axis is the share of pixels
(regions) changed, the y axis the target's softmax probability, integrated by
the trapezoid rule. A random order is the chance level: evaluate the same
function with ``relevance=jax.random.uniform(key, (B, H, W))``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gestaltxai.models.contract import explainable
from gestaltxai.saliency.checks import broadcast_baseline
from gestaltxai.saliency.chunking import auto_chunked_map
from gestaltxai.saliency.core import gather_targets, predicted_class
from gestaltxai.saliency.region import per_pixel, remove_regions, with_label_zero

Array = jax.Array

#: Perturbation steps of deletion and insertion (1% of the pixels each).
DEFAULT_STEPS = 100
#: Insertion's starting image: a Gaussian blur of this sigma, in pixels. RISE
#: blurs with sigma 5 cut to an 11x11 kernel; ours is cut at
#: :data:`BLUR_TRUNCATE` sigmas, as ``scipy.ndimage.gaussian_filter``.
BLUR_SIGMA = 5.0
BLUR_TRUNCATE = 4.0


class Curve(NamedTuple):
  """A perturbation curve (a pytree: returned from jitted code).

  Attributes:
    fractions: (S + 1,) float32, the share of pixels (regions) changed at
      each point, from 0 to 1.
    probabilities: (B, S + 1) float32, the target's softmax probability at
      each point.
    area: (B,) float32, the trapezoid area under ``probabilities`` over
      ``fractions``, in [0, 1].
  """

  fractions: Array
  probabilities: Array
  area: Array


def area_under_curve(probabilities: Array, fractions: Array) -> Array:
  """(B, S + 1), (S + 1,) -> (B,): the trapezoid rule."""
  heights = (probabilities[:, 1:] + probabilities[:, :-1]) / 2
  return (heights * jnp.diff(fractions)).sum(-1)


def relevance_ranks(relevance: Array) -> Array:
  """(B, H, W) -> (B, H, W) int32: 0 for each image's most relevant pixel.

  Equal values keep pixel order (row-major), so the order is deterministic.
  """
  batch = relevance.shape[0]
  flat = relevance.reshape(batch, -1)
  order = jnp.argsort(-flat, axis=1, stable=True)
  positions = jnp.broadcast_to(jnp.arange(flat.shape[1], dtype=jnp.int32), flat.shape)
  ranks = jnp.zeros_like(positions).at[jnp.arange(batch)[:, None], order].set(positions)
  return ranks.reshape(relevance.shape)


def step_counts(num_pixels: int, steps: int) -> np.ndarray:
  """(steps + 1,) int: pixels changed after step k = 0..steps, floor(k * num_pixels / steps)."""
  return np.arange(steps + 1) * num_pixels // steps


def gaussian_blur(x: Array, sigma: float = BLUR_SIGMA) -> Array:
  """(B, H, W, C) images blurred per channel; ``scipy.ndimage.gaussian_filter`` over H and W
  with ``mode='reflect'`` and ``truncate=BLUR_TRUNCATE``."""
  if not sigma > 0:
    raise ValueError(f'blur sigma must be positive, got {sigma!r}')
  radius = int(BLUR_TRUNCATE * sigma + 0.5)
  if radius >= min(x.shape[1:3]):
    raise ValueError(f'a blur of sigma {sigma} reaches {radius} pixels, more than the image '
                     f'{x.shape[1]}x{x.shape[2]} holds')
  offsets = np.arange(-radius, radius + 1)
  taps = np.exp(-0.5 * (offsets / sigma)**2)
  channels = x.shape[-1]
  column = jnp.asarray(np.tile((taps / taps.sum())[:, None, None, None], (1, 1, 1, channels)),
                       x.dtype)  # (K, 1, 1, C): one filter per channel
  # numpy's 'symmetric' (the edge pixel repeated) is scipy's 'reflect'.
  padded = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='symmetric')
  conv = functools.partial(lax.conv_general_dilated, window_strides=(1, 1), padding='VALID',
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                           feature_group_count=channels, precision=lax.Precision.HIGHEST)
  return conv(conv(padded, column), column.transpose(1, 0, 2, 3))


def target_probability(model, variables, x: Array, target: Array) -> Array:
  """(B,) float32: the softmax probability of each image's target class."""
  logits = model.logits(variables, x).astype(jnp.float32)
  return gather_targets(jax.nn.softmax(logits), target)


def _curve(model, variables, target, image_after, counts: np.ndarray, total: int,
           max_batch, memory_budget) -> Curve:
  """The curve of ``image_after(count)`` for each count, in one chunked computation."""
  probability = lambda count: target_probability(model, variables, image_after(count), target)
  counts_ = jnp.asarray(counts)
  probabilities = auto_chunked_map(probability, counts_, target.shape[0], max_batch,
                                   memory_budget).T
  fractions = jnp.asarray(counts / total, jnp.float32)
  return Curve(fractions, probabilities, area_under_curve(probabilities, fractions))


def _prepare(model, variables, x, target):
  model = explainable(model)
  target = predicted_class(model, variables, x) if target is None else jnp.asarray(target)
  return model, target


def _pixel_curve(model, variables, x, relevance, target, start, end, steps, max_batch,
                 memory_budget):
  """The curve of images showing ``end`` at the most relevant pixels and ``start`` elsewhere."""
  if relevance.shape != x.shape[:3]:
    raise ValueError(f'relevance must be (B, H, W) = {x.shape[:3]} like the images, got '
                     f'{relevance.shape}')
  model, target = _prepare(model, variables, x, target)
  ranks = relevance_ranks(relevance)[..., None]
  num_pixels = x.shape[1] * x.shape[2]
  return _curve(model, variables, target, lambda count: jnp.where(ranks < count, end, start),
                step_counts(num_pixels, steps), num_pixels, max_batch, memory_budget)


@functools.partial(jax.jit, static_argnames=('model', 'steps', 'max_batch', 'memory_budget'))
def deletion(model, variables, x: Array, relevance: Array, target: Optional[Array] = None, *,
             steps: int = DEFAULT_STEPS, baseline=0.0,
             max_batch: Optional[int] = None, memory_budget: Optional[int] = None) -> Curve:
  """Deletion: the most relevant pixels set to ``baseline`` first, ``steps`` steps.

  Args:
    model, variables: any model :func:`explainable` accepts, and its variables.
    x: (B, H, W, C) float images.
    relevance: (B, H, W) float maps (e.g. ``saliency.relevance(...)``).
    target: (B,) int classes; the predicted class when None.
    steps: after step k, floor(k * H * W / steps) pixels are removed (all
      channels); steps + 1 forwards per image.
    baseline: the fill: a scalar (0: the channel mean), (C,), (B, 1, 1, 1) or
      image-shaped.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (default: from the backend, see ``saliency.chunking``).

  Returns:
    :class:`Curve` from the image (fraction 0) to the baseline (fraction 1).
    Lower areas are better.
  """
  return _pixel_curve(model, variables, x, relevance, target, x, broadcast_baseline(baseline, x),
                      steps, max_batch, memory_budget)


@functools.partial(jax.jit, static_argnames=('model', 'steps', 'blur_sigma', 'max_batch',
                                             'memory_budget'))
def insertion(model, variables, x: Array, relevance: Array, target: Optional[Array] = None, *,
              steps: int = DEFAULT_STEPS, blur_sigma: float = BLUR_SIGMA,
              max_batch: Optional[int] = None, memory_budget: Optional[int] = None) -> Curve:
  """Insertion: the most relevant pixels restored first into a blurred image.

  Arguments as :func:`deletion`; ``blur_sigma`` is the Gaussian blur of the
  starting image (:func:`gaussian_blur`).

  Returns:
    :class:`Curve` from the blurred image (fraction 0) to the image
    (fraction 1). Higher areas are better.
  """
  return _pixel_curve(model, variables, x, relevance, target, gaussian_blur(x, blur_sigma), x,
                      steps, max_batch, memory_budget)


@functools.partial(jax.jit, static_argnames=('model', 'max_batch', 'memory_budget'))
def region_deletion(model, variables, x: Array, coefficients: Array, regions: Array,
                    target: Optional[Array] = None, *, baseline=0.0,
                    max_batch: Optional[int] = None,
                    memory_budget: Optional[int] = None) -> Curve:
  """Region deletion: whole regions set to ``baseline``, the highest coefficient first.

  Args:
    coefficients: (B, num_regions) float, column k for label k (column 0,
      no region, is ignored); NaN (a region absent from the image) goes last.
    regions: (B, H, W) int labels; label 0 and labels outside
      1..num_regions - 1 are never removed.
    Others as :func:`deletion`.

  Returns:
    :class:`Curve` of R + 1 points (R + 1 forwards per image), fractions k / R
    for k regions removed. Lower areas are better.
  """
  if regions.shape != x.shape[:3] or coefficients.ndim != 2:
    raise ValueError(f'expected coefficients (B, num_regions) and regions (B, H, W) = '
                     f'{x.shape[:3]}; got {coefficients.shape} and {regions.shape}')
  model, target = _prepare(model, variables, x, target)
  num_players = coefficients.shape[1] - 1
  players = coefficients[:, 1:]
  order = relevance_ranks(jnp.where(jnp.isnan(players), -jnp.inf, players))
  fill, labels = broadcast_baseline(baseline, x), regions.astype(jnp.int32)

  def image_after(count):
    return remove_regions(x, fill, labels, with_label_zero(order < count))

  return _curve(model, variables, target, image_after, np.arange(num_players + 1), num_players,
                max_batch, memory_budget)


def coefficient_map(coefficients: Array, regions: Array) -> Array:
  """(B, num_regions), (B, H, W) int -> (B, H, W): each pixel its region's coefficient.

  Label 0 and labels outside 1..num_regions - 1 get 0. Deletion and
  insertion of this map order pixels region by region (row-major within a
  region): a region method's coefficients as a pixel map.
  """
  values, players = per_pixel(jnp.nan_to_num(coefficients), regions.astype(jnp.int32))
  return jnp.where(players, values, 0)
