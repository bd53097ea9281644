"""Layer-wise relevance propagation: zennit's rules and composites in JAX.

A rule is a ``jax.custom_vjp`` whose forward value is the layer's own and
whose backward maps the relevance R arriving at the layer's output to the
relevance at its input; the cotangent that flows is relevance, as in
zennit's hooks. The explained output starts with R = 1 at the target class
(the reference's one-hot ``attr_output``).

Composites (zennit ``EpsilonPlus``, ``EpsilonPlusFlat``,
``EpsilonAlpha2Beta1``, ``EpsilonAlpha2Beta1Flat``, ``ExcitationBackprop``)
are :class:`~gestaltxai.models.rules.Rules` values. Rules of the base layer
map: ReLU Pass (relevance passes unchanged), average pool Norm, max pool the
gradient. Convolutions get ZPlus or AlphaBeta(2, 1), dense layers Epsilon;
the Flat variants give the first layer (the stem convolution) the Flat rule.

What zennit's ``ResNetCanonizer`` does to the network is the option
``canonize`` (:data:`CANONIZATIONS`), and which one a method uses by default
is its ``preset`` (:data:`PRESETS`):

* ``'reference'``: what the reference pipeline computed. Its network defines
  its own bottleneck class, and zennit's canonizer rewrites only
  torchvision's, so each BatchNorm is merged into the convolution before it
  (zennit 0.5's sequential merge, which leaves the BatchNorm dividing by
  sqrt(1 + eps), eps 1e-5) and each residual sum stays a plain sum: its
  backward hands the whole relevance to both branches, so relevance doubles
  at every block (maps sum to about 2^16 = 65,536 on ResNet-50, not 1).
* ``True``: the conserving canonizer zennit applies to torchvision's
  bottleneck: the exact merge (zennit 1.0) and the Norm rule at each
  residual sum, relevance split in proportion to the branches'
  contributions; maps sum to about 1, less what biases absorb.
* ``False``: no canonizer. BatchNorm passes relevance unchanged (LRP
  composites) or by its gradient (excitation backprop); sums are plain, so
  relevance doubles here too. The reference ran excitation backprop this way.

``preset='reference'`` (the default) picks what the reference ran for each
method; ``preset='conserving'`` picks ``canonize=True``; an explicit
``canonize`` overrides the preset.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, Optional

import jax
import jax.numpy as jnp

from gestaltxai.models.contract import Capability, ModelContractError
from gestaltxai.models.rules import Rules, plain_batchnorm
from gestaltxai.saliency.checks import one_of
from gestaltxai.saliency.core import input_gradient
from gestaltxai.saliency.registry import method

#: zennit's defaults for epsilon and for every rule's stabiliser.
DEFAULT_EPSILON = 1e-6
DEFAULT_STABILIZER = 1e-6


def stabilize(z, epsilon):
  """z + epsilon * sign(z), zero counting as positive (zennit ``stabilize``)."""
  return z + jnp.where(z >= 0, epsilon, -epsilon).astype(z.dtype)


def _input_vjp(apply_fn, kernel, cotangent, like):
  """J^T c of the linear map x -> apply_fn(x, kernel), at any x (it is linear)."""
  return jax.vjp(lambda h: apply_fn(h, kernel), like)[1](cotangent)[0]


def _bias(bias, clip):
  return 0.0 if bias is None else clip(bias)


def linear_rule(relevance_fn):
  """A linear-layer rule from ``relevance_fn(apply_fn, x, kernel, bias, R) -> R_in``."""

  @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
  def rule(apply_fn, x, kernel, bias):
    y = apply_fn(x, kernel)
    return y if bias is None else y + bias

  def forward(apply_fn, x, kernel, bias):
    return rule(apply_fn, x, kernel, bias), (x, kernel, bias)

  def backward(apply_fn, residuals, relevance):
    x, kernel, bias = residuals
    relevance_in = relevance_fn(apply_fn, x, kernel, bias, relevance)
    return (relevance_in.astype(x.dtype), jnp.zeros_like(kernel),
            None if bias is None else jnp.zeros_like(bias))

  rule.defvjp(forward, backward)
  return rule


@functools.lru_cache(maxsize=None)
def epsilon_rule(epsilon: float = DEFAULT_EPSILON):
  """LRP-epsilon: R_in = x * W^T (R / stab(W x + b))."""

  def relevance(apply_fn, x, kernel, bias, r):
    z = apply_fn(x, kernel) + _bias(bias, lambda b: b)
    return x * _input_vjp(apply_fn, kernel, r / stabilize(z, epsilon), x)

  return linear_rule(relevance)


def _share(apply_fn, xp, xn, kernel_xp, kernel_xn, bias, r, stabilizer):
  """Each input's share of R in one signed part z = W_a x+ + W_b x- + b of the output."""
  z = apply_fn(xp, kernel_xp) + apply_fn(xn, kernel_xn) + bias
  c = r / stabilize(z, stabilizer)
  return xp * _input_vjp(apply_fn, kernel_xp, c, xp) + xn * _input_vjp(apply_fn, kernel_xn, c, xn)


