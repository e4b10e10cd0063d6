"""Bad input: one-line error, exit 2 (other failures exit 1), and no partial MODEL_DIR step left
behind."""
import re

import numpy as np
import pytest

from prompt_transfer_jax.trainer import cli
from tests.trainer.conftest import synth_args


def _error_line(err: str, prog: str = 'ptj train') -> str:
  lines = [line for line in err.strip().splitlines() if 'error' in line.lower()]
  assert len(lines) == 1, err
  assert lines[0].startswith(f'{prog}: error: ')
  return lines[0]


@pytest.mark.parametrize('extra, code, message', [
    (["--gin.MIXTURE_OR_TASK_NAME='synth_sentimnt_a'"], 2,
     "unknown task or mixture 'synth_sentimnt_a'"),
    (["--gin.INITIAL_CHECKPOINT_PATH='/nonexistent/checkpoint_1000'"], 2,
     'checkpoint path does not exist: /nonexistent/checkpoint_1000'),
    (['--gin.BATCH_SIZE=[8'], 2, 'bad gin configuration'),
    (['--gin.ptj.train.no_such_option=1'], 2, "doesn't have a parameter named 'no_such_option'"),
    (['--gin.TRAIN_STEPS'], 2, 'malformed gin flag'),
    (['--gin.TRAIN_STEPS=0'], 2, 'TRAIN_STEPS must be a positive integer'),
    (["--gin.TASK_FEATURE_LENGTHS={'inputs': 16}"], 2, 'TASK_FEATURE_LENGTHS must be a dict'),
])
def test_bad_configuration(tmp_path, run_train, extra, code, message):
  model_dir = tmp_path / 'run'
  rc, _, err = run_train(synth_args(model_dir, 2, extra=extra))
  assert rc == code
  assert message in _error_line(err)
  assert not model_dir.exists()


def test_missing_model_dir_macro(run_train):
  args = [a for a in synth_args('unused', 2) if not a.startswith('--gin.MODEL_DIR')]
  rc, _, err = run_train(args)
  assert rc == 2 and 'missing required gin macro MODEL_DIR' in _error_line(err)


def test_prompt_file_of_the_wrong_shape(tmp_path, run_train, capsys):
  bad = tmp_path / 'bad.npy'
  np.save(bad, np.zeros((3, 7), np.float32))
  model_dir = tmp_path / 'run'
  rc, _, err = run_train(synth_args(model_dir, 2, extra=[
      '--gin_file=prompts/from_file.gin', f"--gin.PROMPT_FILE='{bad}'"]))
  line = _error_line(err)
  assert rc == 2 and str(bad) in line and '(3, 7)' in line and '(4, 32)' in line
  assert not model_dir.exists()
  code = cli.eval_main(['--gin_file=models/t5_synth_prompt.gin', '--gin_file=runs/prompt_eval.gin',
                        f"--gin.PROMPT_FILE='{bad}'", "--gin.MIXTURE_OR_TASK_NAME='synth_nli_a'"])
  line = _error_line(capsys.readouterr().err, 'ptj eval')
  assert code == 2 and '(3, 7)' in line and '(20, 256)' in line


def test_nan_loss_stops_without_saving_the_bad_step(tmp_path, run_train):
  model_dir = tmp_path / 'run'
  rc, _, err = run_train(synth_args(model_dir, 6, eval_period=6, extra=[
      '--gin.CHECKPOINT_PERIOD=1', "--gin.ptj.make_optimizer.name='adamw'",
      '--gin.ptj.make_optimizer.learning_rate=1e30']))
  line = _error_line(err)
  found = re.search(r'loss is nan at step (\d+);.*last checkpoint: (\d+)$', line)
  assert rc == 1 and found, line
  bad, last = int(found.group(1)), int(found.group(2))
  assert last == bad - 1 >= 1
  assert sorted(p.name for p in model_dir.glob('checkpoint_*')) == [f'checkpoint_{last}']
  assert sorted(p.name for p in (model_dir / 'numpy_checkpoints').iterdir()) == [
      f'checkpoint_{s}' for s in range(1, last + 1)]
  assert not [p for p in model_dir.rglob('*') if 'tmp' in p.name]


def test_nan_loss_before_any_checkpoint_leaves_no_checkpoint_lock_or_temporary(tmp_path, run_train):
  # What the run wrote before failing (config, events) stays: a failure handler never deletes
  # events or metrics (tests/trainer/test_safety.py restarts such a directory).
  model_dir = tmp_path / 'run'
  rc, _, err = run_train(synth_args(model_dir, 6, eval_period=6, extra=[
      "--gin.ptj.make_optimizer.name='adamw'", '--gin.ptj.make_optimizer.learning_rate=1e30',
      '--gin.ptj.train.eval_at_start=False']))
  assert rc == 1 and 'loss is nan' in _error_line(err)
  assert not list(model_dir.glob('checkpoint_*')) and not (model_dir / '.ptj_lock').exists()
  assert not [p for p in model_dir.rglob('*') if 'tmp' in p.name]
