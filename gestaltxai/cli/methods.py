"""gestaltxai methods: the saliency methods, their options and cost."""

from __future__ import annotations


def run(args) -> None:
  del args
  from gestaltxai.saliency import METHODS
  print(f'{"method":32s} {"space":6s} {"passes/image at 224 (fwd, bwd)":32s} reference names')
  for name, method in METHODS.items():
    cost = method.cost({}, 224, 224)
    print(f'{name:32s} {method.space:6s} {str(cost):32s} {", ".join(method.reference_names)}')


def add_parser(commands) -> None:
  methods = commands.add_parser('methods', help='list the saliency methods and their cost')
  methods.set_defaults(run=run)
