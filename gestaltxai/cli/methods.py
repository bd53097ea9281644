"""gestaltxai methods: the saliency methods, what they need of the model, options and cost."""

from __future__ import annotations

from gestaltxai.cli import listing

#: Image side the printed costs are counted at (the VGGFace2 input).
COST_IMAGE_SIZE = 224
_HEADER = ('method', 'level', 'space', 'passes/img (fwd, bwd)', 'options (defaults)',
           'reference names')


def rows() -> list[tuple[str, ...]]:
  """One row per registered method, lowest level first, as ``_HEADER`` names them."""
  from gestaltxai.saliency import METHODS  # pylint: disable=import-outside-toplevel
  ordered = sorted(METHODS.values(), key=lambda m: m.level)
  return [(m.name, _needs(m), m.space,
           '%d, %d' % m.passes(COST_IMAGE_SIZE, COST_IMAGE_SIZE),
           ', '.join(f'{k}={v!r}' for k, v in m.options.items()) or '-',
           ', '.join(m.reference_names) or '-') for m in ordered]


def _needs(entry) -> str:
  """'1 logits', '2 layers', '3 rules' or '3 layers + rules'."""
  extra = sorted(c.name.lower() for c in entry.needs if c.value > 1)
  return f'{entry.level} {" + ".join(extra) or "logits"}'


def markdown() -> str:
  """The table as Markdown (the README's copy is this output)."""
  return listing.markdown(_HEADER, rows(), code_columns=(0, 4))


def run(args) -> None:
  if args.markdown:
    print(markdown())
    return
  listing.print_table(
      _HEADER, rows(),
      'level: what the model must provide (1 logits, 2 a split at named layers, 3 rule '
      'support);\nlayer=None is the model\'s default layer; every method also takes key= and '
      'dtype=;\n<required> options have no default (region methods: regions=, a (B, H, W) '
      'int label map;\ntheir costs are counted at the face study\'s three players, eye, nose, '
      'mouth).')


def add_parser(commands) -> None:
  methods = commands.add_parser('methods', help='list the saliency methods, options and cost')
  methods.add_argument('--markdown', action='store_true', help='print a Markdown table')
  methods.set_defaults(run=run)
