"""The one-way import rule (README, ARCHITECTURE): a module imports only its own layer or lower
ones, and no modules import each other in a cycle. Every import counts, including those inside
functions (a lazy import is still a dependency)."""
import ast
import pathlib

import pytest

PACKAGE = 'prompt_transfer_jax'
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE

# Bottom to top. The bottom layer is the package's own top-level modules; `cli` (the `ptj`
# dispatcher, which loads every command by name) sits above everything.
LAYERS = ['', 'tasks', 'models', 'checkpoints', 'trainer', 'transfer', 'analysis', 'study', 'cli']
BOTTOM = {'__init__', 'files', 'command', 'config', 'partitioning'}
# Known violations, each to be removed by moving the module (the test below fails once one is
# gone, so the list only shrinks).
KNOWN_UPWARD: set = set()


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in ROOT.rglob('*.py'):
    parts = path.relative_to(ROOT).with_suffix('').parts
    if parts[-1] == '__init__' and len(parts) > 1:
      parts = parts[:-1]
    out['.'.join((PACKAGE,) + parts)] = path
  return out


MODULES = _modules()


def layer(module: str) -> int:
  """Index in LAYERS of a module of the package."""
  parts = module.split('.')[1:]
  if not parts or (len(parts) == 1 and parts[0] in BOTTOM):
    return 0
  if parts[0] not in LAYERS:
    raise AssertionError(f'{module}: no layer for {parts[0]!r}; add it to LAYERS (and the README)')
  return LAYERS.index(parts[0])


def imports(module: str) -> set[str]:
  """The package modules `module` imports (`from pkg import sub` counts as `pkg.sub`)."""
  tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
  found = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, f'{module}: use absolute imports'
      base = node.module or ''
      names = [f'{base}.{a.name}' if f'{base}.{a.name}' in MODULES else base for a in node.names]
    for name in names:
      while name and name not in MODULES:       # `import pkg.sub.obj` -> the module part
        name = name.rpartition('.')[0]
      if name.startswith(PACKAGE) and name != module:
        found.add(name)
  return found


GRAPH = {m: imports(m) for m in sorted(MODULES)}


def test_every_module_has_a_layer():
  for module in MODULES:
    layer(module)


def _upward() -> set[tuple[str, str]]:
  return {(m, d) for m, deps in GRAPH.items() for d in deps if layer(d) > layer(m)}


def test_no_upward_import():
  upward = [f'{m} ({LAYERS[layer(m)] or "bottom"}) imports {d}' for m, d in sorted(_upward())
            if (m, LAYERS[layer(d)]) not in KNOWN_UPWARD]
  assert not upward, '\n'.join(upward)


def test_known_violations_are_still_real():
  """Remove an entry of KNOWN_UPWARD once its module has moved."""
  real = {(m, LAYERS[layer(d)]) for m, d in _upward()}
  assert KNOWN_UPWARD <= real, KNOWN_UPWARD - real


def _cycle(graph) -> list[str]:
  """One import cycle of `graph`, or []."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for dep in sorted(graph.get(node, ())):
      if dep in graph and state.get(dep) == 'open':
        return stack[stack.index(dep):] + [dep]
      if dep in graph and dep not in state:
        found = visit(dep)
        if found:
          return found
    state[node] = 'done'
    stack.pop()
    return []

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return []


def test_no_import_cycle():
  cycle = _cycle(GRAPH)
  assert not cycle, ' -> '.join(cycle)


def test_the_checks_would_fail():
  """The rule checker itself: an upward edge and a cycle are found."""
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set()}) == []
  assert layer(f'{PACKAGE}.trainer.train') > layer(f'{PACKAGE}.models.t5') > layer(f'{PACKAGE}.config')
  assert f'{PACKAGE}.checkpoints.store' in GRAPH[f'{PACKAGE}.checkpoints.orbax']


@pytest.mark.parametrize('module', [f'{PACKAGE}.{m}' for m in sorted(BOTTOM - {'__init__'})])
def test_bottom_layer_imports_no_other_layer(module):
  assert all(layer(d) == 0 for d in GRAPH[module]), GRAPH[module]
