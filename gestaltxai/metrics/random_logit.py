"""The random-logit sanity test (Sixt et al., "When Explanations Lie", ICML 2020; Quantus'
``RandomLogit``): an explanation of class c should differ from that of another class.

Each image is explained for its target and for a class drawn uniformly from
the other classes; the score is the similarity of the two maps (lower is
better). Quantus compares with SSIM by default; so do we (on min-max
normalised maps, as :func:`~gestaltxai.metrics.model_randomization`), and
``similarity='spearman'`` gives the rank correlation instead. Region
methods' coefficients are no maps: they are compared by Spearman's rank
correlation over the regions whatever ``similarity`` says.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.metrics.sanity import MethodLike, _maps, spearman, ssim
from gestaltxai.models.contract import explainable
from gestaltxai.regions.coefficients import min_max_normalize
from gestaltxai.saliency.execution import predict
from gestaltxai.saliency.registry import Method, get_method

Array = jax.Array
#: ``similarity``: how the two maps are compared.
SIMILARITIES = ('ssim', 'spearman')


def other_classes(key: Array, target: Array, num_classes: int) -> Array:
  """(B,) int32: for each target, a class drawn uniformly from the other ``num_classes``-1."""
  if num_classes < 2:
    raise ValueError('the random-logit test needs at least two classes')
  shift = jax.random.randint(key, target.shape, 1, num_classes)
  return ((target + shift) % num_classes).astype(jnp.int32)


def random_logit(method: MethodLike, model, variables, x: Array,
                 target: Optional[Array] = None, *, key: Optional[Array] = None,
                 similarity: str = 'ssim', **options) -> Array:
  """(B,) similarity of each image's map for its target and for a random other class.

  Args:
    method: a name in ``saliency.METHODS`` (or a :class:`Method`), or a
      function with a method's signature.
    model, variables: any model ``explainable`` takes, and its variables.
    x: (B, H, W, C) float images.
    target: (B,) int classes; the predicted class when None.
    key: draws the other classes (and the method's noise: the same for both).
    similarity: 'ssim' or 'spearman' (see the module).
    **options: the method's options.
  """
  if similarity not in SIMILARITIES:
    raise ValueError(f'random_logit: similarity must be one of {SIMILARITIES}, got '
                     f'{similarity!r}')
  model = explainable(model)
  key = jax.random.PRNGKey(0) if key is None else key
  class_key, method_key = jax.random.split(key)
  target = predict(model, variables, x) if target is None else jnp.asarray(target)
  num_classes = jax.eval_shape(model.logits, variables, x).shape[-1]
  entry = get_method(method) if isinstance(method, (str, Method)) else method
  traced = {k: v for k, v in options.items() if isinstance(v, (jax.Array, np.ndarray))}
  static = tuple(sorted((k, v) for k, v in options.items() if k not in traced))
  return _random_logit(entry, model, variables, x, target,
                       other_classes(class_key, target, num_classes), method_key, traced,
                       static, similarity)


@functools.partial(jax.jit, static_argnames=('method', 'model', 'static_options',
                                             'similarity'))
def _random_logit(method, model, variables, x, target, other, key, traced_options,
                  static_options, similarity):
  options = {**traced_options, **dict(static_options)}
  explained, contrast = (_maps(method(model, variables, x, t, key=key, **options))
                         for t in (target, other))
  if similarity == 'spearman' or explained.shape[1] == 1:  # region coefficients
    return spearman(explained, contrast)
  return ssim(min_max_normalize(explained), min_max_normalize(contrast))
