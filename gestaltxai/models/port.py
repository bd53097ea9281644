"""Port PyTorch VGGFace2 ResNet-50 weights into Flax variables.

The published ``resnet50_ft_weight.pkl`` is a latin1 pickle of
``{state-dict name: numpy array}``: OIHW convolution kernels, BatchNorm
``weight``/``bias``/``running_mean``/``running_var`` and an 8631-way ``fc``.
A fine-tuned model saved as a state dict of numpy arrays (same names, its
own head size) ports the same way.
"""

from __future__ import annotations

import collections
import importlib
import os
import pickle
import zipfile
from typing import Any, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gestaltxai.models.resnet import BOTTLENECK_EXPANSION, RESNET50_STAGE_SIZES, Dense, ResNet50

# Keys PyTorch writes that carry no value for inference.
_IGNORED_SUFFIXES = ('.num_batches_tracked',)
# DataParallel and torch.compile prefix every key.
_WRAPPER_PREFIXES = ('module.', '_orig_mod.')
_FEATURES = 2048
_PORT_INPUT_SIZE = 224
_STEM_WIDTH = 64
# Random BatchNorm statistics far enough from the identity that a port which
# drops or swaps one of them changes the output.
_RANDOM_BN_SCALE = (0.5, 1.5)
_RANDOM_BN_BIAS_STD = 0.1
_RANDOM_BN_MEAN_STD = 0.2
_RANDOM_BN_VAR = (0.5, 2.0)
_RANDOM_BN_TRACKED_BATCHES = 100


def _torch_name(collection: str, path: tuple[str, ...]) -> tuple[str, bool]:
  """Maps a Flax variable path to its PyTorch state-dict name.

  Returns the name and whether the array is a conv kernel (OIHW <-> HWIO).
  """
  *modules, leaf = path
  if modules == ['fc']:
    return f'fc.{"weight" if leaf == "kernel" else "bias"}', False
  *blocks, conv = modules
  prefix = ''.join(f'{b.replace("_", ".")}.' for b in blocks)
  if conv == 'downsample':
    conv_name, bn_name = f'{prefix}downsample.0', f'{prefix}downsample.1'
  else:
    conv_name, bn_name = prefix + conv, prefix + conv.replace('conv', 'bn')
  if leaf == 'kernel':
    return f'{conv_name}.weight', True
  bn_leaf = {('params', 'scale'): 'weight', ('params', 'bias'): 'bias',
             ('batch_stats', 'mean'): 'running_mean',
             ('batch_stats', 'var'): 'running_var'}[(collection, leaf)]
  return f'{bn_name}.{bn_leaf}', False


def _strip_wrappers(name: str) -> str:
  for prefix in _WRAPPER_PREFIXES:
    if name.startswith(prefix):
      name = name[len(prefix):]
  return name


def port_vggface2(weights: Mapping[str, Any], num_classes: Optional[int] = None,
                  rng: Optional[jax.Array] = None) -> dict:
  """PyTorch state dict of the VGGFace2 ResNet-50 -> Flax variables.

  Args:
    weights: {PyTorch name: array}; numpy arrays, or anything
      ``np.asarray`` takes (CPU torch tensors too).
    num_classes: head size of the model to build. ``None`` or the size of
      ``fc.weight`` ports the head; any other size initialises a new head
      from ``rng``, as fine-tuning on a new label set does.
    rng: key for the new head (default ``PRNGKey(0)``).

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` for ``ResNet50(num_classes)``,
    float32.

  Raises:
    KeyError: a key the model does not have, or one it needs that is
      missing; the message names the key.
    ValueError: a shape that does not fit, naming the key and both shapes.
  """
  weights = {_strip_wrappers(k): v for k, v in weights.items()
             if not k.endswith(_IGNORED_SUFFIXES)}
  if 'fc.weight' not in weights:
    raise KeyError("missing key 'fc.weight': not a VGGFace2 ResNet-50 state dict")
  head = np.shape(weights['fc.weight'])[0]
  num_classes = head if num_classes is None else num_classes
  new_head = num_classes != head

  model = ResNet50(num_classes)
  shapes = jax.eval_shape(
      model.init, jax.random.PRNGKey(0),
      jnp.zeros((1, _PORT_INPUT_SIZE, _PORT_INPUT_SIZE, 3), jnp.float32))

  ported, used = {}, set()
  for collection in ('params', 'batch_stats'):  # not 'perturbations': no weights
    for path, spec in traverse_util.flatten_dict(shapes[collection]).items():
      name, is_kernel = _torch_name(collection, path)
      if new_head and name.startswith('fc.'):
        used.add(name)
        continue
      if name not in weights:
        raise KeyError(f'missing key {name!r} (Flax {collection}/{"/".join(path)}, '
                       f'expected shape {_torch_shape(spec.shape, is_kernel, name)})')
      value = np.asarray(weights[name], dtype=np.float32)
      if is_kernel and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
      elif name == 'fc.weight' and value.ndim == 2:
        value = value.T  # (out, in) -> (in, out)
      if value.shape != spec.shape:
        raise ValueError(
            f'key {name!r}: checkpoint shape {np.shape(weights[name])}, model expects '
            f'{_torch_shape(spec.shape, is_kernel, name)}')
      ported[(collection, *path)] = jnp.asarray(value)
      used.add(name)

  unknown = sorted(set(weights) - used)
  if unknown:
    raise KeyError(f'unexpected key {unknown[0]!r} in state dict '
                   f'({len(unknown)} unexpected in all: {unknown[:5]})')

  variables = traverse_util.unflatten_dict(ported)
  if new_head:
    rng = jax.random.PRNGKey(0) if rng is None else rng
    fc = Dense(num_classes).init(rng, jnp.zeros((1, _FEATURES), jnp.float32))
    variables['params']['fc'] = fc['params']
  return variables


