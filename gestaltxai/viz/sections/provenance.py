"""The report's "Provenance" section: what its inputs were made from, and the table's own
record of its extraction."""

from __future__ import annotations

import json

from gestaltxai.artifacts.coefficient_table import PROVENANCE_SUFFIX
from gestaltxai.viz import blocks, inputs
from gestaltxai.viz.blocks import Section


def section(study: inputs.Study) -> Section:
  path, chain = study.provenance, study.inputs.chain
  result = Section('provenance', 'Provenance')
  if chain:
    result.blocks += [blocks.text('Made from (content fingerprints, checked when the report was '
                                  'written):'), blocks.pre('\n'.join(chain))]
  if path is None:
    result.blocks.append(blocks.note(f'No TABLE{PROVENANCE_SUFFIX} beside the table.'))
    return result
  try:
    text = json.dumps(inputs.read_provenance(path), indent=2, sort_keys=False)
  except (OSError, ValueError) as err:
    result.blocks.append(blocks.note(f'{path} could not be read: {err}'))
    return result
  result.blocks += [blocks.text(f'{path}, as written by extraction:'), blocks.pre(text)]
  return result
