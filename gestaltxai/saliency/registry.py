"""The table of saliency methods, and the two calls most code needs.

``METHODS`` maps each canonical name to a :class:`Method`; :func:`aliases` maps
the reference's names (``"IntegratedGradients"``, ``"LRP-EpsilonPlus"``, ...)
to canonical ones. :func:`attribute` and :func:`relevance` validate inputs,
pick the predicted class when no target is given, and run the method in one
compiled computation, cached per (method, model, options, shapes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.saliency import (cam, full_gradient, gradients, lrp, noise, perturbation,
                                 propagation, rescale)

Array = jax.Array
# (options, image height, image width) -> (forward passes, backward passes) per image.
CostFn = Callable[[Mapping[str, Any], int, int], tuple[int, int]]


def _fixed_cost(forwards: int, backwards: int) -> CostFn:
  return lambda options, h, w: (forwards, backwards)


def _per_option_cost(option: str, default: int) -> CostFn:
  def cost(options, h, w):
    n = options.get(option, default)
    return n, n
  return cost


def _occlusion_cost(options, h, w):
  windows = perturbation.num_windows(h, w, options.get('window', 15), options.get('stride', 8))
  return windows + 1, 0


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered saliency method.

  Attributes:
    name: canonical snake_case name.
    fn: ``fn(model, variables, x, target, *, key, **options) -> attribution``.
    space: 'input' (attribution (B, H, W, 3)) or 'layer' (upsampled (B, H, W)).
    cost: forward and backward passes per image for given options (a rule
      method's backward re-runs its linear maps with modified weights).
    reference_names: the names the reference pipeline and Captum/zennit use.
  """

  name: str
  fn: Callable[..., Array]
  space: str
  cost: CostFn
  reference_names: tuple[str, ...] = ()


METHODS: dict[str, Method] = {}


def register(name: str, fn, space: str, cost: CostFn, *reference_names: str) -> Method:
  """Adds a method to :data:`METHODS`, reachable by its reference names too."""
  if name in METHODS:
    raise ValueError(f'method {name!r} is registered already')
  if space not in ('input', 'layer'):
    raise ValueError(f"space must be 'input' or 'layer', got {space!r}")
  METHODS[name] = Method(name, fn, space, cost, tuple(reference_names))
  return METHODS[name]


register('gradient', gradients.gradient, 'input', _fixed_cost(1, 1), 'Gradient')
register('input_x_gradient', gradients.input_x_gradient, 'input', _fixed_cost(1, 1),
         'InputXGradient')
register('integrated_gradients', gradients.integrated_gradients, 'input',
         _per_option_cost('steps', 20), 'IntegratedGradients')
register('smoothgrad', noise.smoothgrad, 'input', _per_option_cost('samples', 20), 'SmoothGrad')
register('squaregrad', noise.squaregrad, 'input', _per_option_cost('samples', 20), 'SquareGrad')
register('vargrad', noise.vargrad, 'input', _per_option_cost('samples', 20), 'VarGrad')
register('occlusion', perturbation.occlusion, 'input', _occlusion_cost, 'Occlusion')
register('grad_cam', cam.grad_cam, 'layer', _fixed_cost(1, 1), 'LayerGradCam')
register('grad_cam_plus_plus', cam.grad_cam_plus_plus, 'layer', _fixed_cost(1, 1),
         'GradCAMPlusPlus')
register('hires_cam', cam.hires_cam, 'layer', _fixed_cost(1, 1), 'HiResCAM')
register('guided_backprop', propagation.guided_backprop, 'input', _fixed_cost(1, 1),
         'GuidedBackprop')
register('deconvnet', propagation.deconvnet, 'input', _fixed_cost(1, 1), 'DeconvNet',
         'Deconvolution')
register('guided_grad_cam', propagation.guided_grad_cam, 'input', _fixed_cost(2, 2),
         'GuidedGradCam')
register('excitation_backprop', lrp.excitation_backprop, 'input', _fixed_cost(1, 1),
         'ExcitationBackprop')
register('lrp_epsilon_plus', lrp.lrp_epsilon_plus, 'input', _fixed_cost(1, 1), 'LRP-EpsilonPlus')
register('lrp_epsilon_plus_flat', lrp.lrp_epsilon_plus_flat, 'input', _fixed_cost(1, 1),
         'LRP-EpsilonPlusFlat')
register('lrp_epsilon_alpha2_beta1', lrp.lrp_epsilon_alpha2_beta1, 'input', _fixed_cost(1, 1),
         'LRP-EpsilonAlpha2Beta1')
register('lrp_epsilon_alpha2_beta1_flat', lrp.lrp_epsilon_alpha2_beta1_flat, 'input',
         _fixed_cost(1, 1), 'LRP-EpsilonAlpha2Beta1Flat')
register('deeplift', rescale.deeplift, 'input', _fixed_cost(1, 1), 'DeepLIFT', 'DEEPLIFT',
         'DeepLift')
register('layer_deeplift', rescale.layer_deeplift, 'layer', _fixed_cost(1, 1), 'LayerDeepLIFT',
         'LayerDeepLift')
register('fullgrad', full_gradient.fullgrad, 'layer', _fixed_cost(1, 1), 'FullGrad')