@functools.lru_cache(maxsize=None)
def alpha_beta_rule(alpha: float = 2.0, beta: float = 1.0,
                    stabilizer: float = DEFAULT_STABILIZER):
  """LRP-alpha-beta (zennit ``AlphaBeta``): positive and negative contributions apart.

  Positive part z+ = W+ x+ + W- x- + b+, negative z- = W- x+ + W+ x- + b-;
  R_in = alpha * (its share of z+) - beta * (its share of z-).
  """
  if alpha - beta != 1 or alpha < 0 or beta < 0:
    raise ValueError(f'alpha - beta must be 1 with both non-negative; got {alpha}, {beta}')

  def relevance(apply_fn, x, kernel, bias, r):
    xp, xn = jnp.maximum(x, 0), jnp.minimum(x, 0)
    kp, kn = jnp.maximum(kernel, 0), jnp.minimum(kernel, 0)
    positive = _share(apply_fn, xp, xn, kp, kn, _bias(bias, lambda b: jnp.maximum(b, 0)), r,
                      stabilizer)
    if beta == 0:  # z+ alone: the negative part would be computed only to be dropped
      return alpha * positive
    negative = _share(apply_fn, xp, xn, kn, kp, _bias(bias, lambda b: jnp.minimum(b, 0)), r,
                      stabilizer)
    return alpha * positive - beta * negative

  return linear_rule(relevance)


def zplus_rule(stabilizer: float = DEFAULT_STABILIZER):
  """LRP-z+ (zennit ``ZPlus``, negative inputs allowed): AlphaBeta with alpha 1, beta 0.

  z = W+ x+ + b+ + W- x-; R_in = x+ * W+^T (R / stab(z)) + x- * W-^T (R / stab(z)).
  """
  return alpha_beta_rule(1.0, 0.0, stabilizer)


@functools.lru_cache(maxsize=None)
def flat_rule(stabilizer: float = DEFAULT_STABILIZER):
  """LRP-flat: relevance spread evenly over each output's receptive field.

  Inputs and weights become ones, the bias zero: R_in = 1^T (R / stab(1^T 1)).
  """

  def relevance(apply_fn, x, kernel, bias, r):
    ones_kernel = jnp.ones_like(kernel)
    z = apply_fn(jnp.ones_like(x), ones_kernel)
    return _input_vjp(apply_fn, ones_kernel, r / stabilize(z, stabilizer), x)

  return linear_rule(relevance)


@jax.custom_vjp
def pass_relu(x):
  """ReLU whose backward passes relevance unchanged (zennit ``Pass``)."""
  return jax.nn.relu(x)


pass_relu.defvjp(lambda x: (jax.nn.relu(x), None), lambda _, r: (r,))


@jax.custom_vjp
def pass_batchnorm(y, gain, shift):
  """Eval BatchNorm whose backward passes relevance unchanged (zennit ``Pass``)."""
  return plain_batchnorm(y, gain, shift)


pass_batchnorm.defvjp(lambda y, g, s: (plain_batchnorm(y, g, s), (g, s)),
                      lambda res, r: (r, jnp.zeros_like(res[0]), jnp.zeros_like(res[1])))


@functools.lru_cache(maxsize=None)
def norm_sum_rule(stabilizer: float = DEFAULT_STABILIZER):
  """Residual sum a + b with the Norm rule: R_a = a R / stab(a + b), likewise R_b."""

  @jax.custom_vjp
  def norm_sum(a, b):
    return a + b

  def backward(residuals, r):
    a, b = residuals
    c = r / stabilize(a + b, stabilizer)
    return a * c, b * c

  norm_sum.defvjp(lambda a, b: (a + b, (a, b)), backward)
  return norm_sum


@functools.lru_cache(maxsize=None)
def norm_pool_rule(stabilizer: float = DEFAULT_STABILIZER):
  """A linear pool with the Norm rule: R_in = x * P^T (R / stab(P x))."""

  @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
  def norm_pool(pool_fn, x):
    return pool_fn(x)

  def backward(pool_fn, x, r):
    c = r / stabilize(pool_fn(x), stabilizer)
    return (x * jax.vjp(pool_fn, x)[1](c)[0],)

  norm_pool.defvjp(lambda pool_fn, x: (pool_fn(x), x), backward)
  return norm_pool


