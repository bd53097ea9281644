"""The demo's recovery table as a mean over training seeds, with spreads and intervals.

    python -m benchmarks.demo_seeds --faces synthetic|real [--size default] [--seeds 0 1 2]
        [--out demo-seeds] [--markdown table.md]

Runs ``gestaltxai demo`` once per seed (``OUT/<faces>-<size>/seed-S``; a
finished stage is reused, so a second call only rebuilds the table) and
prints, per method, the mean and the standard deviation over seeds of each
figure of ``summary.json``, and for the image-level recovery a Wilson 95%
interval over images: the seeds' mean share among one seed's number of
scored images (the seeds' mean count). A method is said to rank first only
where it ranks first in every seed. On real photos every seed trains on the same planted faces
(the demo's photos and strengths are those of seed 0; seed 0's dataset is
copied, not rebuilt); on synthetic faces the seed draws new faces too.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import time

import numpy as np
from scipy import stats as scipy_stats

#: Columns of the table: (summary.json key, header, decimals, which way is better).
COLUMNS = (('recovery_classes', 'recovery: classes', 2, 'higher'),
           ('recovery_images', 'recovery: images', 2, 'higher'),
           ('deletion_auc', 'deletion', 3, 'lower'),
           ('insertion_auc', 'insertion', 3, 'higher'),
           ('randomisation_similarity', 'randomisation r', 2, 'lower'))
INTERVAL_LEVEL = 0.95


def wilson_interval(hits: float, total: int, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
  """Wilson score interval of a binomial share ``hits / total`` (``hits`` may be a mean)."""
  if total == 0:
    return float('nan'), float('nan')
  z = scipy_stats.norm.ppf(0.5 + level / 2)
  share = hits / total
  centre = (share + z * z / (2 * total)) / (1 + z * z / total)
  spread = np.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
  half = z * spread / (1 + z * z / total)
  return float(centre - half), float(centre + half)


def run_seeds(faces: str, size: str, seeds, out: pathlib.Path) -> list[dict]:
  """Each seed's summary.json, running the demo where it is not finished."""
  from gestaltxai.demo import run_demo  # pylint: disable=import-outside-toplevel
  summaries, first = [], out / f'{faces}-{size}' / f'seed-{seeds[0]}' / 'data'
  for seed in seeds:
    folder = out / f'{faces}-{size}' / f'seed-{seed}'
    if faces == 'real' and seed != seeds[0] and first.is_dir() and not (folder / 'data').exists():
      shutil.copytree(first, folder / 'data')   # the same planted photos for every seed
    started = time.perf_counter()
    summary = run_demo(folder, size, seed=seed, faces=faces)
    print(f'seed {seed}: {time.perf_counter() - started:.0f} s, test accuracy '
          f'{summary["test_accuracy"]:.3f}', flush=True)
    summaries.append(summary)
  return summaries


def seed_table(summaries: list[dict]) -> str:
  """The markdown table: mean ± sd over seeds per figure, and an interval over images."""
  seeds = len(summaries)
  accuracy = np.array([s['test_accuracy'] for s in summaries])
  methods = list(summaries[0]['methods'])
  first = summaries[0]['methods'][methods[0]]
  header = ['method'] + [title for _, title, _, _ in COLUMNS] + [
      f'images: {INTERVAL_LEVEL:.0%} interval']
  rows = [header, ['---'] * len(header),
          ['(chance)', f'{first["chance_classes"]:.2f}', f'{first["chance_images"]:.2f}', '', '',
           '', '']]
  for name in methods:
    cells = [f'`{name}`']
    for key, _, decimals, _ in COLUMNS:
      values = np.array([s['methods'][name][key] for s in summaries], np.float64)
      cells.append(f'{np.nanmean(values):.{decimals}f} ± {np.nanstd(values, ddof=1):.{decimals}f}')
    # The images' share of uncertainty: the mean share over one seed's number of images
    # (on real photos every seed scores the same faces, so pooling them would overstate n).
    scored = np.mean([s['methods'][name]['scored_images'] for s in summaries])
    share = np.mean([s['methods'][name]['recovery_images'] for s in summaries])
    low, high = wilson_interval(share * round(scored), round(scored))
    cells.append(f'{low:.2f} to {high:.2f} (n = {round(scored)})')
    rows.append(cells)
  lines = ['| ' + ' | '.join(row) + ' |' for row in rows]
  return (f'{seeds} seeds; test accuracy {accuracy.mean():.2f} ± {accuracy.std(ddof=1):.2f} '
          f'(per seed: {", ".join(f"{a:.2f}" for a in accuracy)})\n\n' + '\n'.join(lines)
          + '\n\n' + '\n'.join(rankings(summaries)))


def rankings(summaries: list[dict]) -> list[str]:
  """For each column, the method that ranks first in every seed, if one does."""
  lines = []
  for key, title, _, better in COLUMNS:
    firsts, pick = set(), min if better == 'lower' else max
    for summary in summaries:
      scores = {name: m[key] for name, m in summary['methods'].items()}
      best = pick(scores.values())
      firsts.add(frozenset(name for name, value in scores.items() if value == best))
    common = frozenset.intersection(*firsts)
    lines.append(f'- {title}: ' + (f'`{", ".join(sorted(common))}` first in every seed'
                                   if common else 'no method first in every seed'))
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--faces', choices=('synthetic', 'real'), required=True)
  parser.add_argument('--size', choices=('tiny', 'default'), default='default')
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('demo-seeds'))
  parser.add_argument('--markdown', type=pathlib.Path, default=None)
  args = parser.parse_args(argv)
  summaries = run_seeds(args.faces, args.size, args.seeds, args.out)
  table = seed_table(summaries)
  print(table)
  (args.out / f'{args.faces}-{args.size}' / 'seeds.json').write_text(
      json.dumps(summaries, indent=1))
  if args.markdown:
    args.markdown.write_text(table + '\n')


if __name__ == '__main__':
  main()
