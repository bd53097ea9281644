"""Metrics of explanations: faithfulness (deletion, insertion, region deletion) and the
model-randomisation sanity check. Pure, batched, jit-able functions for any model."""

from gestaltxai.metrics.faithfulness import (BLUR_SIGMA, DEFAULT_STEPS, Curve, area_under_curve,
                                             coefficient_map, deletion, gaussian_blur, insertion,
                                             region_deletion, relevance_ranks)
from gestaltxai.metrics.sanity import (SIMILARITY_LIMIT, Randomization, average_ranks,
                                       model_randomization, parameter_stages, spearman, ssim)

__all__ = ['BLUR_SIGMA', 'Curve', 'DEFAULT_STEPS', 'Randomization', 'SIMILARITY_LIMIT',
           'area_under_curve', 'average_ranks', 'coefficient_map', 'deletion', 'gaussian_blur',
           'insertion', 'model_randomization', 'parameter_stages', 'region_deletion',
           'relevance_ranks', 'spearman', 'ssim']
