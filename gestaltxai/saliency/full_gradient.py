"""FullGrad (Srinivas and Fleuret 2019), as pytorch-grad-cam computes it.

The input-gradient term |x * d f / d x| plus, for every layer with a bias
(here each BatchNorm, whose effective bias is beta - mean * gamma /
sqrt(var + eps)), |bias * d f / d output|. Every channel map is min-max
scaled (x - min) / (max - min + 1e-7), bias maps are upsampled bilinearly to
the input size and summed over channels, and the sum of all terms is
min-max scaled once more. Cost: 1 forward + 1 backward; intermediate
gradients come from the model's ``perturbations`` (``perturb_outputs=True``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from gestaltxai.models.resnet import BATCHNORM_EPS
from gestaltxai.saliency.core import result_dtype
from gestaltxai.saliency.resize import upsample

# pytorch-grad-cam's scale_cam_image denominator offset.
SCALE_EPS = 1e-7


def _min_max(maps, axes):
  shifted = maps - maps.min(axis=axes, keepdims=True)
  return shifted / (SCALE_EPS + shifted.max(axis=axes, keepdims=True))


def _effective_bias(variables, module_path):
  params, stats = variables['params'], variables['batch_stats']
  for name in module_path:
    params, stats = params[name], stats[name]
  gain = params['scale'] * jax.lax.rsqrt(stats['var'] + BATCHNORM_EPS)
  return params['bias'] - stats['mean'] * gain


def fullgrad_terms(model, variables, x, target):
  """The full-gradient decomposition of the target logit, before any scaling.

  Returns:
    ``(input_term, bias_terms)``: x * d f / d x, (B, H, W, 3), and
    {module path: bias * d f / d output, (B, h, w, C)} for every BatchNorm.
    For a piecewise-linear network (ReLU, max pool, eval BatchNorm) their
    sum plus the head's bias is the logit itself (completeness).
  """
  model = model.clone(perturb_outputs=True)
  variables = {k: v for k, v in variables.items() if k != 'perturbations'}
  shapes = jax.eval_shape(lambda: model.apply(variables, x, mutable=['perturbations'])[1])
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['perturbations'])

  def score(images, perturbations):
    logits = model.apply({**variables, 'perturbations': perturbations}, images)
    return jnp.take_along_axis(logits, target[:, None], axis=1).sum()

  input_grad, output_grads = jax.grad(score, argnums=(0, 1))(x, zeros)
  bias_terms = {path[:-1]: _effective_bias(variables, path[:-1]) * grad
                for path, grad in traverse_util.flatten_dict(output_grads).items()}
  return x * input_grad, bias_terms


def fullgrad(model, variables, x, target, *, key=None):
  """FullGrad saliency, (B, H, W) float32 in [0, 1]."""
  del key
  input_term, bias_terms = fullgrad_terms(model, variables, x, target)
  total = _min_max(jnp.abs(input_term).astype(result_dtype(x)), (1, 2)).sum(-1)
  for term in bias_terms.values():
    bias_maps = _min_max(jnp.abs(term).astype(result_dtype(x)), (1, 2)).sum(-1)
    # Resizing is linear, so the channel sum may come before the upsampling.
    total = total + upsample(bias_maps, x.shape[1:3], 'bilinear')
  return _min_max(total, (1, 2))
