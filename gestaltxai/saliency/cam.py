"""Class activation maps from a layer's activations A and gradients G = d logit / d A.

Each returns (B, H, W) float32 at the input size (bicubic, as Captum's
``LayerAttribution.interpolate(..., 'bicubic')``). Cost: one forward and a
backward down to ``layer`` only.
"""

from __future__ import annotations

import jax.numpy as jnp

from gestaltxai.saliency.core import layer_activations_and_gradients
from gestaltxai.saliency.resize import upsample_bicubic

# pytorch-grad-cam's stabiliser in the Grad-CAM++ alpha denominator.
GRAD_CAM_PLUS_PLUS_EPS = 1e-6


def _finish(cam, x, relu):
  cam = jnp.maximum(cam, 0.0) if relu else cam
  return upsample_bicubic(cam, x.shape[1:3])


def grad_cam(model, variables, x, target, *, key=None, layer='layer4', relu=False):
  """Grad-CAM: sum_c mean_hw(G)_c A_c, no ReLU (Captum ``LayerGradCam``, the reference's)."""
  del key
  activations, gradients = layer_activations_and_gradients(model, variables, x, target, layer)
  weights = gradients.mean(axis=(1, 2), keepdims=True)
  return _finish((weights * activations).sum(-1), x, relu)


def grad_cam_plus_plus(model, variables, x, target, *, key=None, layer='layer4', relu=False):
  """Grad-CAM++ (Chattopadhay et al. 2018) with pytorch-grad-cam's closed-form alphas.

  alpha = G^2 / (2 G^2 + sum_hw(A) G^3 + eps) where G != 0; channel weight
  sum_hw(alpha ReLU(G)). pytorch-grad-cam also applies a ReLU and min-max
  scaling: pass ``relu=True`` for the first; relevance is scale-free per
  image for the coefficients' comparisons.
  """
  del key
  activations, gradients = layer_activations_and_gradients(model, variables, x, target, layer)
  g2 = jnp.square(gradients)
  denominator = 2 * g2 + activations.sum(axis=(1, 2), keepdims=True) * g2 * gradients
  alpha = jnp.where(gradients != 0, g2 / (denominator + GRAD_CAM_PLUS_PLUS_EPS), 0.0)
  weights = (alpha * jnp.maximum(gradients, 0.0)).sum(axis=(1, 2), keepdims=True)
  return _finish((weights * activations).sum(-1), x, relu)


def hires_cam(model, variables, x, target, *, key=None, layer='layer4', relu=False):
  """HiResCAM (Draelos and Carin 2020): sum_c G_c * A_c elementwise, no spatial averaging."""
  del key
  activations, gradients = layer_activations_and_gradients(model, variables, x, target, layer)
  return _finish((gradients * activations).sum(-1), x, relu)