def _torch_shape(flax_shape, is_kernel, name):
  if is_kernel and len(flax_shape) == 4:
    h, w, i, o = flax_shape
    return (o, i, h, w)
  if name == 'fc.weight':
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)


class _Refused(pickle.UnpicklingError):
  """The pickle asks for something a state dict never holds."""


class _StateDictUnpickler(pickle.Unpickler):
  """Admits only what a pickled state dict of numpy arrays needs.

  ``pickle.load`` calls whatever a file names (``os.system``, ``eval``):
  weight files come from the web, so every global the file asks for must be
  in :data:`_STATE_DICT_GLOBALS`, and anything else stops the load before it
  runs.
  """

  def __init__(self, file, name: str):
    super().__init__(file, encoding='latin1')  # Python 2 pickles (the published weights)
    self._name = name

  def find_class(self, module, name):
    found = _STATE_DICT_GLOBALS.get((module, name))
    if found is None:
      raise _Refused(
          f'{self._name}: refused to load: the pickle asks for {module}.{name}, which a state '
          'dict of numpy arrays never needs (only dicts, arrays and dtypes are admitted)')
    return found


def _latin1_bytes(text: str, encoding: str) -> bytes:
  """``_codecs.encode`` as protocol-2 pickles use it for bytes, and for nothing else."""
  if encoding != 'latin1' or not isinstance(text, str):
    raise _Refused(f'refused _codecs.encode with encoding {encoding!r}')
  return text.encode('latin1')


def _numpy_globals() -> dict:
  """numpy's pickle helpers under their NumPy 1 (``numpy.core``) and 2 (``numpy._core``) names."""
  found = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype}
  core = importlib.import_module('numpy._core' if hasattr(np, '_core') else 'numpy.core')
  for package in ('numpy.core', 'numpy._core'):
    found[(f'{package}.multiarray', '_reconstruct')] = core.multiarray._reconstruct
    found[(f'{package}.multiarray', 'scalar')] = core.multiarray.scalar
    found[(f'{package}.numeric', '_frombuffer')] = core.numeric._frombuffer
  return found


#: (module, name) -> the object a state-dict pickle may load.
_STATE_DICT_GLOBALS = {('collections', 'OrderedDict'): collections.OrderedDict,
                       ('_codecs', 'encode'): _latin1_bytes, **_numpy_globals()}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{name: numpy array} from a weights file: a state-dict pickle or ``.npz``.

  Pickles are read with a restricted unpickler: dicts, numpy arrays, dtypes
  and numpy scalars load; any other object the file asks for is refused
  before it is created, so a malicious file runs nothing.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: an unreadable or refused file, or one that is not a
      mapping of names to numeric arrays; the message names the file.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f'no weights file at {path}')
  if path.endswith('.npz'):
    try:
      with np.load(path) as archive:  # allow_pickle=False: no objects
        weights = dict(archive)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
      raise ValueError(f'{path}: not a readable .npz of arrays ({err})') from err
  else:
    with open(path, 'rb') as f:
      try:
        weights = _StateDictUnpickler(f, path).load()
      except _Refused as err:
        message = str(err)
        raise ValueError(message if message.startswith(path) else f'{path}: {message}') from err
      except Exception as err:  # a bad pickle raises many types
        raise ValueError(f'{path}: not a readable latin1 pickle ({type(err).__name__}: '
                         f'{err})') from err
  if not isinstance(weights, Mapping):
    raise ValueError(f'{path}: expected a dict of arrays, got {type(weights).__name__}')
  for key, value in weights.items():
    if not isinstance(key, str) or not isinstance(value, (np.ndarray, np.generic)) or not (
        np.issubdtype(np.asarray(value).dtype, np.number)
        or np.asarray(value).dtype == np.bool_):
      raise ValueError(f'{path}: entry {key!r} is a {type(value).__name__}, not a numeric array')
  return {key: np.asarray(value) for key, value in weights.items()}


