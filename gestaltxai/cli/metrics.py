"""gestaltxai metrics: the explanation metrics, what they need, options, direction and cost."""

from __future__ import annotations

_HEADER = ('metric', 'needs', 'better', 'cost/img (fwd, explanations)', 'options (defaults)')


def rows() -> list[tuple[str, ...]]:
  """One row per registered metric, as ``_HEADER`` names them."""
  from gestaltxai.metrics import METRICS  # pylint: disable=import-outside-toplevel
  return [(m.name, ', '.join(m.needs), m.direction, '%d, %d' % m.passes(),
           ', '.join(f'{k}={v!r}' for k, v in m.options.items()) or '-')
          for m in METRICS.values()]


def markdown() -> str:
  lines = ['| ' + ' | '.join(_HEADER) + ' |', '|' + '---|' * len(_HEADER)]
  lines += ['| ' + ' | '.join(f'`{c}`' if i in (0, 4) and c != '-' else c
                              for i, c in enumerate(row)) + ' |' for row in rows()]
  return '\n'.join(lines)


def run(args) -> None:
  if args.markdown:
    print(markdown())
    return
  table = [_HEADER, *rows()]
  widths = [max(len(row[i]) for row in table) for i in range(len(_HEADER) - 1)]
  for row in table:
    print('  '.join(c.ljust(w) for c, w in zip(row, widths)) + '  ' + row[-1])
  print('\nneeds (besides images and targets): relevance (B, H, W) maps, coefficients (B, R) '
        'per region,\nregions (B, H, W) labels, mask (B, H, W) and region_mask (B, R) the '
        'ground truth, method the\nsaliency method run again; cost: forward passes and '
        're-explanations per image beyond\nthe map judged (regions counted at 3, model '
        'stages at 6). Higher or lower: which scores are better.')


def add_parser(commands) -> None:
  parser = commands.add_parser('metrics', help='list the explanation metrics, options and cost')
  parser.add_argument('--markdown', action='store_true', help='print a Markdown table')
  parser.set_defaults(run=run)