@dataclasses.dataclass(frozen=True)
class Canonization:
  """What a zennit canonizer does to the network.

  Attributes:
    fold_batchnorm: merge each BatchNorm into the convolution before it.
    fold_keeps_eps: the merged BatchNorm still divides by sqrt(1 + eps)
      (zennit 0.5's merge; its backward is the composite's BatchNorm rule).
    norm_sums: residual sums get the Norm rule (zennit's ``Sum`` module);
      otherwise they are plain sums, whose backward is their gradient.
  """

  fold_batchnorm: bool
  fold_keeps_eps: bool
  norm_sums: bool


Canonize = Literal['reference', True, False]

#: ``canonize`` value -> what it does (see the module docstring).
CANONIZATIONS = {
    'reference': Canonization(fold_batchnorm=True, fold_keeps_eps=True, norm_sums=False),
    True: Canonization(fold_batchnorm=True, fold_keeps_eps=False, norm_sums=True),
    False: Canonization(fold_batchnorm=False, fold_keeps_eps=False, norm_sums=False),
}

#: preset -> ``canonize`` of the LRP composites and of excitation backprop. The
#: reference gave the LRP composites ``ResNetCanonizer()`` and excitation
#: backprop no canonizer.
PRESETS = {
    'reference': {'lrp': 'reference', 'excitation_backprop': False},
    'conserving': {'lrp': True, 'excitation_backprop': True},
}


def resolve_canonize(family: str, preset: str, canonize: Optional[Canonize]) -> Canonize:
  """The ``canonize`` a method of ``family`` runs: the explicit one, else its preset's."""
  if preset not in PRESETS:
    raise ValueError(f'preset must be one of {sorted(PRESETS)}; got {preset!r}')
  if canonize is None:
    return PRESETS[preset][family]
  if not (isinstance(canonize, bool) or (isinstance(canonize, str) and canonize == 'reference')):
    raise ValueError("canonize must be 'reference' (zennit 0.5's BatchNorm merge, plain "
                     'residual sums), True (exact merge, Norm-rule sums) or False (no '
                     f'canonizer), or None for the preset\'s; got {canonize!r}')
  return canonize


def _canonized(rules: Rules, canonize: Canonize, stabilizer: float) -> Rules:
  setting = CANONIZATIONS[canonize]
  return dataclasses.replace(
      rules, residual_sum=norm_sum_rule(stabilizer) if setting.norm_sums else jnp.add,
      fold_batchnorm=setting.fold_batchnorm, fold_keeps_eps=setting.fold_keeps_eps)


@functools.lru_cache(maxsize=None)
def lrp_composite(conv: str, flat_first: bool, canonize: Canonize = 'reference',
                  epsilon: float = DEFAULT_EPSILON,
                  stabilizer: float = DEFAULT_STABILIZER) -> Rules:
  """zennit's Epsilon{Plus, Alpha2Beta1}[Flat] composite as :class:`Rules`.

  Args:
    conv: 'zplus' or 'alpha2_beta1', the rule of convolutions.
    flat_first: the Flat rule for the first layer.
    canonize: a key of :data:`CANONIZATIONS`.
  """
  conv_rules = {'zplus': lambda: zplus_rule(stabilizer),
                'alpha2_beta1': lambda: alpha_beta_rule(2.0, 1.0, stabilizer)}
  return _canonized(Rules(
      activation=pass_relu,
      conv=conv_rules[conv](),
      dense=epsilon_rule(epsilon),
      first=flat_rule(stabilizer) if flat_first else None,
      average_pool=norm_pool_rule(stabilizer),
      batchnorm=pass_batchnorm), canonize, stabilizer)


@functools.lru_cache(maxsize=None)
def excitation_backprop_rules(canonize: Canonize = False,
                              stabilizer: float = DEFAULT_STABILIZER) -> Rules:
  """zennit's ``ExcitationBackprop``: ZPlus on every linear layer, Norm on average
  pools (and on sums, when canonized); ReLU and BatchNorm keep their gradients."""
  return _canonized(Rules(
      conv=zplus_rule(stabilizer),
      dense=zplus_rule(stabilizer),
      average_pool=norm_pool_rule(stabilizer)), canonize, stabilizer)


def _has_batch_statistics(variables) -> bool:
  return any('batch_stats' in jax.tree_util.keystr(path)
             for path, _ in jax.tree_util.tree_leaves_with_path(variables))


