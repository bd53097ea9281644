"""The report's "Examples" section: a few faces with every method's relevance map over them."""

from __future__ import annotations

from gestaltxai.artifacts.coefficient_table import EXAMPLES_PREFIX, MAPS_SUFFIX
from gestaltxai.viz import blocks, inputs, maps
from gestaltxai.viz.blocks import Section


def section(study: inputs.Study) -> Section:
  map_set = study.maps
  result = Section('examples', 'Examples')
  if map_set is None or map_set.example_images is None or not map_set.examples:
    result.blocks.append(blocks.note(f'No example maps ({EXAMPLES_PREFIX}... in '
                                     f'TABLE{MAPS_SUFFIX}).'))
    return result
  for n, chunk in enumerate(blocks.chunks(list(map_set.examples)), 1):
    result.blocks.append(blocks.figure(
        maps.overlay_grid(map_set.example_images, {m: map_set.examples[m] for m in chunk},
                          names=map_set.example_names, scale='method'),
        f'fig-examples-{n}',
        'Relevance of the predicted class over each example face; one colour range per '
        'method across the examples, so maps of one method compare across images.'))
  return result