def aliases() -> dict[str, str]:
  """Reference (zennit/Captum) names -> canonical names."""
  return {alias: name for name, m in METHODS.items() for alias in m.reference_names}


def get_method(name: str) -> Method:
  """The :class:`Method` of a canonical or reference name."""
  canonical = name if name in METHODS else aliases().get(name)
  if canonical is None:
    raise ValueError(f'unknown saliency method {name!r}; known: {sorted(METHODS)}')
  return METHODS[canonical]


def _check_images(x) -> Array:
  if not hasattr(x, 'shape') or x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'expected images (B, H, W, 3) NHWC, BGR minus the channel mean; '
                     f'got shape {getattr(x, "shape", type(x).__name__)}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'expected floating-point images, got dtype {x.dtype}')
  x = jnp.asarray(x)
  if not isinstance(x, jax.core.Tracer):
    finite = np.asarray(jnp.isfinite(x).all(axis=(1, 2, 3)))
    if not finite.all():
      raise ValueError(f'images {np.flatnonzero(~finite).tolist()} of the batch contain NaN '
                       'or infinite values')
  return x


def _check_target(target, batch: int, num_classes: Optional[int]) -> Array:
  target = jnp.asarray(target)
  if target.shape != (batch,) or not jnp.issubdtype(target.dtype, jnp.integer):
    raise ValueError(f'target must be a (B,) = ({batch},) int array, got shape {target.shape} '
                     f'dtype {target.dtype}')
  if num_classes is not None and not isinstance(target, jax.core.Tracer):
    t = np.asarray(target)
    if t.min() < 0 or t.max() >= num_classes:
      raise ValueError(f'target classes must lie in [0, {num_classes}), got {t.tolist()}')
  return target


@functools.partial(jax.jit, static_argnames=('model',))
def predict(model, variables, x: Array) -> Array:
  """The predicted class, (B,) int32: what the reference explains by default."""
  return jnp.argmax(model.apply(variables, x), axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('name', 'model', 'reduce', 'static_options'))
def _run(name, model, variables, x, target, key, array_options, static_options, reduce):
  method = METHODS[name]
  attribution = method.fn(model, variables, x, target, key=key, **array_options,
                          **dict(static_options))
  return relevance_of(attribution) if reduce else attribution


def compiled(method: str, model, *, reduce: bool = False, **options):
  """A jitted ``f(variables, x, target, key) -> attribution`` (or relevance if ``reduce``).

  No input checks and no host round trip: the hot path for benchmarks and
  pipelines that validate their data once. ``options`` must be hashable.
  """
  fn = get_method(method).fn

  @jax.jit
  def run(variables, x, target, key):
    attribution = fn(model, variables, x, target, key=key, **options)
    return relevance_of(attribution) if reduce else attribution

  return run


def relevance_of(attribution: Array) -> Array:
  """(B, H, W, C) -> (B, H, W) sum over channels of |a|; (B, H, W) -> |a|.

  The reference's ``normalize_relevance`` without its (commented-out) min-max.
  """
  attribution = jnp.abs(attribution)
  return attribution.sum(-1) if attribution.ndim == 4 else attribution


def _prepare(method, model, variables, x, target, key, options):
  spec = get_method(method)
  x = _check_images(x)
  dtype = options.pop('dtype', None)
  if dtype is not None:
    model = model.clone(dtype=jnp.dtype(dtype))
  num_classes = getattr(model, 'num_classes', None)
  target = predict(model, variables, x) if target is None else _check_target(
      target, x.shape[0], num_classes)
  key = jax.random.PRNGKey(0) if key is None else key
  arrays = {k: v for k, v in options.items() if isinstance(v, (jax.Array, np.ndarray))}
  static = tuple(sorted((k, v) for k, v in options.items() if k not in arrays))
  return spec.name, model, x, target, key, arrays, static


def attribute(method: str, model, variables, x, target=None, *, key=None, **options) -> Array:
  """Raw attribution of ``method`` for images ``x``.

  Args:
    method: a name in :data:`METHODS` or a reference alias.
    model: a :class:`gestaltxai.models.ResNet` (or any module with the same
      ``apply(variables, h, start=, stop=)`` interface).
    variables: its Flax variables.
    x: (B, H, W, 3) float images, BGR minus the channel mean.
    target: (B,) int classes to explain; the predicted class by default.
    key: randomness for noise methods (default ``PRNGKey(0)``).
    **options: the method's options (``steps``, ``rule``, ``baseline``,
      ``samples``, ``noise_level``, ``sigma``, ``window``, ``stride``,
      ``layer``, ``max_batch``, ...); ``dtype`` sets the compute precision.

  Returns:
    (B, H, W, 3) float32 for input-space methods, (B, H, W) float32 for
    layer methods (upsampled to the input size).
  """
  prepared = _prepare(method, model, variables, x, target, key, options)
  name, model, x, target, key, arrays, static = prepared
  return _run(name, model, variables, x, target, key, arrays, static, reduce=False)


def relevance(method: str, model, variables, x, target=None, *, key=None, **options) -> Array:
  """(B, H, W) float32: sum over channels of |attribution|, computed on the device."""
  name, model, x, target, key, arrays, static = _prepare(method, model, variables, x, target,
                                                         key, options)
  return _run(name, model, variables, x, target, key, arrays, static, reduce=True)
