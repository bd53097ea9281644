"""The model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018).

An explanation of a model should depend on the model. Cascading
randomisation re-initialises the model's parameter stages from the head
down (for the package's ResNet: fc, layer4, layer3, layer2, layer1, stem),
explains the same images and target after each stage, and compares each map
with the trained model's: Spearman rank correlation of the relevance maps
(|attribution| summed over channels, as the analysis uses them) and SSIM of
the min-max normalised maps. A method whose maps barely change as the model
is destroyed (an edge detector, in the extreme) explains the image, not the
model, and fails.

The stages come from the model: a Flax module may declare
``parameter_stages`` (input side first, as :class:`gestaltxai.models.ResNet`
does); otherwise each top-level variable name is a stage, ordered by where
the forward pass first uses it; a model whose order cannot be told this way
is refused with the reason, and ``stages=`` gives it explicitly.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jax_core

from gestaltxai.models.contract import LinenModel, explainable
from gestaltxai.regions.coefficients import min_max_normalize
from gestaltxai.saliency.chunking import sub_jaxprs
from gestaltxai.saliency.core import result_dtype
from gestaltxai.saliency.execution import predict, relevance_of
from gestaltxai.saliency.registry import Method, get_method

Array = jax.Array
#: ((stage name, (top-level variable names...)), ...), input side first.
Stages = tuple[tuple[str, tuple[str, ...]], ...]

#: A method fails when, with every stage re-initialised, its maps still keep at least
#: this mean Spearman rank correlation with the trained model's: most of the order
#: of its pixels comes from the image, not the model. Independent maps give about 0.
SIMILARITY_LIMIT = 0.5
#: SSIM as scikit-image's ``structural_similarity`` computes it by default: a
#: square window of this side, sample covariances, constants K1 and K2.
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: Operations that only retype or reshape a value: a parameter passed through them
#: is not yet used (a cast of every parameter up front says nothing of the order).
_PASS_THROUGH = frozenset({'convert_element_type', 'reshape', 'broadcast_in_dim', 'transpose',
                           'squeeze', 'expand_dims', 'copy', 'copy_p'})


# Similarity of maps.

def average_ranks(values: Array) -> Array:
  """(B, N) -> (B, N) float: 1-based ranks along the last axis, ties given their mean rank
  (``scipy.stats.rankdata(method='average')``)."""
  order = jnp.argsort(values, axis=-1)
  ordered = jnp.take_along_axis(values, order, axis=-1)
  # Each sorted position's run of equal values: first and last position of the run.
  size = values.shape[-1]
  position = jnp.broadcast_to(jnp.arange(size), values.shape)
  changes = ordered[:, 1:] != ordered[:, :-1]
  starts = jnp.concatenate([jnp.ones_like(changes[:, :1]), changes], axis=1)
  ends = jnp.concatenate([changes, jnp.ones_like(changes[:, :1])], axis=1)
  first = lax.cummax(jnp.where(starts, position, 0), axis=1)
  last = lax.cummin(jnp.where(ends, position, size - 1), axis=1, reverse=True)
  mean_rank = (first + last + 2).astype(result_dtype(values)) / 2
  rows = jnp.arange(values.shape[0])[:, None]
  return jnp.zeros_like(mean_rank).at[rows, order].set(mean_rank)


@jax.jit
def spearman(a: Array, b: Array) -> Array:
  """(B, ...) x (B, ...) -> (B,): Spearman rank correlation of each pair of maps
  (``scipy.stats.spearmanr``); NaN where a map is constant."""
  ranks = [average_ranks(m.reshape(m.shape[0], -1)) for m in (a, b)]
  centred = [r - r.mean(-1, keepdims=True) for r in ranks]
  covariance = (centred[0] * centred[1]).sum(-1)
  return covariance / jnp.sqrt((centred[0]**2).sum(-1) * (centred[1]**2).sum(-1))


@jax.jit
def ssim(a: Array, b: Array) -> Array:
  """(B, H, W) x (B, H, W) maps in [0, 1] -> (B,) mean structural similarity.

  ``skimage.metrics.structural_similarity(a, b, data_range=1)``: 7x7 uniform
  windows wholly inside the map, sample covariances; NaN for maps smaller
  than a window.
  """
  if min(a.shape[1:]) < SSIM_WINDOW:
    return jnp.full(a.shape[:1], jnp.nan, result_dtype(a))
  area = SSIM_WINDOW**2

  def mean(m):
    window = (1, SSIM_WINDOW, SSIM_WINDOW)
    return lax.reduce_window(m, 0.0, lax.add, window, (1, 1, 1), 'VALID') / area

  mean_a, mean_b = mean(a), mean(b)
  sample = area / (area - 1)
  var_a = sample * (mean(a * a) - mean_a**2)
  var_b = sample * (mean(b * b) - mean_b**2)
  cov = sample * (mean(a * b) - mean_a * mean_b)
  c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
  index = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)
           / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
  return index.mean(axis=(1, 2))


# Parameter stages, from the model.

def parameter_stages(model, variables, x: Array) -> Stages:
  """The model's parameter stages, input side first.

  Args:
    model: any model :func:`~gestaltxai.models.contract.explainable` takes.
    variables: its variables; Flax variables (``{'params': ..., 'batch_stats':
      ...}``) are grouped by the names under their collections.
    x: images (or their shape and dtype) the model takes, to trace its
      forward pass.

  Returns:
    The module's ``parameter_stages`` when it declares them; otherwise one
    stage per top-level variable name, in the order the forward pass first
    uses them (retyping and reshaping do not count as a use).

  Raises:
    ValueError: the forward pass never uses a name, or first uses two names
      in the same operation (their order cannot be told): give ``stages=``.
  """
  model = explainable(model)
  declared = getattr(model.module, 'parameter_stages', None) if isinstance(
      model, LinenModel) else None
  if declared is not None:
    return tuple((name, tuple(keys)) for name, keys in declared)
  names = _top_level_names(variables)
  groups = sorted(set(names), key=names.index)
  structure, specs = shape_structure(variables)
  jaxpr = jax.make_jaxpr(lambda images, *values: model.logits(
      jax.tree.unflatten(structure, values), images))(
          jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), *specs)
  # invars: the images, then one per leaf.
  sources = {var: frozenset({groups.index(name)})
             for var, name in zip(jaxpr.jaxpr.invars[1:], names)}
  first_use = {}
  _first_uses(jaxpr.jaxpr, sources, first_use, [0])
  unused = [g for i, g in enumerate(groups) if i not in first_use]
  if unused:
    raise ValueError(f'the forward pass of {model.describe()} never uses {unused}, so their '
                     'place in the model cannot be told; give stages=((name, (top-level '
                     'names...)), ...) input side first')
  by_use = sorted(first_use, key=first_use.get)
  for earlier, later in zip(by_use, by_use[1:]):
    if first_use[earlier] == first_use[later]:
      raise ValueError(f'{model.describe()} first uses {groups[earlier]!r} and '
                       f'{groups[later]!r} in the same operation, so their order cannot be '
                       'told; give stages=((name, (top-level names...)), ...) input side '
                       'first')
  return tuple((groups[i], (groups[i],)) for i in by_use)


def shape_structure(tree):
  """A hashable stand-in for a pytree of arrays: its structure and leaf shapes and dtypes."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  return treedef, tuple(jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves)


