"""gestaltxai metrics: the explanation metrics, what they need, options, direction and cost."""

from __future__ import annotations

from gestaltxai.cli import listing

_HEADER = ('metric', 'needs', 'better', 'cost/img (fwd, explanations)', 'options (defaults)')


def rows() -> list[tuple[str, ...]]:
  """One row per registered metric, as ``_HEADER`` names them."""
  from gestaltxai.metrics import METRICS  # pylint: disable=import-outside-toplevel
  return [(m.name, ', '.join(m.needs), m.direction, '%d, %d' % m.passes(),
           ', '.join(f'{k}={v!r}' for k, v in m.options.items()) or '-')
          for m in METRICS.values()]


def markdown() -> str:
  return listing.markdown(_HEADER, rows(), code_columns=(0, 4))


def run(args) -> None:
  if args.markdown:
    print(markdown())
    return
  listing.print_table(
      _HEADER, rows(),
      'needs (besides images and targets): relevance (B, H, W) maps, coefficients (B, R) '
      'per region,\nregions (B, H, W) labels, mask (B, H, W) and region_mask (B, R) the '
      'ground truth, method the\nsaliency method run again; cost: forward passes and '
      're-explanations per image beyond\nthe map judged (regions counted at 3, model '
      'stages at 6). Higher or lower: which scores are better.')


def add_parser(commands) -> None:
  parser = commands.add_parser('metrics', help='list the explanation metrics, options and cost')
  parser.add_argument('--markdown', action='store_true', help='print a Markdown table')
  parser.set_defaults(run=run)
