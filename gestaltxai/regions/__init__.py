"""Facial regions: label maps from parsing maps or landmarks, and coefficients."""

from gestaltxai.regions.coefficients import (coefficients, min_max_normalize,
                                             normalized_coefficients)
from gestaltxai.regions.hpo import HPO_REGIONS, hpo_region_map
from gestaltxai.regions.landmarks import FINE_REGIONS, fine_region_map, landmark_parsing
from gestaltxai.regions.maps import (LAPA, LAPA_FLIP, LAPA_LABELS, REFERENCE_REGIONS,
                                     largest_component, reference_region_boxes,
                                     reference_region_map)

__all__ = ['FINE_REGIONS', 'HPO_REGIONS', 'LAPA', 'LAPA_FLIP', 'LAPA_LABELS', 'REFERENCE_REGIONS',
           'coefficients', 'fine_region_map', 'hpo_region_map', 'landmark_parsing',
           'largest_component', 'min_max_normalize', 'normalized_coefficients',
           'reference_region_boxes', 'reference_region_map']
