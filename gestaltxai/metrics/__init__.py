"""Metrics of explanations: localisation against a ground truth (relevance mass and rank
accuracy, pointing game, top-k intersection, pixel- and region-level), faithfulness
(deletion, insertion, region deletion, ROAD), sanity (model randomisation, cascading and
independent; random logit), and recovery of planted regions (synthetic ground truth).

Every per-image metric is registered in :data:`METRICS` (see
:mod:`gestaltxai.metrics.registry`): a pure, batched function giving (B,) scores, with
what it needs, its options, its direction and its cost."""

from gestaltxai.metrics.faithfulness import (BLUR_SIGMA, DEFAULT_STEPS, Curve, area_under_curve,
                                             coefficient_map, deletion, gaussian_blur, insertion,
                                             region_deletion, relevance_ranks)
from gestaltxai.metrics.localisation import (TOP_K, pointing_game, relevance_mass_accuracy,
                                             relevance_rank_accuracy, top_k_intersection)
from gestaltxai.metrics.random_logit import other_classes, random_logit
from gestaltxai.metrics.recovery import Recovery, image_hits, recovery, strongest_regions
from gestaltxai.metrics.registry import (INPUTS, METRICS, Metric, get_metric, metric,
                                         metric_names)
from gestaltxai.metrics.road import (FRACTIONS, Road, linear_imputation,
                                     noisy_linear_imputation, region_road, road)
from gestaltxai.metrics.sanity import (SIMILARITY_LIMIT, Randomization, average_ranks,
                                       model_randomization, parameter_stages, spearman, ssim)
from gestaltxai.metrics import declared  # registers the faithfulness and sanity metrics
from gestaltxai.metrics.declared import BoundMethod

__all__ = ['BLUR_SIGMA', 'BoundMethod', 'Curve', 'DEFAULT_STEPS', 'FRACTIONS', 'INPUTS',
           'METRICS', 'Metric', 'Randomization', 'Recovery', 'Road', 'SIMILARITY_LIMIT', 'TOP_K',
           'area_under_curve', 'average_ranks', 'coefficient_map', 'deletion', 'gaussian_blur',
           'get_metric', 'image_hits', 'insertion', 'linear_imputation', 'metric',
           'metric_names', 'model_randomization', 'noisy_linear_imputation', 'other_classes',
           'parameter_stages', 'pointing_game', 'random_logit', 'recovery', 'region_deletion',
           'region_road', 'relevance_mass_accuracy', 'relevance_rank_accuracy',
           'relevance_ranks', 'road', 'spearman', 'ssim', 'strongest_regions',
           'top_k_intersection']
