"""DeepLIFT with the rescale rule, as Captum's ``DeepLift`` and ``LayerDeepLift``.

Like Captum, the model runs once on the batch [inputs; references] (2B
images). The rescale rule sees both halves: each ReLU's backward uses the
secant slope (ReLU(x) - ReLU(r)) / (x - r) of the pair instead of its
derivative; linear layers and the max pool keep their gradients. Only the inputs' target logits are differentiated, so the result
is sum-to-delta: attributions add up to f(x) - f(r).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gestaltxai.models.rules import Rules
from gestaltxai.saliency.core import per_image, result_dtype
from gestaltxai.saliency.resize import upsample

#: Captum's threshold below which an input difference counts as zero (then
#: the ordinary gradient is used).
DEEPLIFT_EPS = 1e-10
#: Channels upsampled at once by layer DeepLIFT (bounds memory at 224x224).
LAYER_CHANNEL_CHUNK = 256


def _halves(a):
  half = a.shape[0] // 2
  return a[:half], a[half:]


def _twice(a):
  return jnp.concatenate([a, a])


@jax.custom_vjp
def rescale_relu(h):
  """ReLU on [inputs; references] with DeepLIFT's rescale multipliers backward."""
  return jax.nn.relu(h)


def _rescale_backward(h, g):
  x, r = _halves(h)
  delta_in = _twice(x - r)
  delta_out = _twice(jax.nn.relu(x) - jax.nn.relu(r))
  small = jnp.abs(delta_in) < DEEPLIFT_EPS
  secant = delta_out / jnp.where(small, 1, delta_in)
  return (g * jnp.where(small, (h > 0).astype(g.dtype), secant),)


rescale_relu.defvjp(lambda h: (jax.nn.relu(h), h), _rescale_backward)


# The max pool keeps its gradient: that is what Captum 0.9's DeepLift computes
# on this network (benchmarks/parity.py: 6e-8 in float64), and with a constant
# baseline it conserves exactly, as the reference activations are constant
# per channel there.
RESCALE = Rules(activation=rescale_relu)


def _multipliers(model, variables, pair, target, start):
  """d (sum of the inputs' target logits) / d pair, through the rescale rules."""
  rescaled = model.clone(rules=RESCALE)
  batch = target.shape[0]

  def score(h):
    logits = rescaled.apply(variables, h, start=start)[:batch]
    return jnp.take_along_axis(logits, target[:, None], axis=1).sum()

  return jax.grad(score)(pair)[:batch]


def deeplift(model, variables, x, target, *, key=None, baseline=0.0):
  """DeepLIFT (rescale), (B, H, W, 3) float32: (x - r) * multipliers.

  Captum ``DeepLift(model)`` with ``baselines=baseline`` (zero by default).
  Cost: 2 forwards + 2 backwards per image (the pair batch).
  """
  del key
  reference = per_image(baseline, x)
  pair = jnp.concatenate([x, reference])
  multipliers = _multipliers(model, variables, pair, target, 'input')
  return ((x - reference) * multipliers).astype(result_dtype(x))


def layer_deeplift(model, variables, x, target, *, key=None, layer='layer4', baseline=0.0,
                   channels='abs_sum'):
  """Layer DeepLIFT at ``layer``, upsampled to the input size, (B, H, W) float32.

  Captum ``LayerDeepLift(model, model.layer4)``: (A(x) - A(r)) times the
  rescale multipliers at the layer, each channel upsampled bicubically.
  ``channels='abs_sum'`` sums |channel maps| (the reference's relevance of
  the (B, C, H, W) attribution, without materialising it); 'sum' gives the
  signed sum over channels.
  """
  del key
  reference = per_image(baseline, x)
  activations = model.apply(variables, jnp.concatenate([x, reference]), stop=layer)
  multipliers = _multipliers(model, variables, activations, target, layer)
  act_x, act_r = _halves(activations)
  attribution = ((act_x - act_r) * multipliers).astype(result_dtype(x))  # (B, h, w, C)
  size = x.shape[1:3]
  if channels == 'sum':
    return upsample(attribution.sum(-1), size)
  if channels != 'abs_sum':
    raise ValueError(f"channels must be 'abs_sum' or 'sum', got {channels!r}")
  num_channels = attribution.shape[-1]
  chunk = max(d for d in range(1, min(num_channels, LAYER_CHANNEL_CHUNK) + 1)
              if num_channels % d == 0)
  groups = jnp.moveaxis(attribution.reshape(*attribution.shape[:3], -1, chunk), 3, 0)

  def add_group(total, group):
    return total + jnp.abs(upsample(group, size)).sum(-1), None

  total, _ = jax.lax.scan(add_group, jnp.zeros((x.shape[0], *size), attribution.dtype), groups)
  return total
