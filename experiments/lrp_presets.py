"""LRP as the paper computed it against the conserving canonizer, on the synthetic ground truth.

    python -m experiments.lrp_presets --demo gestaltxai-demo

Reads a ``gestaltxai demo`` folder (its faces and trained model), extracts the
four LRP composites and excitation backprop under ``preset='reference'`` (what
the reference pipeline ran: zennit 0.5's BatchNorm merge, plain residual sums,
maps summing to about 65,000) and ``preset='conserving'`` (the Norm-rule
canonizer, maps summing to about 1), and prints whether they reach different
RQ1 conclusions (which tests are significant, the region of the largest
effect) or recover the planted regions differently.
"""

from __future__ import annotations

import argparse
import pathlib

from gestaltxai import extract, metrics
from gestaltxai.data.pipeline import FaceDataset
from gestaltxai.demo import CONTROL, FOLD, DemoPaths
from gestaltxai.saliency.lrp import PRESETS
from gestaltxai.stats import Rq1Config, compute, read_table

METHODS = ('lrp_epsilon_plus', 'lrp_epsilon_plus_flat', 'lrp_epsilon_alpha2_beta1',
           'lrp_epsilon_alpha2_beta1_flat', 'excitation_backprop')


def preset_table(paths: DemoPaths, preset: str) -> pathlib.Path:
  """The coefficient table of every LRP method under ``preset`` (extracted once)."""
  out = paths.root / f'lrp-{preset}.parquet'
  job = extract.extraction(paths.data, out, runs=paths.runs, methods=METHODS,
                           method_options={m: {'preset': preset} for m in METHODS},
                           folds=[FOLD], progress=False, log=lambda _: None)
  job.assemble(job.run())
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--demo', type=pathlib.Path, default=pathlib.Path('gestaltxai-demo'),
                      help='a gestaltxai demo folder')
  args = parser.parse_args(argv)
  paths = DemoPaths(args.demo)
  planted = FaceDataset.open(paths.data).metadata['trait_regions']
  results = {}
  for preset in PRESETS:
    table = read_table(preset_table(paths, preset))
    tests = compute(table, None, Rq1Config(control=CONTROL)).rq1
    results[preset] = (tests, metrics.recovery(table, tests, planted, CONTROL))
  print('| method | significant tests (reference / conserving) | same significant tests | '
        'largest effect: same region | recovery classes | recovery images |')
  print('|---|---|---|---|---|---|')
  for method in METHODS:
    significant = {p: {(t.syndrome, t.region) for t in results[p][0]
                       if t.method == method and t.significant} for p in PRESETS}
    recovered = {p: results[p][1][method] for p in PRESETS}
    same_region = sum(recovered['reference'].strongest[c] == recovered['conserving'].strongest[c]
                      for c in recovered['reference'].strongest)
    print(f'| {method} | {len(significant["reference"])} / {len(significant["conserving"])} | '
          f'{"yes" if significant["reference"] == significant["conserving"] else "no"} | '
          f'{same_region} of {len(recovered["reference"].strongest)} classes | '
          f'{recovered["reference"].classes:.2f} / {recovered["conserving"].classes:.2f} | '
          f'{recovered["reference"].images:.2f} / {recovered["conserving"].images:.2f} |')


if __name__ == '__main__':
  main()
