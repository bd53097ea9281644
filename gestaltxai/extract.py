"""Dataset x methods -> region coefficient table, one compiled step per batch.

Each step predicts, explains the predicted class and reduces the relevance
maps to region coefficients on the device; only (B, regions) coefficients
and the class probabilities come back to the host.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gestaltxai.models.contract import explainable
from gestaltxai.regions.coefficients import coefficients
from gestaltxai.regions.maps import REFERENCE_REGIONS
from gestaltxai.saliency.registry import METHODS, get_method, relevance_of


@functools.partial(jax.jit, static_argnames=('method', 'model', 'static_options', 'num_regions'))
def explain_step(method, model, variables, images, regions, key, static_options=(),
                 num_regions=len(REFERENCE_REGIONS)):
  """One batch: (probabilities (B, classes), coefficients (B, num_regions)) float32.

  The predicted class is explained; ``regions`` (B, H, W) int labels.
  """
  model = explainable(model)
  logits = model.logits(variables, images)
  target = jnp.argmax(logits, axis=-1)
  entry = METHODS[method]
  attribution = entry(model, variables, images, target, key=key, **dict(static_options))
  coefs = coefficients(relevance_of(attribution, entry.space), regions, num_regions)
  return jax.nn.softmax(logits.astype(jnp.float32)), coefs


@dataclasses.dataclass(frozen=True)
class Row:
  image: str
  method: str
  coefficients: tuple[float, ...]
  label: str
  predicted: str
  probabilities: tuple[float, ...]


def region_table(model, variables, batches: Iterable[dict], methods: Sequence[str],
                 classes: Sequence[str], *, key=None, options=None) -> list[Row]:
  """Coefficients of every image of ``batches`` for every method.

  Args:
    batches: dicts with 'image' (B, H, W, 3) float32, 'regions', 'label',
      'name' (see :func:`gestaltxai.data.pipeline.batches`).
    methods: method names (aliases allowed).
    options: {method name: {option: value}} (hashable values).
  """
  options = options or {}
  key = jax.random.PRNGKey(0) if key is None else key
  names = [get_method(m).name for m in methods]
  rows = []
  for batch_number, batch in enumerate(batches):
    if not np.isfinite(batch['image']).all():
      bad = [n for n, im in zip(batch['name'], batch['image']) if not np.isfinite(im).all()]
      raise ValueError(f'non-finite pixels in {bad}')
    images, regions = jnp.asarray(batch['image']), jnp.asarray(batch['regions'])
    for name in names:
      static = tuple(sorted(options.get(name, {}).items()))
      step_key = jax.random.fold_in(key, batch_number)
      probs, coefs = jax.device_get(
          explain_step(name, model, variables, images, regions, step_key, static))
      for i, image_name in enumerate(batch['name']):
        rows.append(Row(image_name, name, tuple(map(float, coefs[i])),
                        classes[int(batch['label'][i])], classes[int(probs[i].argmax())],
                        tuple(map(float, probs[i]))))
  return rows


def write_csv(rows: Sequence[Row], path, classes: Sequence[str],
              regions: Sequence[str] = REFERENCE_REGIONS[1:]) -> None:
  """The reference's RQ1 table: image, method, <region>_xai..., label, predicted, p_<class>..."""
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['image_name', 'method', *(f'{r}_xai' for r in regions), 'label',
                     'predicted', *(f'p_{c}' for c in classes)])
    offset = len(REFERENCE_REGIONS) - len(regions)
    for row in rows:
      writer.writerow([row.image, row.method, *row.coefficients[offset:], row.label,
                       row.predicted, *(f'{p:.3f}' for p in row.probabilities)])
