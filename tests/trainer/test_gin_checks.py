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