def _top_level_names(variables) -> list[str]:
  """The stage-level name of each leaf: the first key, or the second under a collection
  of Flax variables ({'params': {...}, 'batch_stats': {...}, ...})."""
  depth = 1 if isinstance(variables, Mapping) and isinstance(variables.get('params'),
                                                              Mapping) else 0
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]
  return [str(_key(path[min(depth, len(path) - 1)])) for path in paths]


def _key(entry):
  """A path entry's name: a dict key, an attribute name or a sequence index."""
  for field in ('key', 'name', 'idx'):
    if hasattr(entry, field):
      return getattr(entry, field)
  return entry


def _first_uses(jaxpr, sources: dict, first_use: dict, counter: list) -> None:
  """Walks the equations in order, recording the first that uses each group.

  ``sources`` maps a variable to the groups it still carries unchanged;
  nested computations whose inputs match the equation's one to one are walked
  in place, others count as a use of every input.
  """
  for eqn in jaxpr.eqns:
    carried = frozenset().union(*(sources.get(v, frozenset()) for v in eqn.invars
                                  if not isinstance(v, jax_core.Literal)))
    if not carried:
      continue
    inner = list(sub_jaxprs(eqn))
    if inner and all(len(sub.invars) == len(eqn.invars) for sub in inner):
      for sub in inner:
        _first_uses(sub, {iv: sources[ov] for iv, ov in zip(sub.invars, eqn.invars)
                          if not isinstance(ov, jax_core.Literal) and ov in sources},
                    first_use, counter)
    elif eqn.primitive.name in _PASS_THROUGH:
      sources.update({out: carried for out in eqn.outvars})
    else:
      counter[0] += 1
      for group in carried:
        first_use.setdefault(group, counter[0])


