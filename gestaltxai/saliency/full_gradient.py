"""FullGrad (Srinivas and Fleuret 2019), as pytorch-grad-cam computes it.

The input-gradient term |x * d f / d x| plus, for every layer with a bias
(here each BatchNorm, whose effective bias is beta - mean * gamma /
sqrt(var + eps)), |bias * d f / d output|. Every channel map is min-max
scaled (x - min) / (max - min + 1e-7), bias maps are upsampled bilinearly to
the input size and summed over channels, and the sum of all terms is
min-max scaled once more. Cost: 1 forward + 1 backward; the gradient at each
biased output comes from Flax's ``perturb`` and the biases from ``sow``,
which the model's layers do under ``Rules(probe_biases=True)``
(:func:`gestaltxai.models.resnet.probe_bias_output`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from gestaltxai.models.contract import Capability, LinenModel, ModelContractError, explainable
from gestaltxai.models.rules import Rules
from gestaltxai.saliency.core import gather_targets, result_dtype
from gestaltxai.saliency.registry import method
from gestaltxai.saliency.resize import upsample

# pytorch-grad-cam's scale_cam_image denominator offset.
SCALE_EPS = 1e-7
_PROBES = Rules(probe_biases=True)


def _min_max(maps, axes):
  shifted = maps - maps.min(axis=axes, keepdims=True)
  return shifted / (SCALE_EPS + shifted.max(axis=axes, keepdims=True))


def fullgrad_terms(model, variables, x, target):
  """The full-gradient decomposition of the target logit, before any scaling.

  Returns:
    ``(input_term, bias_terms)``: x * d f / d x, (B, H, W, C), and
    {module path: bias * d f / d output, (B, h, w, C)} for every biased layer
    that exposes itself (each conv + BatchNorm of the ResNet, whose bias is
    beta - mean * gamma / sqrt(var + eps)). For a piecewise-linear network
    (ReLU, max pool, eval BatchNorm) their sum plus the head's bias is the
    logit itself (completeness).
  """
  model = explainable(model)
  if not isinstance(model, LinenModel):
    raise ModelContractError(
        f'fullgrad reads each biased layer through Flax perturb/sow: it needs a Flax linen '
        f'module, got {model.describe()}')
  module = model.with_rules(_PROBES).module
  variables = {k: v for k, v in variables.items() if k not in ('perturbations', 'biases')}
  _, probes = module.apply(variables, x, mutable=['perturbations', 'biases'])
  if not probes.get('perturbations'):
    raise ModelContractError(
        f'{model.describe()} exposes no biased layer under Rules(probe_biases=True): route '
        'each biased output through gestaltxai.models.resnet.probe_bias_output for fullgrad')
  zeros = jax.tree.map(jnp.zeros_like, probes['perturbations'])

  def score(images, perturbations):
    logits = module.apply({**variables, 'perturbations': perturbations}, images)
    return gather_targets(logits, target).sum()

  input_grad, output_grads = jax.grad(score, argnums=(0, 1))(x, zeros)
  biases = traverse_util.flatten_dict(probes['biases'])
  bias_terms = {path[:-1]: biases[(*path[:-1], 'bias')][0] * grad
                for path, grad in traverse_util.flatten_dict(output_grads).items()}
  return x * input_grad, bias_terms


@method('fullgrad', 'FullGrad', space='layer', needs=(Capability.RULES,), cost=(1, 1))
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
