"""The report's "Ground truth" section, for the demo's planted traits: which methods find the
planted regions and pass the model-randomisation check, and what was planted."""

from __future__ import annotations

from typing import Optional

from gestaltxai.viz import blocks, inputs, plots
from gestaltxai.viz.blocks import Section

#: The demo summary's per-method scores shown, as (key, column heading).
COLUMNS = (
    ('recovery_classes', 'recovery: classes'), ('recovery_images', 'recovery: images'),
    ('deletion_auc', 'deletion'), ('insertion_auc', 'insertion'),
    ('randomisation_similarity', 'randomisation r'), ('images_per_s', 'images/s'))


def section(study: inputs.Study) -> Optional[Section]:
  """None unless the report was given the demo's summary."""
  path = study.inputs.ground_truth
  if path is None:
    return None
  result = Section('ground-truth', 'Ground truth: the planted regions')
  try:
    summary = inputs.read_ground_truth(path)
    scores = summary['methods']
    limit = summary['randomisation_limit']
  except (OSError, ValueError, KeyError) as err:
    study.warnings.append(f'ground truth {path}: {err}')
    result.blocks.append(blocks.note(f'{path} could not be read: {err}'))
    return result
  first = next(iter(scores.values()))
  planted = ', '.join(f'{c}: {r}' for c, r in summary['planted_regions'].items() if r)
  faces = ('Real photos (FairFace) with a trait planted per class by a landmark warp'
           if summary.get('faces') == 'real' else 'Synthetic faces plant one trait per class')
  result.blocks.append(blocks.text(
      f'{faces} in a known region ({planted}); the '
      f'{summary.get("size", "")} model reached {summary["test_accuracy"]:.2f} test '
      f'accuracy. Recovery: the share of trait classes whose largest RQ1 effect (|Cohen\'s d| '
      f'against {summary["control"]}) lies in the planted region, and of correctly classified '
      f'trait-class images whose planted region has the highest coefficient z-scored against '
      f'{summary["control"]} (chance {first["chance_classes"]:.2f} and '
      f'{first["chance_images"]:.2f}). Deletion and insertion: areas under the target '
      f'probability as the most relevant pixels are removed (lower is better) or restored '
      f'(higher is better). A method fails the model-randomisation check when its maps keep a '
      f'Spearman correlation r of {limit} or more with every layer re-initialised.'))
  rows = [[name, *(m.get(key) for key, _ in COLUMNS)] for name, m in scores.items()]
  result.blocks.append(blocks.table(['method', *(label for _, label in COLUMNS)], rows,
                                    f'from {path}'))
  result.blocks.append(blocks.figure(plots.ground_truth(summary), 'fig-ground-truth',
                                     'Recovery of the planted regions beside chance, and the '
                                     'model-randomisation check.'))
  if study.inputs.data_dir is not None:
    result.blocks += planted_strip_blocks(study.inputs.data_dir, study.warnings)
  return result


def planted_strip_blocks(data_dir, warnings: list[str]) -> list[dict]:
  """The planted strip of a dataset of traits planted on photos (none for other datasets)."""
  from gestaltxai.viz.planted import identity_records, planted_strip  # pylint: disable=import-outside-toplevel
  from gestaltxai.data.schema import MetadataKey  # pylint: disable=import-outside-toplevel
  try:
    dataset = inputs.open_dataset(data_dir)
    if MetadataKey.PLANTED_CHECKS not in dataset.metadata:
      return []
    figure = planted_strip(identity_records(dataset))
  except (OSError, ValueError, KeyError) as err:
    warnings.append(f'planted strip from {data_dir}: {err}')
    return []
  return [blocks.figure(figure, 'fig-planted-strip',
                        'What was planted: one person unaffected and with each trait; arrows '
                        'show how the warp moved the landmarks (drawn 3x), with the strength '
                        'and the change dlib measured on the warped face (over the face '
                        'width).')]
