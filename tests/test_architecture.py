"""The package's structure, drawn from its source: who imports whom, how long modules are, and
that each name of a file passed between stages is spelled by one module only."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'gestaltxai'
#: A module longer than this says why in its docstring's first sentence ("longer than").
MAX_LINES = 400
LONG_REASON = 'longer than'
#: Top-level packages of the repository the library must never import.
OUTSIDE = ('experiments', 'benchmarks', 'tests')
#: Names of the files between stages and of their keys, each spelled by exactly one module:
#: {name as written in the source: its owner}. Two files share the name 'summary.json' (the
#: folds' summary in RUNS and the demo's in its folder, both in the contract): each has its
#: owner.
INTER_STAGE_NAMES = {
    'metrics.json': 'gestaltxai.artifacts.run_folder',
    'summary.json': ('gestaltxai.artifacts.run_folder', 'gestaltxai.demo'),
    'metadata.json': 'gestaltxai.data.schema',
    '.maps.npz': 'gestaltxai.artifacts.coefficient_table',
    'class_mean/': 'gestaltxai.artifacts.coefficient_table',
    'examples/': 'gestaltxai.artifacts.coefficient_table',
    'mean_image': 'gestaltxai.artifacts.coefficient_table',
    '_xai': 'gestaltxai.artifacts.coefficient_table',
    '_xai_norm': 'gestaltxai.artifacts.coefficient_table',
    'class_sums/': 'gestaltxai.extract.rows',
    'rq1.csv': 'gestaltxai.stats.results',
    'rq2.csv': 'gestaltxai.stats.results',
    'skipped.csv': 'gestaltxai.stats.results',
    'manifest.json': 'gestaltxai.extract.store',
}


def _modules() -> dict[str, pathlib.Path]:
  found = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    found[name] = path
  return found


MODULES = _modules()


def _imports(path: pathlib.Path, top_level_only: bool) -> set[str]:
  """Modules ``path`` imports (``from a import b`` counts as a.b when that is a module)."""
  tree = ast.parse(path.read_text(encoding='utf-8'))
  nodes = tree.body if top_level_only else list(ast.walk(tree))
  found = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for alias in node.names:
        sub = f'{node.module}.{alias.name}'
        found.add(sub if sub in MODULES else node.module)
  return found


def _docstring_nodes(tree: ast.AST) -> set[int]:
  ids = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        ids.add(id(body[0].value))
  return ids


def _string_constants(path: pathlib.Path) -> list[str]:
  """Every string literal in the code, f-string parts included, docstrings left out."""
  tree = ast.parse(path.read_text(encoding='utf-8'))
  docstrings = _docstring_nodes(tree)
  return [node.value for node in ast.walk(tree)
          if isinstance(node, ast.Constant) and isinstance(node.value, str)
          and id(node) not in docstrings]


def test_the_library_imports_nothing_outside_it():
  offenders = {name: sorted(i for i in _imports(path, top_level_only=False)
                            if i.split('.')[0] in OUTSIDE)
               for name, path in MODULES.items()}
  assert not {n: i for n, i in offenders.items() if i}


def test_no_import_cycle_among_modules():
  graph = {name: {i for i in _imports(path, top_level_only=True) if i in MODULES and i != name}
           for name, path in MODULES.items()}
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  cycle: list[str] = []

  def visit(name: str, path: list[str]) -> bool:
    state[name] = 1
    for nxt in sorted(graph[name]):
      if state.get(nxt) == 1:
        cycle.extend(path[path.index(nxt):] + [name, nxt] if nxt in path else [name, nxt])
        return True
      if nxt not in state and visit(nxt, path + [name]):
        return True
    state[name] = 2
    return False

  for module in sorted(graph):
    if module not in state and visit(module, []):
      break
  assert not cycle, ' -> '.join(cycle)


def test_long_modules_say_why_in_their_first_sentence():
  long_modules = []
  for name, path in MODULES.items():
    lines = path.read_text(encoding='utf-8').splitlines()
    if len(lines) > MAX_LINES:
      docstring = ast.get_docstring(ast.parse('\n'.join(lines))) or ''
      first = docstring.split('\n\n')[0]
      if LONG_REASON not in first:
        long_modules.append(f'{name}: {len(lines)} lines')
  assert not long_modules


@pytest.mark.parametrize('name', sorted(INTER_STAGE_NAMES))
def test_each_inter_stage_name_is_spelled_by_its_owner_only(name):
  spelled = sorted(module for module, path in MODULES.items()
                   if any(name == text or (name.endswith(('/', '-')) and text.startswith(name))
                          for text in _string_constants(path)))
  owners = INTER_STAGE_NAMES[name]
  assert spelled == sorted(owners if isinstance(owners, tuple) else [owners])


def test_the_checks_see_a_violation(tmp_path):
  """The readers above on a module made to break the rules: an upward import inside a
  function, a file name in an f-string, and the same name in a docstring (not counted)."""
  module = tmp_path / 'bad.py'
  module.write_text('"""Reads metrics.json."""\n\ndef f(k):\n  import benchmarks.records\n'
                    "  return f'fold-{k}/metrics.json'\n")
  assert 'benchmarks.records' in _imports(module, top_level_only=False)
  assert 'benchmarks.records' not in _imports(module, top_level_only=True)
  assert _string_constants(module) == ['fold-', '/metrics.json']
