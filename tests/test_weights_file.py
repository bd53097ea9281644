"""Weight files: the restricted unpickler, Python 2 pickles, convert-weights."""

import os
import pickle
import subprocess

import numpy as np
import pytest

from gestaltxai import cli
from gestaltxai.models import load_vggface2
from gestaltxai.models.port import read_state_dict


class _Runs:
  """Unpickling it calls ``function(*args)``: what a malicious weights file does."""

  def __init__(self, function, *args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


@pytest.mark.parametrize('attack', ['os.system', 'builtins.exec', 'subprocess.call'])
def test_malicious_pickle_is_refused_and_creates_nothing(tmp_path, attack):
  marker = tmp_path / 'pwned'
  payload = {
      'os.system': _Runs(os.system, f'touch {marker}'),
      'builtins.exec': _Runs(exec, f'open({str(marker)!r}, "w").close()'),
      'subprocess.call': _Runs(subprocess.call, ['touch', str(marker)]),
  }[attack]
  path = tmp_path / 'resnet50_ft_weight.pkl'
  with open(path, 'wb') as f:
    pickle.dump({'conv1.weight': np.zeros((64, 3, 7, 7), np.float32), 'evil': payload}, f,
                protocol=2)
  function = attack.split('.')[-1]
  with pytest.raises(ValueError, match=rf'{path}: refused to load: .*\.{function}'):
    load_vggface2(path)
  out = tmp_path / 'out.npz'
  assert cli.main(['convert-weights', str(path), str(out)]) == 1
  assert not marker.exists() and not out.exists()


def python2_pickle(name: str, values: np.ndarray) -> bytes:
  """{name: float32 array} as Python 2's pickle (protocol 2) wrote it: numpy.core names, str data.

  Written opcode by opcode (pickletools' names), since Python 3 writes
  bytes and numpy 2's module names.
  """
  def string(b):  # SHORT_BINSTRING: a Python 2 str
    return b'U' + bytes([len(b)]) + b
  data = np.asarray(values, '<f4').tobytes()
  return (b'\x80\x02}' + string(name.encode())                  # PROTO 2, EMPTY_DICT, key
          + b'cnumpy.core.multiarray\n_reconstruct\n'             # GLOBAL
          + b'cnumpy\nndarray\nK\x00\x85' + string(b'b') + b'\x87R'  # (ndarray, (0,), 'b')
          + b'(K\x01K' + bytes([len(values)]) + b'\x85'          # MARK, version 1, shape
          + b'cnumpy\ndtype\n' + string(b'f4') + b'K\x00K\x01\x87R'  # dtype('f4', 0, 1)
          + b'(K\x03' + string(b'<')                            # the dtype's state
          + b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb'
          + b'\x89' + string(data) + b'tbs.')                    # not Fortran, data; BUILD


def test_python2_pickles_and_every_protocol_load(tmp_path):
  values = np.array([1.5, -2.0, 3.25], np.float32)
  (tmp_path / 'py2.pkl').write_bytes(python2_pickle('fc.bias', values))
  got = read_state_dict(tmp_path / 'py2.pkl')
  assert list(got) == ['fc.bias'] and got['fc.bias'].dtype == np.float32
  np.testing.assert_array_equal(got['fc.bias'], values)
  state = {'a': np.arange(6, dtype=np.float64).reshape(2, 3), 'n': np.int64(7)}
  for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
    path = tmp_path / f'p{protocol}.pkl'
    path.write_bytes(pickle.dumps(state, protocol=protocol))
    got = read_state_dict(path)
    np.testing.assert_array_equal(got['a'], state['a'])
    assert got['n'] == 7


def test_files_that_are_no_state_dict_are_refused(tmp_path):
  cases = {
      'list.pkl': ([np.zeros(3)], 'expected a dict of arrays, got list'),
      'objects.pkl': ({'a': np.array([1, 'x'], dtype=object)}, "entry 'a' .* not a numeric"),
  }
  for name, (value, message) in cases.items():
    (tmp_path / name).write_bytes(pickle.dumps(value, protocol=2))
    with pytest.raises(ValueError, match=rf'{name}: {message}'):
      read_state_dict(tmp_path / name)
  (tmp_path / 'torn.pkl').write_bytes(pickle.dumps({'a': np.zeros(99)})[:50])
  with pytest.raises(ValueError, match=r'torn\.pkl: not a readable latin1 pickle'):
    read_state_dict(tmp_path / 'torn.pkl')
  with pytest.raises(FileNotFoundError, match='no weights file'):
    read_state_dict(tmp_path / 'absent.pkl')


def test_convert_weights_writes_an_npz_that_ports_the_same(tmp_path, resnet50_state_dict,
                                                           capsys):
  path = tmp_path / 'resnet50_ft_weight.pkl'
  path.write_bytes(pickle.dumps(resnet50_state_dict, protocol=2))
  out = tmp_path / 'weights.npz'
  assert cli.main(['convert-weights', str(path), str(out)]) == 0
  assert '12-way head' in capsys.readouterr().out
  with np.load(out) as archive:  # allow_pickle=False: no code can run
    assert sorted(archive.files) == sorted(resnet50_state_dict)
    for name, value in resnet50_state_dict.items():
      np.testing.assert_array_equal(archive[name], value)
  before = out.read_bytes()
  assert cli.main(['convert-weights', str(path), str(out)]) == 1
  assert 'exists; pass --overwrite' in capsys.readouterr().err
  assert out.read_bytes() == before
  headless = tmp_path / 'headless.pkl'
  headless.write_bytes(pickle.dumps({'conv1.weight': np.zeros((64, 3, 7, 7))}, protocol=2))
  assert cli.main(['convert-weights', str(headless), str(tmp_path / 'headless.npz')]) == 1
  err = capsys.readouterr().err.strip()  # a KeyError, told as one line without quotes
  assert err == ("gestaltxai convert-weights: missing key 'fc.weight': not a VGGFace2 "
                 'ResNet-50 state dict')
  assert not (tmp_path / 'headless.npz').exists()
