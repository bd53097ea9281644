"""The report's "Per-method figures" section: each method's class-mean relevance maps and its
region coefficients per class, RQ1's significant differences marked."""

from __future__ import annotations

from gestaltxai.artifacts.coefficient_table import MAPS_SUFFIX
from gestaltxai.viz import blocks, inputs, maps, plots
from gestaltxai.viz.blocks import Section
from gestaltxai.viz.sections.rq1 import significance_label


def section(study: inputs.Study) -> Section:
  table, config, map_set = study.table, study.config, study.maps
  result = Section('methods', 'Per-method figures')
  if map_set is None and study.maps_path is not None:
    result.blocks.append(blocks.note(f'{study.maps_path} could not be read; see the warnings.'))
  if map_set is None:
    result.blocks.append(blocks.note(f'No TABLE{MAPS_SUFFIX} beside the table: class-mean maps '
                                     'need the maps file that gestaltxai extract writes.'))
  significant = {(t.method, t.syndrome, t.region): t.significant for t in study.results.rq1}
  regions = table.regions(config.suffix)
  classes = [c for c in table.classes if c != config.control]
  for method in table.methods:
    anchor = f'method-{blocks.slug(method)}'
    result.blocks.append(blocks.heading(method, anchor))
    if map_set is not None and method in map_set.class_mean and map_set.mean_image is not None:
      result.blocks.append(blocks.figure(
          maps.class_mean_maps(map_set.mean_image, {method: map_set.class_mean[method]},
                               map_set.classes), f'fig-{anchor}-class-mean',
          f'{method}: mean relevance over each class\'s test images, over the class\'s mean '
          'aligned face (one colour scale for the row).'))
    if regions:
      coefficients = {
          region: {name: table[f'{region}{config.suffix}'][table.select(method=method,
                                                                        label=name)]
                   for name in table.classes} for region in regions}
      marks = {(s, r): significant.get((method, s, r), False) for s in classes for r in regions}
      result.blocks.append(blocks.figure(
          plots.region_distributions(coefficients, control=config.control, classes=classes,
                                     significant=marks, mark_label=significance_label(config)),
          f'fig-{anchor}-distributions',
          f'{method}: region coefficients per class, {config.control} first (grey); red boxes '
          'and * mark the classes that differ from the control in RQ1.'))
  return result
