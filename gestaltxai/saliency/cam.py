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
from gestaltxai.saliency.checks import boolean
from gestaltxai.saliency.core import layer_activations_and_gradients, result_dtype
from gestaltxai.saliency.registry import method
from gestaltxai.saliency.resize import upsample

# pytorch-grad-cam's stabiliser in the Grad-CAM++ alpha denominator.
GRAD_CAM_PLUS_PLUS_EPS = 1e-6
# pytorch-grad-cam's stabiliser in the XGrad-CAM denominator (the activations' sum).
XGRAD_CAM_EPS = 1e-7


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


def layer_cam_weights(activations, gradients):
  """LayerCAM (Jiang et al. 2021): ReLU(G), elementwise."""
  del activations
  return jnp.maximum(gradients, 0.0)


def xgrad_cam_weights(activations, gradients):
  """XGrad-CAM (Fu et al. 2020): sum_hw(G A) / sum_hw(A) per channel."""
  total = activations.sum(axis=(1, 2), keepdims=True)
  return (gradients * activations).sum(axis=(1, 2), keepdims=True) / (total + XGRAD_CAM_EPS)


def weighted_cam(model, variables, x, target, weights_fn, layer=None):
  """sum_c weights_c * A_c at the layer's resolution, (B, h, w) at least float32."""
  layer = model.check_layer(layer)
  activations, gradients = layer_activations_and_gradients(model, variables, x, target, layer)
  return (weights_fn(activations, gradients) * activations).sum(-1)


def _cam_method(name, reference_name, weights_fn, doc):
  def cam_method(model, variables, x, target, *, key=None, layer=None, relu=False):
    del key
    cam = weighted_cam(model, variables, x, target, weights_fn, layer)
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
layer_cam = _cam_method('layer_cam', 'LayerCAM', layer_cam_weights, """LayerCAM of ``layer``, (B, H, W) float32: sum_c ReLU(G_c) * A_c.

pytorch-grad-cam's ``LayerCAM`` (which then applies a ReLU and min-max
scaling: ``relu=True`` gives the first).
""")
xgrad_cam = _cam_method('xgrad_cam', 'XGradCAM', xgrad_cam_weights, """XGrad-CAM of ``layer``, (B, H, W) float32.

Channel weights sum_hw(G A) / (sum_hw(A) + 1e-7), pytorch-grad-cam's
``XGradCAM`` (which then applies a ReLU and min-max scaling: ``relu=True``
gives the first).
""")


def principal_projection(activations):
  """(B, h, w, C) -> (B, h, w): each image's centred activations on their first principal axis.

  pytorch-grad-cam's ``get_2d_projection``. The sign of a principal axis is
  arbitrary (NumPy's SVD picks one); here the axis points where the channels'
  weights sum positive, so the map is the same on every backend.
  """
  batch, height, width, channels = activations.shape
  flat = activations.reshape(batch, height * width, channels)
  centred = flat - flat.mean(axis=1, keepdims=True)
  _, _, vt = jnp.linalg.svd(centred, full_matrices=False)
  axis = vt[:, 0, :]
  axis = axis * jnp.where(axis.sum(-1, keepdims=True) < 0, -1.0, 1.0)
  return jnp.einsum('bpc,bc->bp', centred, axis).reshape(batch, height, width)


@method('eigen_cam', 'EigenCAM', space='layer', needs=(Capability.LAYERS,), cost=(1, 0))
def eigen_cam(model, variables, x, target, *, key=None, layer=None, relu=False):
  """Eigen-CAM of ``layer``, (B, H, W) float32. Cost: 1 forward, no backward.

  The activations projected on their first principal component
  (:func:`principal_projection`): pytorch-grad-cam's ``EigenCAM``, which then
  applies a ReLU and min-max scaling (``relu=True`` gives the first). It does
  not depend on the class: ``target`` is unused.
  """
  del key, target
  layer = model.check_layer(layer)
  activations = model.features(variables, x, layer).astype(result_dtype(x))
  cam = principal_projection(activations)
  cam = jnp.maximum(cam, 0.0) if relu else cam
  return upsample(cam, x.shape[1:3], 'bicubic')