def _normalized_stages(stages) -> Stages:
  """``stages`` as ((name, (top-level names...)), ...): a bare name is a stage of itself."""
  return tuple((s, (s,)) if isinstance(s, str) else (s[0], tuple(s[1])) for s in stages)


def stage_from_head(variables, stages: Stages) -> Any:
  """A pytree like ``variables`` of int32: each leaf's stage counted from the head (0)."""
  position = {name: len(stages) - 1 - i for i, (_, keys) in enumerate(stages) for name in keys}
  names = _top_level_names(variables)
  missing = sorted(set(names) - set(position))
  if missing:
    raise ValueError(f'the stages {[s for s, _ in stages]} leave out the variables {missing}: '
                     'every top-level name must belong to a stage')
  return jax.tree.unflatten(jax.tree.structure(variables), [jnp.int32(position[n]) for n in names])


# The check.

@flax.struct.dataclass
class Randomization:
  """The result of :func:`model_randomization` (a pytree: returned from jitted code).

  Attributes:
    stages: names of the stages re-initialised, head first; cascading: after
      step s, stages[0..s] are random; independent: at step s only stages[s].
    spearman: (B, S) Spearman rank correlation of each image's map after
      each step with its map from the trained model.
    ssim: (B, S) SSIM of the same maps, min-max normalised (NaN for region
      coefficients, which are no maps).
  """

  stages: tuple[str, ...] = flax.struct.field(pytree_node=False)
  spearman: Array
  ssim: Array
  independent: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def per_image(self) -> Array:
    """(B,) each image's headline Spearman correlation: with every stage random
    (cascading), or the mean over stages each random alone (independent)."""
    return self.spearman.mean(axis=1) if self.independent else self.spearman[:, -1]

  @property
  def similarity(self) -> Array:
    """Mean of :attr:`per_image` over the images (scalar)."""
    return jnp.nanmean(self.per_image)

  def passed(self, limit: float = SIMILARITY_LIMIT) -> bool:
    """Whether the maps changed: :attr:`similarity` below ``limit``."""
    return bool(self.similarity < limit)


MethodLike = Union[str, Method, Callable[..., Array]]


def _without_empty_collections(variables):
  """Flax variables less collections without a leaf: a checkpoint of a network without
  batch statistics (dlib's) restores an empty 'batch_stats' that a fresh init lacks."""
  if not isinstance(variables, dict):
    return variables
  return {name: tree for name, tree in variables.items() if jax.tree.leaves(tree)}


