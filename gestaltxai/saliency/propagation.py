"""ReLU-rule methods: guided backprop, DeconvNet and Guided Grad-CAM.

Each swaps the backward pass of every ReLU of the model (``Rules.activation``)
and takes one ordinary forward and backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gestaltxai.models.contract import Capability
from gestaltxai.models.rules import Rules
from gestaltxai.saliency.cam import grad_cam_weights, weighted_cam
from gestaltxai.saliency.core import input_gradient
from gestaltxai.saliency.registry import method
from gestaltxai.saliency.resize import upsample


@jax.custom_vjp
def guided_relu(x):
  """ReLU whose backward keeps positive gradients at positive inputs."""
  return jax.nn.relu(x)


guided_relu.defvjp(lambda x: (jax.nn.relu(x), x),
                   lambda x, g: (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),))


@jax.custom_vjp
def deconv_relu(x):
  """ReLU whose backward is the ReLU of the incoming gradient (Zeiler and Fergus)."""
  return jax.nn.relu(x)


deconv_relu.defvjp(lambda x: (jax.nn.relu(x), None), lambda _, g: (jax.nn.relu(g),))

GUIDED_BACKPROP = Rules(activation=guided_relu)
DECONVNET = Rules(activation=deconv_relu)


@method('guided_backprop', 'GuidedBackprop', needs=(Capability.RULES,), cost=(1, 1))
def guided_backprop(model, variables, x, target, *, key=None):
  """Guided backprop (Springenberg et al. 2015), (B, H, W, 3) float32.

  Captum ``GuidedBackprop`` and zennit's ``GuidedBackprop`` composite: at
  each ReLU the gradient passes where both the input and the gradient are
  positive.
  """
  del key
  return input_gradient(model.with_rules(GUIDED_BACKPROP), variables, x, target)


@method('deconvnet', 'DeconvNet', 'Deconvolution', needs=(Capability.RULES,), cost=(1, 1))
def deconvnet(model, variables, x, target, *, key=None):
  """DeconvNet, (B, H, W, 3) float32: each ReLU passes the ReLU of its gradient.

  Captum ``Deconvolution``, zennit's ``DeconvNet`` composite.
  """
  del key
  return input_gradient(model.with_rules(DECONVNET), variables, x, target)


@method('guided_grad_cam', 'GuidedGradCam', needs=(Capability.LAYERS, Capability.RULES),
        cost=(2, 2))
def guided_grad_cam(model, variables, x, target, *, key=None, layer=None):
  """Guided Grad-CAM, (B, H, W, 3) float32. Cost: 2 forwards + 2 backwards.

  Captum ``GuidedGradCam(model, layer)``: guided backprop times the Grad-CAM
  of ``layer`` with a ReLU, upsampled by nearest neighbour.
  """
  del key
  cam = weighted_cam(model, variables, x, target, grad_cam_weights, layer)
  cam = upsample(jnp.maximum(cam, 0.0), x.shape[1:3], 'nearest')
  return guided_backprop.fn(model, variables, x, target) * cam[..., None]
