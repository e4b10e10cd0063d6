"""Misspelled gin macros and non-integer counts are one-line errors with a close-name hint."""
import gin
import pytest

from prompt_transfer_jax.trainer import gin_checks


@gin.configurable
def _fn(train_steps=1, prompt_length=2):
  return train_steps, prompt_length


FILE = """
TRAIN_STEPS = 5
PROMPT_LENGTH = 3
ONLY_FOR_EVAL = 1
_fn.train_steps = %TRAIN_STEPS
_fn.prompt_length = %PROMPT_LENGTH
"""


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _parse(text, bindings=()):
  gin.parse_config_files_and_bindings([], [text, *bindings], finalize_config=False)
  return gin_checks.macro_problems(bindings)


def test_a_clean_config_passes():
  assert _parse(FILE) == []        # ONLY_FOR_EVAL: unused, set in a file, like no used name


def test_misspelled_command_line_macro():
  assert _parse(FILE, ['TRAIN_STEP = 5']) == [
      'gin macro TRAIN_STEP is set but never used (did you mean TRAIN_STEPS?)']
  gin.clear_config()
  assert _parse(FILE, ['NOT_A_THING = 5']) == ['gin macro NOT_A_THING is set but never used']


def test_misspelled_file_macro_and_unknown_reference():
  problems = _parse(FILE.replace('PROMPT_LENGTH = 3', 'PROMPT_LENGHT = 3'))
  assert problems == ['gin macro PROMPT_LENGHT is set but never used (did you mean PROMPT_LENGTH?)',
                      'gin macro PROMPT_LENGTH is used (%PROMPT_LENGTH) but never set '
                      '(did you mean PROMPT_LENGHT?)']
  with pytest.raises(ValueError, match='PROMPT_LENGHT is set but never used.*; gin macro'):
    gin_checks.check_macros()


def test_macros_used_inside_other_macros_count_as_used():
  assert _parse(FILE + "OUTER = {'a': %INNER}\nINNER = 2\n_fn.train_steps = %OUTER\n") == []


@pytest.mark.parametrize('value', [2.5, 0, -1, True, '3', None])
def test_positive_int_rejects(value):
  with pytest.raises(ValueError, match=f'TRAIN_STEPS must be a positive integer, got {value!r}'):
    gin_checks.positive_int('TRAIN_STEPS', value)


def test_positive_int_accepts_whole_numbers():
  assert gin_checks.positive_int('TRAIN_STEPS', 3) == 3
  assert gin_checks.positive_int('TRAIN_STEPS', 3.0) == 3


def test_task_module_macro_is_read_not_flagged():
  assert _parse(FILE, ["MIXTURE_OR_TASK_MODULE = 'my_tasks'"]) == []
  assert gin_checks.task_modules() == ['my_tasks']
  gin.clear_config()
  _parse(FILE, ["MIXTURE_OR_TASK_MODULE = ['a', 'b.c']"])
  assert gin_checks.task_modules() == ['a', 'b.c']
  gin.clear_config()
  _parse(FILE, ['MIXTURE_OR_TASK_MODULE = 3'])
  with pytest.raises(ValueError, match='MIXTURE_OR_TASK_MODULE must be a module name'):
    gin_checks.task_modules()
  gin.clear_config()
  _parse(FILE)
  assert gin_checks.task_modules() == []


def test_train_cli_refuses_a_misspelled_macro_in_one_line(tmp_path, capsys):
  from prompt_transfer_jax.trainer import cli
  args = ['--gin_file=models/t5_synth_prompt.gin', '--gin_file=runs/prompt_train.gin',
          f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.MIXTURE_OR_TASK_NAME='synth_sentiment_a'"]
  assert cli.train_main(args + ['--gin.TRAIN_STEP=5']) == 2
  err = capsys.readouterr().err
  assert err == ('ptj train: error: bad gin configuration: gin macro TRAIN_STEP is set but never '
                 'used (did you mean TRAIN_STEPS?)\n')
  assert not (tmp_path / 'run').exists()


def test_parse_gin_imports_the_task_module(tmp_path, monkeypatch):
  import seqio
  from prompt_transfer_jax.trainer import runs
  (tmp_path / 'ptj_user_tasks_mod.py').write_text(
      'import seqio\n'
      "if 'ptj_user_task' not in seqio.TaskRegistry.names():\n"
      "  base = seqio.get_mixture_or_task('synth_sentiment_a')\n"
      "  seqio.TaskRegistry.add('ptj_user_task', source=base.source,\n"
      '                         preprocessors=base.preprocessors,\n'
      '                         output_features=base.output_features)\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  runs.parse_gin(['models/t5_synth_prompt.gin', 'runs/prompt_train.gin'],
                 ["MIXTURE_OR_TASK_MODULE = 'ptj_user_tasks_mod'"])
  assert 'ptj_user_task' in seqio.TaskRegistry.names()
