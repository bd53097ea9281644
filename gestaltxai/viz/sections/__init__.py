"""The report's sections in page order (:data:`SECTIONS`), one module each.

Every section is one function ``section(study: gestaltxai.viz.inputs.Study) -> Section``
(None where the input it shows was not given) built from the blocks of
:mod:`gestaltxai.viz.blocks`. Adding a section: a module here with its ``section`` function
(reading any new input through :mod:`gestaltxai.viz.inputs`) and its entry in
:data:`SECTIONS`.
"""

from __future__ import annotations

from typing import Callable, Optional

from gestaltxai.viz.blocks import Section
from gestaltxai.viz.inputs import Study
from gestaltxai.viz.sections import (cost, data, examples, ground_truth, methods, provenance, rq1,
                                     rq2, training, trust)

#: Every section's function, in the order of the page.
SECTIONS: tuple[Callable[[Study], Optional[Section]], ...] = (
    data.section,
    ground_truth.section,
    training.section,
    rq1.section,
    rq2.section,
    methods.section,
    examples.section,
    trust.section,
    cost.section,
    provenance.section,
)


def build_sections(study: Study) -> list[Section]:
  """The sections shown for ``study``, in page order."""
  return [shown for shown in (build(study) for build in SECTIONS) if shown is not None]
