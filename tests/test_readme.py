"""The README's commands run, so the README cannot drift from the code (issue 14, item 9).

The README is parsed at test time; nothing of its text is copied here. The rule:
- every `ptj ...` command line of a ```bash block: its command must exist and every `--flag` it
  uses must be one of that command's flags (`--gin.NAME=...` needs `--gin_bindings`); a line that
  asks for `--help` is run as written;
- every command the README names (`ptj CMD [SUB]` in code spans and the command table) answers
  `--help` with exit 0;
- the commands that need only local inputs run for real: `ptj tasks list`, `ptj tasks show` on a
  task the README names, `ptj transfer speedup` on two run records this test writes;
- the ```python block (the Python API) runs on the random-weight presets the README mentions,
  with small made-up inputs for the names it leaves to the reader.
"""
import ast
import json
import os
import re
import shlex

import numpy as np
import pytest

from prompt_transfer_jax import cli

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')
# (command, sub-command) -> argv of a real run on local inputs made by the test (tmp_path).
LOCAL_RUNS = {
    ('tasks', 'list'): lambda tmp_path, task: ['tasks', 'list'],
    ('tasks', 'show'): lambda tmp_path, task: ['tasks', 'show', task],
    ('transfer', 'speedup'): lambda tmp_path, task: _speedup_argv(tmp_path),
}


def _read():
  with open(README) as f:
    return f.read()


def _blocks(text: str, language: str) -> list[str]:
  return re.findall(rf'^```{language}[ \t]*\n(.*?)^```', text, flags=re.M | re.S)


def _bash_commands(text: str) -> list[list[str]]:
  """argv (after `ptj`) of every `ptj` command line in the bash blocks (continuations joined,
  comments dropped)."""
  commands = []
  for block in _blocks(text, 'bash'):
    for line in re.sub(r'\\\n', ' ', block).splitlines():
      words = shlex.split(line, comments=True)
      if words and words[0] == 'ptj':
        commands.append(words[1:])
  return commands


def _named_commands(text: str) -> set[tuple]:
  """(command,) or (command, sub) of every `ptj CMD [SUB|SUB2...]` the README names."""
  groups = {'transfer', 'tasks', 'analyze', 'bank', 'data'}
  named = set()
  spans = re.findall(r'`ptj ([^`]+)`', text) + [' '.join(c) for c in _bash_commands(text)]
  for span in spans:       # `tasks list\|show NAME\|preview NAME`: alternatives after the group
    pieces = [p.split() for p in span.replace('\\|', '|').split('|')]
    words = pieces[0]
    if not words or words[0] not in cli.COMMANDS:
      continue
    if words[0] in groups and len(words) > 1 and not words[1].startswith('-'):
      for sub in [words[1]] + [p[0] for p in pieces[1:] if p]:
        if re.fullmatch(r'[a-z][a-z-]*', sub):
          named.add((words[0], sub))
    else:
      named.add((words[0],))
  return named


def _command_of(argv: list[str]) -> tuple:
  if len(argv) > 1 and not argv[1].startswith('-') and argv[0] != 'train':
    return tuple(argv[:2])
  return tuple(argv[:1])


def _ptj(argv, capsys):
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def _help_flags(help_text: str) -> set[str]:
  """The flags an absl `--help` text lists (`  --name: ...`)."""
  return set(re.findall(r'^\s+--([a-z_0-9]+)', help_text, flags=re.M))


def _speedup_argv(tmp_path) -> list[str]:
  for name, scores in (('baseline', [50, 60, 70, 80]), ('transfer', [70, 80, 80, 80])):
    run = tmp_path / name
    run.mkdir()
    history = [{'step': 100 * i, 'score': s, 'elapsed_s': 10.0 * i} for i, s in enumerate(scores)]
    (run / 'metrics.json').write_text(json.dumps({'history': history}))
  return ['transfer', 'speedup', f'--baseline={tmp_path / "baseline"}',
          f'--transfer={tmp_path / "transfer"}', f'--out={tmp_path / "speedup.json"}']


TEXT = _read()


def test_the_readme_has_what_this_test_reads():
  assert _bash_commands(TEXT) and _blocks(TEXT, 'python') and _named_commands(TEXT)


