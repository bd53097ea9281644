"""DeepLIFT with the rescale rule, as Captum's ``DeepLift`` and ``LayerDeepLift``.

The model runs once on the batch [inputs; references]. Each ReLU's
backward uses the secant slope (ReLU(x) - ReLU(r)) / (x - r) of the pair
instead of its derivative; linear layers and the max pool keep their
gradients. The max pool's gradient is what Captum 0.9's DeepLift computes on
this network (``benchmarks/parity.py``: 1e-13 in float64), and with a
constant baseline it conserves exactly, the reference activations being
constant per channel there. Only the inputs' target logits are
differentiated, so attributions add up to f(x) - f(r) (summation to delta).

Captum runs one reference per input (2B images); a scalar baseline here
shares one reference row across the batch (B + 1 images), about half the
cost, with the same result.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gestaltxai.models.contract import Capability
from gestaltxai.models.rules import Rules
from gestaltxai.saliency.checks import broadcast_baseline, one_of
from gestaltxai.saliency.chunking import chunked_sum
from gestaltxai.saliency.core import result_dtype, target_score
from gestaltxai.saliency.registry import method
from gestaltxai.saliency.resize import upsample

#: Captum's threshold below which an input difference counts as zero (then
#: the ordinary gradient is used).
DEEPLIFT_EPS = 1e-10
#: Channels upsampled at once by layer DeepLIFT (bounds memory at 224x224).
LAYER_CHANNEL_CHUNK = 256


@functools.lru_cache(maxsize=None)
def rescale_relu(num_references: int):
  """ReLU on [inputs; references] whose backward uses DeepLIFT's rescale multipliers.

  The last ``num_references`` rows are references: one shared by every input,
  or one per input. Only the inputs' outputs are explained, so the
  references' own multipliers never reach the result (their cotangent is
  zero) and are left as the ReLU's derivative.
  """

  @jax.custom_vjp
  def relu(h):
    return jax.nn.relu(h)

  def backward(h, g):
    x, r = h[:-num_references], h[-num_references:]
    delta_in = x - r
    delta_out = jax.nn.relu(x) - jax.nn.relu(r)
    small = jnp.abs(delta_in) < DEEPLIFT_EPS
    secant = jnp.where(small, (x > 0).astype(g.dtype), delta_out / jnp.where(small, 1, delta_in))
    return (g * jnp.concatenate([secant, (r > 0).astype(g.dtype)]),)

  relu.defvjp(lambda h: (jax.nn.relu(h), h), backward)
  return relu


def _references(x, baseline):
  """One shared reference row for a scalar baseline, else one per image."""
  if jnp.ndim(baseline) == 0:
    return jnp.full((1, *x.shape[1:]), baseline, x.dtype)
  return broadcast_baseline(baseline, x)


def _multipliers(model, variables, pair, target, layer, num_references, images=None):
  """d (sum of the inputs' target logits) / d inputs (or the layer of ``images``), through
  the rescale rule."""
  rescaled = model.with_rules(Rules(activation=rescale_relu(num_references)))
  return jax.grad(target_score(rescaled, variables, target, layer, images))(pair)[
      :target.shape[0]]


@method('deeplift', 'DeepLIFT', 'DEEPLIFT', 'DeepLift', needs=(Capability.RULES,), cost=(1, 1),
        traced=('baseline',))
def deeplift(model, variables, x, target, *, key=None, baseline=0.0):
  """DeepLIFT (rescale), (B, H, W, 3) float32: (x - r) * multipliers.

  Captum ``DeepLift(model)`` with ``baselines=baseline`` (zero by default;
  a scalar, (C,), (B, 1, 1, 1) or image-shaped). Cost: 1 forward + 1 backward per image,
  plus one reference image per batch for a scalar baseline.
  """
  del key
  references = _references(x, baseline)
  pair = jnp.concatenate([x, references])
  multipliers = _multipliers(model, variables, pair, target, None, len(references))
  return ((x - references) * multipliers).astype(result_dtype(x))


@method('layer_deeplift', 'LayerDeepLIFT', 'LayerDeepLift', space='layer',
        needs=(Capability.LAYERS, Capability.RULES), cost=(1, 1), traced=('baseline',),
        checks={'channels': one_of(('abs_sum', 'sum'))})
def layer_deeplift(model, variables, x, target, *, key=None, layer=None, baseline=0.0,
                   channels='abs_sum'):
  """Layer DeepLIFT at ``layer``, upsampled to the input size, (B, H, W) float32.

  Captum ``LayerDeepLift(model, model.layer4)``: (A(x) - A(r)) times the
  rescale multipliers at the layer, each channel upsampled bicubically.
  ``channels='abs_sum'`` sums |channel maps| (the reference's relevance of
  the (B, C, H, W) attribution, without materialising it); 'sum' gives the
  signed sum over channels.
  """
  del key
  layer = model.check_layer(layer)
  references = _references(x, baseline)
  images = jnp.concatenate([x, references])
  activations = model.features(variables, images, layer)
  multipliers = _multipliers(model, variables, activations, target, layer, len(references),
                             images)
  act_x, act_r = activations[:x.shape[0]], activations[x.shape[0]:]
  attribution = ((act_x - act_r) * multipliers).astype(result_dtype(x))  # (B, h, w, C)
  size = x.shape[1:3]
  if channels == 'sum':
    return upsample(attribution.sum(-1), size)
  # One (B, h, w) channel map per item, upsampled and summed LAYER_CHANNEL_CHUNK at a time:
  # the (B, C, H, W) attribution never exists at once.
  channel_maps = jnp.moveaxis(attribution, -1, 0)
  return chunked_sum(lambda channel: jnp.abs(upsample(channel, size)), channel_maps,
                     LAYER_CHANNEL_CHUNK)
