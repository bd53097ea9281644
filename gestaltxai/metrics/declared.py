"""The metrics of the other modules in the table: faithfulness (deletion, insertion,
region deletion, ROAD) and sanity (model randomisation, cascading and independent; random
logit). Each is a thin function giving (B,) scores; the full curves stay with the
functions they call."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax

from gestaltxai.metrics.faithfulness import BLUR_SIGMA, DEFAULT_STEPS, deletion, insertion, \
    region_deletion
from gestaltxai.metrics.random_logit import SIMILARITIES, random_logit
from gestaltxai.metrics.registry import metric
from gestaltxai.metrics.road import FRACTIONS, NOISE_LEVEL, region_road, road
from gestaltxai.metrics.sanity import model_randomization
from gestaltxai.saliency.checks import one_of, positive_int
from gestaltxai.saliency.registry import Method

Array = jax.Array
#: Costs below are counted at this many face regions (none, eye, nose, mouth) and model
#: stages (the package's ResNet: stem, layer1..4, fc).
COST_REGIONS, COST_STAGES = 4, 6


class BoundMethod(NamedTuple):
  """The metric input ``method``: a saliency method and the options it runs with (arrays,
  such as a region method's ``regions``, included)."""

  method: Method
  options: Mapping[str, Any]


def _fractions(name, value):
  if not len(value) or any(not 0 < f < 1 for f in value):
    raise ValueError(f'{name} must be shares in (0, 1), got {value!r}')


@metric('deletion', direction='lower', cost=lambda o: (o['steps'] + 1, 0),
        checks={'steps': positive_int})
def deletion_area(model, variables, x, relevance, target, *, steps: int = DEFAULT_STEPS,
                  baseline: float = 0.0):
  """Area under the target probability as the most relevant pixels go to the baseline."""
  return deletion(model, variables, x, relevance, target, steps=steps, baseline=baseline).area


@metric('insertion', direction='higher', cost=lambda o: (o['steps'] + 1, 0),
        checks={'steps': positive_int})
def insertion_area(model, variables, x, relevance, target, *, steps: int = DEFAULT_STEPS,
                   blur_sigma: float = BLUR_SIGMA):
  """Area under the target probability as the most relevant pixels return to a blur."""
  return insertion(model, variables, x, relevance, target, steps=steps,
                   blur_sigma=blur_sigma).area


@metric('region_deletion', direction='lower', cost=(COST_REGIONS, 0))
def region_deletion_area(model, variables, x, coefficients, regions, target, *,
                         baseline: float = 0.0):
  """Area under the target probability as regions go to the baseline, highest first."""
  return region_deletion(model, variables, x, coefficients, regions, target,
                         baseline=baseline).area


@metric('road', direction='higher', cost=lambda o: (2 * len(o['fractions']), 0),
        checks={'fractions': _fractions})
def road_score(model, variables, x, relevance, target, key, *,
               fractions: tuple = FRACTIONS, noise_level: float = NOISE_LEVEL):
  """ROAD (Rong et al. 2022): (mean LeRF - mean MoRF) / 2 of the target probability."""
  return road(model, variables, x, relevance, target, fractions=tuple(fractions),
              noise_level=noise_level, key=key).score


@metric('region_road', direction='higher', cost=(2 * (COST_REGIONS - 2), 0))
def region_road_score(model, variables, x, coefficients, regions, target, key, *,
                      noise_level: float = NOISE_LEVEL):
  """ROAD over face regions: whole regions removed in coefficient order, then imputed."""
  return region_road(model, variables, x, coefficients, regions, target,
                     noise_level=noise_level, key=key).score


@metric('model_randomization', direction='lower', cost=(0, COST_STAGES + 1))
def cascading_randomization(method, model, variables, x, target, key):
  """Spearman correlation with the map of a model re-initialised from the head down."""
  return model_randomization(method.method, model, variables, x, target, key=key,
                             **method.options).per_image


@metric('independent_randomization', direction='lower', cost=(0, COST_STAGES + 1))
def independent_randomization(method, model, variables, x, target, key):
  """Mean Spearman correlation with the maps of each stage re-initialised alone."""
  return model_randomization(method.method, model, variables, x, target, key=key,
                             independent=True, **method.options).per_image


@metric('random_logit', direction='lower', cost=(0, 2),
        checks={'similarity': one_of(SIMILARITIES)})
def random_logit_similarity(method, model, variables, x, target, key, *,
                            similarity: str = 'ssim'):
  """Similarity of the maps of the target and of a random other class (Sixt et al. 2020)."""
  return random_logit(method.method, model, variables, x, target, key=key,
                      similarity=similarity, **method.options)
