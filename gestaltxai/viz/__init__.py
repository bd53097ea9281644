"""Figures (matplotlib; each function returns a Figure) and the self-contained HTML report
(:mod:`gestaltxai.viz.report`)."""

from gestaltxai.viz.images import (CLIP_PERCENTILE, colorize, overlay, robust_range,
                                   template_face, to_display)
from gestaltxai.viz.maps import class_mean_maps, overlay_grid, region_faces
from gestaltxai.viz.plots import (confusion_figure, correlations, effect_sizes, method_cost,
                                  region_distributions, training_curves)

__all__ = ['CLIP_PERCENTILE', 'class_mean_maps', 'colorize', 'confusion_figure', 'correlations',
           'effect_sizes', 'method_cost',
           'overlay', 'overlay_grid', 'region_distributions', 'region_faces', 'robust_range',
           'template_face', 'to_display', 'training_curves']