def check_canonizable(name: str, model, variables, x, canonize: Canonize) -> None:
  """Refuses a canonization that would silently do nothing: folding BatchNorm into a model
  whose BatchNorms are not routed through ``Rules.batchnorm`` (the project's ``ConvBN``
  routes them and honours ``fold_batchnorm`` / ``fold_keeps_eps``)."""
  if not CANONIZATIONS[canonize].fold_batchnorm or not _has_batch_statistics(variables):
    return
  if model.canonizes:
    return
  routed = []

  def probe(y, gain, shift):
    routed.append(True)
    return plain_batchnorm(y, gain, shift)

  jax.eval_shape(model.with_rules(Rules(batchnorm=probe)).logits, variables, x)
  if not routed:
    raise ModelContractError(
        f'{name}: canonize={canonize!r} folds each BatchNorm into the convolution before it, '
        f'but {model.describe()} has BatchNorm statistics that do not go through its rules '
        '(Rules.batchnorm, fold_batchnorm, fold_keeps_eps), so nothing would be folded. Build '
        'conv + BatchNorm from gestaltxai.models.resnet.ConvBN (or honour those fields and '
        'declare `canonizes = True` on the class), or pass canonize=False to run without '
        'canonization')


def _check_canonize(name: str, value) -> None:
  del name
  resolve_canonize('lrp', 'reference', value)  # raises for a value not allowed, naming them


#: Option checks of every LRP-family method, before anything is traced.
_CHECKS = {'preset': one_of(PRESETS), 'canonize': _check_canonize}
#: Passes per image: the backward of z+ (and of the Flat first layer) re-runs each
#: convolution on its positive and negative parts, about two backward passes (XLA counts
#: 2.5 gradients of FLOPs for EpsilonPlusFlat); alpha-beta does that for both signs.
_CONV_RULE_COST = {'zplus': (1, 2), 'alpha2_beta1': (1, 4)}


def _composite_method(name, reference_name, zennit_name, conv, flat_first):
  def composite(model, variables, x, target, *, key=None, preset: str = 'reference',
                canonize: Optional[Canonize] = None, epsilon: float = DEFAULT_EPSILON,
                stabilizer: float = DEFAULT_STABILIZER):
    del key
    canonize = resolve_canonize('lrp', preset, canonize)
    check_canonizable(name, model, variables, x, canonize)
    rules = lrp_composite(conv, flat_first, canonize, float(epsilon), float(stabilizer))
    return input_gradient(model.with_rules(rules), variables, x, target)

  composite.__name__ = name
  composite.__doc__ = (
      f'zennit ``{zennit_name}`` relevance at the input, (B, H, W, 3). ``preset`` '
      "'reference' (default: ``canonize='reference'``, as the reference ran it) or "
      "'conserving' (``canonize=True``); ``canonize`` overrides it (see the module "
      'docstring). Cost: 1 forward and a backward that re-runs each linear map with its '
      'rule.')
  return method(name, reference_name, needs=(Capability.RULES,), cost=_CONV_RULE_COST[conv],
                checks=_CHECKS)(composite)


lrp_epsilon_plus = _composite_method('lrp_epsilon_plus', 'LRP-EpsilonPlus', 'EpsilonPlus', 'zplus',
                                     False)
lrp_epsilon_plus_flat = _composite_method('lrp_epsilon_plus_flat', 'LRP-EpsilonPlusFlat',
                                          'EpsilonPlusFlat', 'zplus', True)
lrp_epsilon_alpha2_beta1 = _composite_method('lrp_epsilon_alpha2_beta1', 'LRP-EpsilonAlpha2Beta1',
                                             'EpsilonAlpha2Beta1', 'alpha2_beta1', False)
lrp_epsilon_alpha2_beta1_flat = _composite_method(
    'lrp_epsilon_alpha2_beta1_flat', 'LRP-EpsilonAlpha2Beta1Flat', 'EpsilonAlpha2Beta1Flat',
    'alpha2_beta1', True)


@method('excitation_backprop', 'ExcitationBackprop', needs=(Capability.RULES,),
        cost=_CONV_RULE_COST['zplus'], checks=_CHECKS)
def excitation_backprop(model, variables, x, target, *, key=None, preset: str = 'reference',
                        canonize: Optional[Canonize] = None,
                        stabilizer: float = DEFAULT_STABILIZER):
  """Excitation backprop (Zhang et al. 2016) as zennit's composite, (B, H, W, 3).

  ``preset`` 'reference' (default: no canonizer, as the reference ran it) or
  'conserving' (``canonize=True``); ``canonize`` overrides it.
  """
  del key
  canonize = resolve_canonize('excitation_backprop', preset, canonize)
  check_canonizable('excitation_backprop', model, variables, x, canonize)
  rules = excitation_backprop_rules(canonize, float(stabilizer))
  return input_gradient(model.with_rules(rules), variables, x, target)
