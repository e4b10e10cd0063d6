"""The one CLI convention: every `ptj` command exits 2 with one stderr line on a bad flag, 1 on
other failures, 130 on Ctrl-C, and prints the traceback only when asked (`--log_level=debug`,
`PTJ_DEBUG=1`)."""
import pytest

from prompt_transfer_jax import cli as ptj
from prompt_transfer_jax import command

# Every leaf command.
LEAF_COMMANDS = [
    ['train'], ['eval'], ['export'],
    ['tasks', 'list'], ['tasks', 'show'], ['tasks', 'preview'],
    ['transfer', 'zero-shot'], ['transfer', 'speedup'],
    ['analyze', 'indicators'], ['analyze', 'similarity'], ['analyze', 'report'],
    ['analyze', 'activations'],
    ['bank', 'add'], ['bank', 'list'], ['bank', 'recommend'], ['data', 'prepare'],
    ['project', 'train'], ['project', 'apply'], ['project', 'zero-shot'], ['plan'], ['study'],
    ['demo'],
]


def _prog(words):
  return ' '.join(['ptj'] + words)


@pytest.mark.parametrize('words', LEAF_COMMANDS, ids=_prog)
def test_bad_flag_exits_2_with_one_line(words, capsys):
  assert ptj.main(words + ['--no_such_flag=1']) == 2
  captured = capsys.readouterr()
  assert captured.out == ''
  assert captured.err.count('\n') == 1, captured.err
  assert captured.err.startswith(f'{_prog(words)}: error: ') and 'no_such_flag' in captured.err


@pytest.mark.parametrize('words', [w for w in LEAF_COMMANDS if w[0] in ('train', 'export')] +
                         [['transfer', 'speedup'], ['bank', 'list']], ids=_prog)
def test_old_dashed_spelling_is_a_usage_error(words, capsys):
  """One spelling: snake_case flags (`--batch_size`); the dashed argparse forms are gone."""
  assert ptj.main(words + ['--batch-size=3']) == 2
  assert 'batch-size' in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['nope'], "unknown command 'nope'"),
    (['bank'], 'missing command'),
    (['transfer', 'zero_shot'], "unknown command 'zero_shot'"),
    (['bank', 'list'], 'Flag --bank must have a value'),
    (['tasks', 'show'], 'missing argument NAME'),
    (['tasks', 'list', 'extra'], 'unexpected arguments: extra'),
    (['train', '--gin.TRAIN_STEPS'], 'malformed gin flag'),
])
def test_usage_errors(argv, message, capsys):
  assert ptj.main(argv) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and message in err, err


def test_bad_input_exits_2_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
  monkeypatch.delenv('PTJ_DEBUG', raising=False)
  argv = ['transfer', 'speedup', f'--baseline={tmp_path / "none"}', f'--transfer={tmp_path}']
  assert ptj.main(argv) == 2
  err = capsys.readouterr().err
  assert err == f'ptj transfer speedup: error: run record not found: {tmp_path / "none"}\n'
  assert ptj.main(argv + ['--log_level=debug']) == 2
  err = capsys.readouterr().err
  assert err.startswith('Traceback (most recent call last):') and 'load_history' in err
  assert err.splitlines()[-1].startswith('ptj transfer speedup: error: run record not found')
  monkeypatch.setenv('PTJ_DEBUG', '1')
  assert ptj.main(argv) == 2
  assert 'Traceback (most recent call last):' in capsys.readouterr().err


def _run(body, argv=()):
  return command.run('ptj x', list(argv), 'doc', command.no_flags, body)


def test_exit_codes_of_the_runner(capsys, monkeypatch):
  monkeypatch.delenv('PTJ_DEBUG', raising=False)

  def raise_(error):
    def body(fv):
      raise error
    return body

  assert _run(lambda fv: None) == 0
  assert _run(lambda fv: 3) == 3
  assert _run(raise_(command.UsageError('bad'))) == 2
  assert _run(raise_(FileNotFoundError('no file'))) == 2
  assert _run(raise_(KeyError('unknown name x'))) == 2
  assert _run(raise_(RuntimeError('device\n  lost'))) == 1
  assert _run(raise_(KeyboardInterrupt())) == 130
  assert capsys.readouterr().err.splitlines() == [
      'ptj x: error: bad', 'ptj x: error: no file', 'ptj x: error: unknown name x',
      'ptj x: error: device lost', 'ptj x: interrupted']
  assert _run(raise_(RuntimeError('deep')), ['--log_level=debug']) == 1
  assert 'Traceback' in capsys.readouterr().err


def test_help_lists_the_flags(capsys):
  assert ptj.main(['bank', 'add', '--help']) == 0
  out = capsys.readouterr().out
  assert out.startswith('usage: ptj bank add [flags]')
  assert '--activations_entry:' in out and '--log_level:' in out
  assert ptj.main(['tasks', 'help']) == 0
  assert 'preview' in capsys.readouterr().out