def load_vggface2(path: str | os.PathLike, num_classes: Optional[int] = None,
                  rng: Optional[jax.Array] = None) -> dict:
  """``port_vggface2`` of a weights file.

  ``path`` is the published ``resnet50_ft_weight.pkl`` (a latin1 pickle, read
  by :func:`read_state_dict`'s restricted unpickler), or a ``.npz`` of a
  state dict (``gestaltxai convert-weights`` writes one; a fine-tuned model).
  """
  return port_vggface2(read_state_dict(path), num_classes, rng)


def random_vggface2_state_dict(seed_or_rng: Union[int, np.random.Generator],
                               num_classes: int) -> dict[str, np.ndarray]:
  """A VGGFace2 ResNet-50 state dict with random weights, as PyTorch names them.

  Stands in for ``resnet50_ft_weight.pkl`` where the published weights are not
  at hand (tests, benchmarks, demos): convolutions drawn as the Caffe model was
  initialised (N(0, 2 / (k * k * out_channels))), BatchNorm with non-trivial
  scale, bias and running statistics, and PyTorch's ``nn.Linear`` head.

  Args:
    seed_or_rng: an int seed or a ``numpy.random.Generator``.
    num_classes: rows of ``fc.weight``.

  Returns:
    {name: float32 array} (``num_batches_tracked`` int64), ready for
    :func:`port_vggface2`.
  """
  rng = np.random.default_rng(seed_or_rng)
  state = {}

  def conv(name, out_channels, in_channels, k):
    std = np.sqrt(2.0 / (k * k * out_channels))
    state[f'{name}.weight'] = rng.normal(0, std, (out_channels, in_channels, k, k)).astype(
        np.float32)

  def batchnorm(name, c):
    state[f'{name}.weight'] = rng.uniform(*_RANDOM_BN_SCALE, c).astype(np.float32)
    state[f'{name}.bias'] = rng.normal(0, _RANDOM_BN_BIAS_STD, c).astype(np.float32)
    state[f'{name}.running_mean'] = rng.normal(0, _RANDOM_BN_MEAN_STD, c).astype(np.float32)
    state[f'{name}.running_var'] = rng.uniform(*_RANDOM_BN_VAR, c).astype(np.float32)
    state[f'{name}.num_batches_tracked'] = np.array(_RANDOM_BN_TRACKED_BATCHES, np.int64)

  conv('conv1', _STEM_WIDTH, 3, 7)
  batchnorm('bn1', _STEM_WIDTH)
  inplanes = _STEM_WIDTH
  for i, size in enumerate(RESNET50_STAGE_SIZES):
    planes = _STEM_WIDTH * 2**i
    for j in range(size):
      block = f'layer{i + 1}.{j}'
      conv(f'{block}.conv1', planes, inplanes, 1)
      batchnorm(f'{block}.bn1', planes)
      conv(f'{block}.conv2', planes, planes, 3)
      batchnorm(f'{block}.bn2', planes)
      conv(f'{block}.conv3', planes * BOTTLENECK_EXPANSION, planes, 1)
      batchnorm(f'{block}.bn3', planes * BOTTLENECK_EXPANSION)
      if j == 0:
        conv(f'{block}.downsample.0', planes * BOTTLENECK_EXPANSION, inplanes, 1)
        batchnorm(f'{block}.downsample.1', planes * BOTTLENECK_EXPANSION)
      inplanes = planes * BOTTLENECK_EXPANSION
  bound = 1 / np.sqrt(inplanes)
  state['fc.weight'] = rng.uniform(-bound, bound, (num_classes, inplanes)).astype(np.float32)
  state['fc.bias'] = rng.uniform(-bound, bound, num_classes).astype(np.float32)
  return state
