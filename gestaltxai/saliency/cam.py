"""Class activation maps from a layer's activations A and gradients G = d logit / d A.

Each method returns (B, H, W) float32 at the input size (bicubic, as Captum's
``LayerAttribution.interpolate(..., 'bicubic')``). Cost: one forward and a
backward down to ``layer`` only. ``layer`` defaults to the model's own
``default_layer`` (layer4 of the ResNet); the model must split at named
layers (level 2 of the contract).
"""

from __future__ import annotations

import jax.numpy as jnp

from gestaltxai.models.contract import Capability
from gestaltxai.saliency.core import layer_activations_and_gradients
from gestaltxai.saliency.registry import boolean, method
from gestaltxai.saliency.resize import upsample

# pytorch-grad-cam's stabiliser in the Grad-CAM++ alpha denominator.
GRAD_CAM_PLUS_PLUS_EPS = 1e-6


def grad_cam_weights(activations, gradients):
  """Grad-CAM: the spatial mean of G per channel."""
  del activations
  return gradients.mean(axis=(1, 2), keepdims=True)


def grad_cam_plus_plus_weights(activations, gradients):
  """Grad-CAM++ (Chattopadhay et al. 2018) with pytorch-grad-cam's closed-form alphas.

  alpha = G^2 / (2 G^2 + sum_hw(A) G^3 + eps) where G != 0; the channel
  weight is sum_hw(alpha ReLU(G)).
  """
  g2 = jnp.square(gradients)
  denominator = 2 * g2 + activations.sum(axis=(1, 2), keepdims=True) * g2 * gradients
  alpha = jnp.where(gradients != 0, g2 / (denominator + GRAD_CAM_PLUS_PLUS_EPS), 0.0)
  return (alpha * jnp.maximum(gradients, 0.0)).sum(axis=(1, 2), keepdims=True)


def hires_cam_weights(activations, gradients):
  """HiResCAM (Draelos and Carin 2020): G itself, elementwise."""
  del activations
  return gradients


def layer_cam(model, variables, x, target, weights_fn, layer=None):
  """sum_c weights_c * A_c at the layer's resolution, (B, h, w) at least float32."""
  layer = model.check_layer(layer)
  activations, gradients = layer_activations_and_gradients(model, variables, x, target, layer)
  return (weights_fn(activations, gradients) * activations).sum(-1)


def _cam_method(name, reference_name, weights_fn, doc):
  def cam_method(model, variables, x, target, *, key=None, layer=None, relu=False):
    del key
    cam = layer_cam(model, variables, x, target, weights_fn, layer)
    cam = jnp.maximum(cam, 0.0) if relu else cam
    return upsample(cam, x.shape[1:3], 'bicubic')

  cam_method.__name__, cam_method.__doc__ = name, doc
  return method(name, reference_name, space='layer', needs=(Capability.LAYERS,),
                cost=(1, 1), checks={'relu': boolean})(cam_method)


grad_cam = _cam_method('grad_cam', 'LayerGradCam', grad_cam_weights, """Grad-CAM of ``layer``, (B, H, W) float32.

sum_c mean_hw(G)_c A_c without a ReLU (``relu=True`` adds one): Captum's
``LayerGradCam(model, model.layer4)`` and bicubic interpolation, the reference's.
""")
grad_cam_plus_plus = _cam_method(
    'grad_cam_plus_plus', 'GradCAMPlusPlus', grad_cam_plus_plus_weights, """Grad-CAM++ of ``layer``, (B, H, W) float32.

pytorch-grad-cam's weights (see :func:`grad_cam_plus_plus_weights`); that
library also applies a ReLU and min-max scaling: ``relu=True`` gives the first,
and coefficients compare maps within an image, which scaling does not change.
""")
hires_cam = _cam_method('hires_cam', 'HiResCAM', hires_cam_weights,
                        """HiResCAM of ``layer``, (B, H, W) float32: sum_c G_c * A_c.""")
