"""The report's "Data" section: the table's images per class and fold, and the dataset's."""

from __future__ import annotations

import collections

import numpy as np

from gestaltxai.viz import blocks, inputs
from gestaltxai.viz.blocks import Section


def section(study: inputs.Study) -> Section:
  table = study.table
  result = Section('data', 'Data')
  names, labels = table['image_name'], table['label']
  folds = table['fold'] if 'fold' in table else np.zeros(len(table))
  first = {}
  for i, name in enumerate(names.tolist()):
    first.setdefault(name, i)
  unique = np.array(sorted(first.values()), np.int64)
  not_ok = ~table.ok
  entries = [(len(unique), 'images'), (len(table.methods), 'methods'),
             (len(set(labels.tolist())), 'classes'),
             (int(not_ok.sum()), 'rows without coefficients')]
  if 'predicted' in table:
    correct = labels[unique] == table['predicted'][unique]
    entries.append((f'{correct.mean():.3f}', 'accuracy of the explained predictions'))
  result.blocks.append(blocks.cards(entries))
  result.blocks.append(blocks.text(f'Table {table.path}: {len(table)} rows. Methods: '
                                   f'{", ".join(table.methods)}.'))
  fold_values = sorted({int(f) for f in folds[unique] if np.isfinite(f)})
  rows = []
  for name in table.classes:
    in_class = unique[labels[unique] == name]
    rows.append([name, *(int((folds[in_class] == f).sum()) for f in fold_values), len(in_class)])
  rows.append(['all', *(int((folds[unique] == f).sum()) for f in fold_values), len(unique)])
  result.blocks.append(blocks.table(['class', *(f'fold {f}' for f in fold_values), 'total'],
                                    rows, 'Test images per class and fold'))
  if not_ok.any():
    reasons = collections.Counter(table['status'][not_ok].tolist())
    result.blocks.append(blocks.table(['status', 'rows'], reasons.most_common(),
                                      'Rows without coefficients, by reason'))
  if study.inputs.data_dir is not None:
    result.blocks += _dataset_blocks(study.inputs.data_dir, study.warnings)
  return result


def _dataset_blocks(data_dir, warnings: list[str]) -> list[dict]:
  from gestaltxai.data.schema import MetadataKey  # pylint: disable=import-outside-toplevel
  try:
    dataset = inputs.open_dataset(data_dir)
    metadata = dataset.metadata
    counts = np.bincount(dataset.labels, minlength=len(dataset.classes))
  except (FileNotFoundError, ValueError, KeyError, OSError) as err:
    warnings.append(f'--data-dir {data_dir}: {err}')
    return [blocks.note(f'The dataset at {data_dir} could not be read: {err}')]
  found = [blocks.heading('Dataset', 'dataset'),
           blocks.text(f'{dataset.directory}: {len(dataset)} aligned faces in '
                       f'{len(dataset.classes)} classes, {metadata.get(MetadataKey.NUM_FOLDS, "?")} '
                       'folds.'),
           blocks.table(['class', 'images'], zip(dataset.classes, counts.tolist()),
                        'Images per class (all splits)')]
  means = metadata.get(MetadataKey.FOLD_MEAN_BGR) or {}
  if means:
    found.append(blocks.table(['fold', 'B', 'G', 'R'], [[k, *v] for k, v in means.items()],
                              'Per-fold BGR channel mean over the training images'))
  skipped = metadata.get(MetadataKey.SKIPPED) or []
  if skipped:
    found.append(blocks.details(f'{len(skipped)} photos could not be used',
                                [blocks.table(list(skipped[0]),
                                              [list(s.values()) for s in skipped])]))
  return found
