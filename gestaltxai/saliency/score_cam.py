"""Class activation maps weighted by forward passes, one per channel of the layer.

* Score-CAM (Wang et al. 2020): channel c's weight is the softmax, over
  channels, of the target logit of the image masked by channel c's
  activation map (upsampled, scaled to [0, 1]);
* Ablation-CAM (Desai and Ramaswamy 2020): channel c's weight is the
  relative drop of the target logit when channel c is zeroed.

Both make one pass per channel (2,048 at layer4 of the ResNet-50): the
passes run ``max_batch`` images at a time inside one compiled computation
(pytorch-grad-cam runs them from Python, 2 to 16 s an image). Results are
(B, H, W) float32 at the input size, bicubic as the other CAMs; like them
no ReLU unless ``relu=True`` (pytorch-grad-cam applies one, then min-max
scaling).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gestaltxai.models.contract import Capability
from gestaltxai.saliency.checks import optional, positive_int
from gestaltxai.saliency.chunking import auto_chunked_map
from gestaltxai.saliency.core import gather_targets, result_dtype
from gestaltxai.saliency.registry import method
from gestaltxai.saliency.resize import upsample

#: pytorch-grad-cam's stabiliser of the mask scaling (max - min + eps).
SCORE_CAM_EPS = 1e-8
#: Channels at each layer of the ResNet-50 (256 * 2^i): what the declared cost
#: counts. Another network makes one pass per channel of its own layer.
RESNET50_CHANNELS = {'layer1': 256, 'layer2': 512, 'layer3': 1024, 'layer4': 2048}
#: The layer the declared cost assumes when ``layer`` is None (the ResNet's default).
RESNET50_DEFAULT_LAYER = 'layer4'


def channel_passes(options, height, width) -> tuple[int, int]:
  """(1 + C, 0): one forward for the activations, one pass per channel of ``layer``
  (C counted for the ResNet-50, :data:`RESNET50_CHANNELS`)."""
  del height, width
  layer = options['layer'] or RESNET50_DEFAULT_LAYER
  if layer not in RESNET50_CHANNELS:
    raise ValueError(f'the cost of a per-channel CAM is counted for the ResNet-50 layers '
                     f'{sorted(RESNET50_CHANNELS)}; got layer {layer!r}')
  return 1 + RESNET50_CHANNELS[layer], 0


def _weighted_sum(weights, activations, x, relu):
  """sum_c weights_c A_c, (B, H, W) at the input size."""
  cam = jnp.einsum('bc,bhwc->bhw', weights, activations)
  cam = jnp.maximum(cam, 0.0) if relu else cam
  return upsample(cam, x.shape[1:3], 'bicubic')


def channel_mask(activations, channel, size):
  """Channel ``channel`` of (B, h, w, C) activations as a (B, H, W) mask in [0, 1]:
  bilinear with aligned corners (``nn.UpsamplingBilinear2d``), then min-max per image."""
  upsampled = upsample(jnp.take(activations, channel, axis=-1), size, 'bilinear_aligned')
  low = upsampled.min(axis=(1, 2), keepdims=True)
  high = upsampled.max(axis=(1, 2), keepdims=True)
  return (upsampled - low) / (high - low + SCORE_CAM_EPS)


@method('score_cam', 'ScoreCAM', space='layer', needs=(Capability.LAYERS,), cost=channel_passes,
        checks={'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def score_cam(model, variables, x, target, *, key=None, layer=None, relu=False, max_batch=None,
              memory_budget=None):
  """Score-CAM of ``layer``, (B, H, W) float32. Cost: 1 + C forwards (C channels), no backward.

  Weights softmax_c(f(x * M_c)), f the target logit and M_c channel c's
  activation map upsampled (bilinear, corners aligned) and scaled to [0, 1]
  per image: pytorch-grad-cam's ``ScoreCAM`` (the masked image is x * M_c,
  so masked-out pixels take 0, the channel mean).

  Args:
    layer: a layer the model splits at (default: its ``default_layer``).
    relu: apply a ReLU to the map before upsampling.
    max_batch, memory_budget: the most images per forward, or the bytes the
      forwards may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  layer = model.check_layer(layer)
  dtype = result_dtype(x)
  activations = model.features(variables, x, layer).astype(dtype)

  def masked_logit(channel):
    mask = channel_mask(activations, channel, x.shape[1:3])
    return gather_targets(model.logits(variables, x * mask[..., None].astype(x.dtype)), target)

  channels = jnp.arange(activations.shape[-1])
  scores = auto_chunked_map(masked_logit, channels, x.shape[0], max_batch, memory_budget)
  weights = jax.nn.softmax(scores.T.astype(dtype), axis=-1)  # (B, C)
  return _weighted_sum(weights, activations, x, relu)


@method('ablation_cam', 'AblationCAM', space='layer', needs=(Capability.LAYERS,),
        cost=channel_passes,
        checks={'max_batch': optional(positive_int), 'memory_budget': optional(positive_int)})
def ablation_cam(model, variables, x, target, *, key=None, layer=None, relu=False, max_batch=None,
                 memory_budget=None):
  """Ablation-CAM of ``layer``, (B, H, W) float32. Cost: 1 forward + C passes from ``layer`` on.

  Weights (f - f_c) / f, f the target logit and f_c the same with channel c
  of ``layer`` zeroed; each ablated pass runs only the network after
  ``layer`` (the head: at layer4 the pool and the classifier). pytorch-grad-cam's
  ``AblationCAM`` with all channels ablated (``ratio_channels_to_ablate=1``);
  its ablation layer sets a channel to 0 when the layer's minimum is 0 (after
  a ReLU, as every ResNet stage output) and to min - 1e7 otherwise; here a
  channel is always set to 0, the paper's ablation.

  Args:
    layer: a layer the model splits at (default: its ``default_layer``).
    relu: apply a ReLU to the map before upsampling.
    max_batch, memory_budget: the most images per pass, or the bytes the
      passes may take (as in :func:`~gestaltxai.saliency.integrated_gradients`).
  """
  del key
  layer = model.check_layer(layer)
  dtype = result_dtype(x)
  activations = model.features(variables, x, layer)
  num_channels = activations.shape[-1]
  score = lambda a: gather_targets(model.head(variables, a, layer), target).astype(dtype)

  def ablated_logit(channel):
    keep = (jnp.arange(num_channels) != channel).astype(activations.dtype)
    return score(activations * keep)

  ablated = auto_chunked_map(ablated_logit, jnp.arange(num_channels), x.shape[0], max_batch,
                             memory_budget)  # (C, B)
  original = score(activations)
  weights = (original[:, None] - ablated.T) / original[:, None]
  return _weighted_sum(weights, activations.astype(dtype), x, relu)