@pytest.mark.parametrize('argv', _bash_commands(TEXT), ids=lambda a: ' '.join(a)[:60])
def test_bash_command_lines_use_existing_commands_and_flags(argv, capsys):
  command = _command_of(argv)
  code, out, err = _ptj(list(command) + ['--help'], capsys)
  assert code == 0 and out.startswith(f'usage: ptj {" ".join(command)}'), (argv, out, err)
  known = _help_flags(out) | {'help'}
  for arg in argv[len(command):]:
    if not arg.startswith('--'):
      continue
    name = arg[2:].split('=', 1)[0]
    if name.startswith('gin.'):
      assert 'gin_bindings' in known, f'ptj {" ".join(argv)}: {command} takes no --gin.NAME'
    else:
      assert name in known, f'README: ptj {" ".join(command)} has no flag --{name}'
  if '--help' in argv:
    code, out, _ = _ptj(argv, capsys)
    assert code == 0 and out.startswith('usage: ')


@pytest.mark.parametrize('command', sorted(_named_commands(TEXT)), ids=' '.join)
def test_every_named_command_answers_help(command, capsys):
  code, out, err = _ptj(list(command) + ['--help'], capsys)
  assert code == 0 and out.startswith('usage: ptj ' + command[0]), (out, err)


@pytest.mark.parametrize('command', sorted(LOCAL_RUNS), ids=' '.join)
def test_commands_on_local_inputs_run(command, tmp_path, capsys):
  if command not in _named_commands(TEXT):
    pytest.skip(f'the README no longer names ptj {" ".join(command)}')
  tasks = re.findall(r"MIXTURE_OR_TASK_NAME=\"'([a-z0-9_]+)'\"", TEXT)
  code, out, err = _ptj(LOCAL_RUNS[command](tmp_path, tasks[0] if tasks else 'synth_nli_a'),
                        capsys)
  assert code == 0 and out.strip(), err
  if command == ('tasks', 'show'):
    assert out.startswith('name') and tasks[0] in out
  if command == ('transfer', 'speedup'):
    assert json.loads((tmp_path / 'speedup.json').read_text())


def _api_snippet() -> ast.Module:
  """The Python block with every `load_*('path/to/...')` call pointed at a random-weight preset:
  the one the README names for `load_t5` (`load_t5('t5_1_1_tiny')`), `roberta_tiny` as wide as
  that T5 for `load_roberta` (the README feeds the T5 prompt to RoBERTa)."""
  (code,) = _blocks(TEXT, 'python')
  presets = re.findall(r"load_t5\('([a-z0-9_]+)'\)", code)
  assert presets, 'the Python API block names no T5 preset'
  tree = ast.parse(code)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args and
        isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith('path/')):
      if node.func.attr == 'load_t5':
        node.args, node.keywords = [ast.Constant(presets[0])], []
      elif node.func.attr == 'load_roberta':
        node.args = [ast.Constant('roberta_tiny')]
        node.keywords = [ast.keyword('hidden_size', ast.parse('config.emb_dim').body[0].value),
                         ast.keyword('intermediate_size', ast.Constant(8))]
  return ast.fix_missing_locations(tree)


def test_the_python_api_snippet_runs():
  tree = _api_snippet()
  rng = np.random.default_rng(0)
  tokens = lambda n: rng.integers(3, 30, size=(2, n)).astype(np.int32)
  # The inputs the README leaves to the reader.
  inputs = {'encoder_input_tokens': tokens(5), 'decoder_input_tokens': tokens(3),
            'enc': tokens(5), 'dec': tokens(3), 'label_targets': tokens(2)[:, :2]}
  inputs['batch'] = {'encoder_input_tokens': inputs['encoder_input_tokens']}
  namespace = {}
  for statement in tree.body:
    undefined = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and
                 isinstance(n.ctx, ast.Load) and n.id not in namespace and
                 n.id not in dir(__builtins__)}
    namespace.update({name: inputs[name] for name in undefined if name in inputs})
    if 'input_tokens' in undefined:      # RoBERTa: ids of its own vocabulary
      namespace['input_tokens'] = np.concatenate(
          [tokens(4), np.full((2, 1), namespace['config'].mask_id, np.int32)], axis=1)
    exec(compile(ast.Module([statement], []), README, 'exec'), namespace)  # noqa: S102
  arrays = [v for v in namespace.values() if hasattr(v, 'shape') and hasattr(v, 'dtype')
            and np.issubdtype(np.asarray(v).dtype, np.floating)]
  assert arrays and all(np.isfinite(np.asarray(a)).all() for a in arrays)
