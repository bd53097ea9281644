"""gestaltxai convert-weights: a state-dict pickle -> .npz, checked against the ResNet-50."""

from __future__ import annotations

import pathlib


def run(args) -> None:
  from gestaltxai.files import atomic_write, save_npz
  from gestaltxai.models.port import port_vggface2, read_state_dict
  out = pathlib.Path(args.output)
  if out.suffix != '.npz':
    raise ValueError(f'{out}: the output must be a .npz file')
  if out.exists() and not args.overwrite:
    raise FileExistsError(f'{out} exists; pass --overwrite to replace it')
  weights = read_state_dict(args.input)
  port_vggface2(weights)  # refuse a file the model cannot use before writing it
  out.parent.mkdir(parents=True, exist_ok=True)
  atomic_write(out, lambda path: save_npz(path, weights))
  head = weights['fc.weight'].shape[0] if 'fc.weight' in weights else '?'
  print(f'{out}: {len(weights)} arrays ({head}-way head); load it with '
        'gestaltxai.models.load_vggface2 or --weights')


def add_parser(commands) -> None:
  convert = commands.add_parser(
      'convert-weights', help='a VGGFace2 weights pickle -> .npz (read without unpickling)')
  convert.add_argument('input', type=pathlib.Path, help='resnet50_ft_weight.pkl')
  convert.add_argument('output', type=pathlib.Path, help='OUT.npz')
  convert.add_argument('--overwrite', action='store_true', help='replace OUT.npz')
  convert.set_defaults(run=run)
