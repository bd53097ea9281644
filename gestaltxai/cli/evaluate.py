"""gestaltxai evaluate: held-out scores of every trained fold, their mean and std, confusion
figures (the held-out split is the dataset's: ``val`` on NIH-Faces, ``test`` on our builders)."""

from __future__ import annotations

import pathlib


def run(args) -> None:
  from gestaltxai.train.loop import evaluate_runs
  summary, table = evaluate_runs(args.runs)
  print(table)
  from gestaltxai import provenance
  note = provenance.fold_count_note(args.runs)
  if note:
    print(note)
  from gestaltxai.artifacts import run_folder
  print(', '.join(str(args.runs / name) for name in run_folder.SUMMARIES))
  del summary


def add_parser(commands) -> None:
  evaluate = commands.add_parser('evaluate', help='summarise the held-out scores of trained folds')
  evaluate.add_argument('--runs', type=pathlib.Path, required=True,
                        help='the --out folder of `gestaltxai train`')
  evaluate.set_defaults(run=run)
