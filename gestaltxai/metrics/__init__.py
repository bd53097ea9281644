"""Metrics of explanations: faithfulness (deletion, insertion, region deletion), the
model-randomisation sanity check, and recovery of planted regions (synthetic ground truth).
The first two are pure, batched, jit-able functions for any model."""

from gestaltxai.metrics.faithfulness import (BLUR_SIGMA, DEFAULT_STEPS, Curve, area_under_curve,
                                             coefficient_map, deletion, gaussian_blur, insertion,
                                             region_deletion, relevance_ranks)
from gestaltxai.metrics.recovery import Recovery, image_hits, recovery, strongest_regions
from gestaltxai.metrics.sanity import (SIMILARITY_LIMIT, Randomization, average_ranks,
                                       model_randomization, parameter_stages, spearman, ssim)

__all__ = ['BLUR_SIGMA', 'Curve', 'DEFAULT_STEPS', 'Randomization', 'Recovery',
           'SIMILARITY_LIMIT', 'area_under_curve', 'average_ranks', 'coefficient_map', 'deletion',
           'gaussian_blur', 'image_hits', 'insertion', 'model_randomization', 'parameter_stages',
           'recovery', 'region_deletion', 'relevance_ranks', 'spearman', 'ssim',
           'strongest_regions']
