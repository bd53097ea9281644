"""Layers of a Flax module as the user wrote it: the output of a named submodule, read and
replaced (linen through ``nn.intercept_methods``, NNX by swapping the submodule of a merged
copy), so Grad-CAM and layer methods need no ``start=``/``stop=`` protocol."""

from __future__ import annotations

import flax.linen as nn


def _contract_error(message: str):
  from gestaltxai.models.contract import ModelContractError  # pylint: disable=import-outside-toplevel
  return ModelContractError(message)


def needs_input(x, layer):
  if x is None:
    raise _contract_error(f'the head from submodule {layer!r} reruns the model: it needs '
                             'the images (head(variables, activations, layer, x))')
  return x


def _path_of(layer: str) -> tuple[str, ...]:
  """'block1/conv' or 'block1.conv' -> ('block1', 'conv'); the key Flax's
  ``capture_intermediates`` gives the same output ('intermediates/conv1/__call__') works too."""
  path = tuple(p for p in layer.replace('.', '/').split('/') if p)
  if path[:1] == ('intermediates',):
    path = path[1:]
  return path[:-1] if path[-1:] == ('__call__',) else path


def _no_submodule(describe: str, layer: str, seen) -> Exception:
  return _contract_error(
      f'{describe} has no submodule {layer!r} (its submodules: '
      f'{sorted("/".join(p) for p in seen if p)}); name one of them, or give the module '
      '`layers`, `default_layer` and `__call__(x, *, start=..., stop=...)`')


def tapped_linen(module: nn.Module, variables, x, layer: str, replace=None):
  """(logits, the output of submodule ``layer``), the module run as written; with
  ``replace``, that output is replaced by it (what the head sees)."""
  path, seen, found = _path_of(layer), set(), []

  def tap(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name != '__call__':
      return out
    here = tuple(context.module.path)
    seen.add(here)
    if here != path:
      return out
    found.append(out)
    return out if replace is None else replace

  with nn.intercept_methods(tap):
    logits = module.apply(variables, x)
  if not found:
    raise _no_submodule(f'Flax module {type(module).__name__}', layer, seen)
  return logits, found[0]


def tapped_nnx(module, x, layer: str, replace=None):
  """As :func:`tapped_linen` for an NNX module (merged for this trace only, so the
  submodule is swapped for a tap in place)."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  path, found = _path_of(layer), []
  parent = module
  for name in path[:-1]:
    parent = _child(parent, name)
  inner = _child(parent, path[-1]) if path else None
  if not path or inner is None or not callable(inner):
    raise _no_submodule(f'Flax NNX module {type(module).__name__}', layer,
                        [tuple(map(str, p)) for p, _ in nnx.iter_modules(module)])

  def tapped(*args, **kwargs):
    out = inner(*args, **kwargs)
    found.append(out)
    return out if replace is None else replace

  _set_child(parent, path[-1], tapped)
  return module(x), found[0]


def _child(parent, name):
  if name.isdigit() and not hasattr(parent, name):
    try:
      return parent[int(name)]
    except (TypeError, IndexError, KeyError):
      return None
  return getattr(parent, name, None)


def _set_child(parent, name, value):
  if name.isdigit() and not hasattr(parent, name):
    parent[int(name)] = value
  else:
    object.__setattr__(parent, name, value)