def model_randomization(method: MethodLike, model, variables, x: Array,
                        target: Optional[Array] = None, *, random_variables=None,
                        stages: Optional[Sequence] = None, key: Optional[Array] = None,
                        independent: bool = False, **options) -> Randomization:
  """Model randomisation of a saliency method, all stages in one computation.

  Cascading (the default) re-initialises the stages from the head down, one
  more at each step; ``independent=True`` re-initialises one stage at a
  time, the others trained (Adebayo et al.'s independent randomisation).

  Args:
    method: a name in ``saliency.METHODS`` (or a :class:`Method`), or a
      function ``f(model, variables, x, target, *, key, **options)`` with a
      method's signature, returning (B, H, W, C), (B, H, W) or region
      coefficients (B, num_regions).
    model, variables: any model :func:`explainable` takes (level 1 suffices
      when the method needs no more), and its trained variables.
    x: (B, H, W, C) float images.
    target: (B,) int classes; the trained model's prediction when None (the
      same target at every step).
    random_variables: a fresh initialisation of the same structure; for a
      Flax linen module, ``module.init(key, x[:1])`` when None.
    stages: ((name, (top-level names...)), ...) input side first (a bare
      name is a stage of itself); from :func:`parameter_stages` when None.
    key: randomness for the initialisation and the method (the same key at
      every step, so a noise method draws the same noise).
    independent: one stage at a time instead of the cascade.
    **options: the method's options; arrays are passed as traced values,
      everything else compiles in.

  Returns:
    :class:`Randomization`; ``.similarity`` is the headline number and
    ``.passed()`` the verdict.
  """
  model = explainable(model)
  variables = _without_empty_collections(variables)
  key = jax.random.PRNGKey(0) if key is None else key
  init_key, method_key = jax.random.split(key)
  stages = parameter_stages(model, variables, x) if stages is None else _normalized_stages(
      stages)
  if random_variables is None:
    random_variables = _fresh_variables(model, init_key, x)
  random_variables = _without_empty_collections(random_variables)
  if jax.tree.structure(random_variables) != jax.tree.structure(variables):
    raise ValueError('random_variables must have the structure of variables; got '
                     f'{jax.tree.structure(random_variables)}')
  entry = get_method(method) if isinstance(method, (str, Method)) else method
  traced = {k: v for k, v in options.items() if isinstance(v, (jax.Array, np.ndarray))}
  static = tuple(sorted((k, v) for k, v in options.items() if k not in traced))
  target = predict(model, variables, x) if target is None else jnp.asarray(target)
  spearman_, ssim_ = _cascade(entry, model, variables, random_variables,
                              stage_from_head(variables, stages), x, target, method_key,
                              traced, static, len(stages), bool(independent))
  return Randomization(tuple(name for name, _ in reversed(stages)), spearman_.T, ssim_.T,
                       bool(independent))


def _fresh_variables(model, key, x):
  if not isinstance(model, LinenModel):
    raise ValueError(f'{model.describe()} has no initialiser here: give random_variables=, a '
                     'fresh initialisation of the same structure as variables')
  return _init(model.module, key, x[:1])


@functools.partial(jax.jit, static_argnums=0)
def _init(module, key, x):
  return module.init(key, x)


def _maps(result: Array) -> Array:
  """A method's result as what the similarities compare: relevance maps (B, H, W), or region
  coefficients (B, 1, R) without column 0 (label 0)."""
  return {4: lambda r: relevance_of(r, 'input'), 3: lambda r: relevance_of(r, 'layer'),
          2: lambda r: r[:, None, 1:]}[result.ndim](result)


@functools.partial(jax.jit, static_argnames=('method', 'model', 'static_options',
                                             'num_stages', 'independent'))
def _cascade(method, model, variables, random_variables, stage_of_leaf, x, target, key,
             traced_options, static_options, num_stages, independent=False):
  """(S, B) Spearman and SSIM after each step (cascading, or one stage alone when
  ``independent``), one step per ``lax.map`` iteration."""
  options = {**traced_options, **dict(static_options)}
  explain = lambda v: _maps(method(model, v, x, target, key=key, **options))
  original = explain(variables)
  normalized = min_max_normalize(original)  # the trained map's, shared by every step

  def after(step):
    chosen = (lambda stage: stage == step) if independent else (lambda stage: stage <= step)
    mixed = jax.tree.map(lambda trained, fresh, stage: jnp.where(chosen(stage), fresh, trained),
                         variables, random_variables, stage_of_leaf)
    randomized = explain(mixed)
    return spearman(original, randomized), ssim(normalized, min_max_normalize(randomized))

  return lax.map(after, jnp.arange(num_stages))
