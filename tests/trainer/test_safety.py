"""Safe runs (issue 14): preemption by SIGINT / SIGTERM, kill -9, one writer per MODEL_DIR, resume
guards, a full disk, integer counts and misspelled macros.

Every run is the same tiny synthetic run (STEPS steps, evaluated and checkpointed every PERIOD),
compared bit for bit with one uninterrupted reference run. Signals are sent by the process to
itself while it draws the batch of a given step (a wrapped `data.train_batches`), so the step
they arrive at is exact; kill -9 and the concurrent run need a second process.
"""
import errno
import json
import os
import re
import shutil
import signal
import time

import numpy as np
import pytest

from prompt_transfer_jax.trainer import checkpointing
from prompt_transfer_jax.trainer import data as data_lib
from prompt_transfer_jax.trainer import run_lock, run_record
from tests.trainer.conftest import final_prompt, ptj_subprocess, synth_args, synth_train
from tests.trainer.signal_driver import signalling

STEPS, PERIOD = 8, 4


def _args(model_dir, extra=()):
  return synth_args(model_dir, STEPS, eval_period=PERIOD, extra=list(extra))


def _one_line(err: str, prog: str = 'ptj train') -> str:
  lines = [line for line in err.strip().splitlines() if line.startswith(f'{prog}: ')]
  assert len(lines) == 1, err
  return lines[0]


def _history(model_dir):
  record = json.loads((model_dir / run_record.METRICS_FILE).read_text())
  return [(h['step'], h['score']) for h in record['history']], record['best_step']


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run: (model_dir, final prompt, history)."""
  model_dir = tmp_path_factory.mktemp('safety') / 'reference'
  synth_train(model_dir, STEPS, eval_period=PERIOD)
  return model_dir, final_prompt(model_dir, STEPS), _history(model_dir)


def _signal_at(monkeypatch, signum, step):
  """Makes the run send itself `signum` while it draws the batch of step `step`."""
  monkeypatch.setattr(data_lib, 'train_batches', signalling(data_lib.train_batches, signum, step))


def test_sigint_then_sigterm_save_the_current_step_and_resume_bit_identically(
    tmp_path, run_train, monkeypatch, reference):
  ref_dir, ref_prompt, ref_history = reference
  model_dir = tmp_path / 'run'
  # Ctrl-C at step 3, before the first periodic checkpoint (step 4).
  _signal_at(monkeypatch, signal.SIGINT, 3)
  rc, _, err = run_train(_args(model_dir))
  line = _one_line(err)
  assert rc == 130 and line == (f'ptj train: interrupted by SIGINT at step 3; saved checkpoint_3; '
                                'run the same command to resume'), err
  assert checkpointing.committed_steps(str(model_dir)) == [3]
  assert not (model_dir / run_lock.LOCK_FILE).exists()
  # Resumed, then preempted (SIGTERM) at step 6.
  _signal_at(monkeypatch, signal.SIGTERM, 6)
  rc, _, err = run_train(_args(model_dir))
  assert rc == 143 and 'interrupted by SIGTERM at step 6; saved checkpoint_6' in _one_line(err)
  assert f'resumed {model_dir} at step 3' in err
  assert checkpointing.committed_steps(str(model_dir)) == [6]
  monkeypatch.undo()
  rc, _, err = run_train(_args(model_dir, ['--progress']))   # with the phase lines
  assert rc == 0 and f'resumed {model_dir} at step 6' in err, err
  phases = [re.match(r'ptj: ([a-z ]+)', line).group(1) for line in err.splitlines()
            if line.startswith('ptj: ') and not line.startswith('ptj train')]
  assert phases == ['config', 'model', 'resume', 'data', 'compile and first step'], err
  np.testing.assert_array_equal(final_prompt(model_dir, STEPS), ref_prompt)
  assert _history(model_dir) == ref_history          # every evaluation once, same scores
  np.testing.assert_array_equal(np.load(model_dir / run_record.BEST_PROMPT_FILE),
                                np.load(ref_dir / run_record.BEST_PROMPT_FILE))
  assert not [p for p in model_dir.rglob('*') if 'tmp' in p.name]


def test_a_signal_at_the_last_step_saves_it_and_the_resume_runs_the_last_evaluation(
    tmp_path, run_train, monkeypatch, reference):
  ref_dir, ref_prompt, ref_history = reference
  model_dir = tmp_path / 'run'
  _signal_at(monkeypatch, signal.SIGTERM, STEPS)
  rc, _, err = run_train(_args(model_dir))
  assert rc == 143 and f'interrupted by SIGTERM at step {STEPS}' in _one_line(err), err
  assert _history(model_dir)[0] == ref_history[0][:-1]      # stopped before the last evaluation
  monkeypatch.undo()
  rc, _, err = run_train(_args(model_dir))
  assert rc == 0 and f'resumed {model_dir} at step {STEPS}' in err, err
  assert _history(model_dir) == ref_history
  np.testing.assert_array_equal(final_prompt(model_dir, STEPS), ref_prompt)
  np.testing.assert_array_equal(np.load(model_dir / run_record.BEST_PROMPT_FILE),
                                np.load(ref_dir / run_record.BEST_PROMPT_FILE))


def _wait_for(condition, proc, timeout=240):
  deadline = time.time() + timeout
  while not condition() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert proc.poll() is None, proc.communicate()[1][-3000:]


def test_kill_9_before_the_first_checkpoint_and_a_concurrent_run(tmp_path, run_train):
  # Subprocesses run with other XLA flags than this process, so they are compared with each
  # other: the restarted killed run is a lone run of the same configuration.
  victim, shared, gate = tmp_path / 'victim', tmp_path / 'shared', tmp_path / 'gate'
  killed = ptj_subprocess(['train'] + _args(victim))
  # The first run holds before its first batch until the gate opens: still running, for sure,
  # when the second one tries the directory.
  first = ptj_subprocess(['train'] + _args(shared), module='tests.trainer.signal_driver',
                         env={'PTJ_TEST_GATE': str(gate)})

  # kill -9 once the run has written its config and opened its event files, before step 4.
  _wait_for(lambda: (victim / 'training_eval').is_dir(), killed)
  os.kill(killed.pid, signal.SIGKILL)
  killed.communicate()
  assert not checkpointing.committed_steps(str(victim))
  assert (victim / 'config.gin').exists() and (victim / run_lock.LOCK_FILE).exists()
  restarted = ptj_subprocess(['train'] + _args(victim))   # stale lock, no checkpoint: restarts

  # A second run on a MODEL_DIR in use is refused with one line and writes nothing.
  _wait_for(lambda: (shared / 'config.gin').exists(), first)
  config = (shared / 'config.gin').read_bytes()
  rc, _, err = run_train(_args(shared))
  assert rc == 2 and f'{shared} is in use by pid {first.pid}' in _one_line(err), err
  assert first.poll() is None, 'the first run ended before the second one was refused'
  gate.touch()
  for proc in (first, restarted):
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
  assert (shared / 'config.gin').read_bytes() == config
  np.testing.assert_array_equal(final_prompt(shared, STEPS), final_prompt(victim, STEPS))
  assert _history(shared) == _history(victim)
  assert not (victim / run_lock.LOCK_FILE).exists() and not (shared / run_lock.LOCK_FILE).exists()


@pytest.mark.parametrize('extra, change', [
    (['--gin.BATCH_SIZE=4'], "batch size (train.batch_size) 8 -> 4"),
    (['--gin.PROMPT_LENGTH=5'], "prompt length (train.prompt_length) 4 -> 5"),
    (["--gin.MIXTURE_OR_TASK_NAME='synth_sentiment_b'"],
     "task (train.mixture_or_task_name) 'synth_sentiment_a' -> 'synth_sentiment_b'"),
])
def test_a_refused_resume_leaves_the_run_untouched(run_train, reference, extra, change):
  ref_dir = reference[0]
  before = {p: p.stat().st_mtime_ns for p in ref_dir.rglob('*')}
  config = (ref_dir / 'config.gin').read_bytes()
  rc, _, err = run_train(_args(ref_dir, extra))
  line = _one_line(err)
  assert rc == 2 and 'holds another run' in line and change in line and '--force_resume' in line
  assert (ref_dir / 'config.gin').read_bytes() == config
  assert {p: p.stat().st_mtime_ns for p in ref_dir.rglob('*')} == before


def test_force_resume_continues_a_changed_run(tmp_path, run_train, reference):
  model_dir = tmp_path / 'copy'
  shutil.copytree(reference[0], model_dir)
  rc, _, err = run_train(_args(model_dir, ["--gin.MIXTURE_OR_TASK_NAME='synth_sentiment_b'",
                                           '--force_resume']))
  assert rc == 0 and f'resumed {model_dir} at step {STEPS}' in err, err
  assert "'synth_sentiment_b'" in (model_dir / 'config.gin').read_text()


def test_a_full_disk_after_a_committed_checkpoint_deletes_nothing(tmp_path, run_train,
                                                                  monkeypatch):
  model_dir = tmp_path / 'run'
  real_save = checkpointing.Checkpointer.save

  def save(self, step, state, meta):
    if step > PERIOD:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real_save(self, step, state, meta)
  monkeypatch.setattr(checkpointing.Checkpointer, 'save', save)
  # As in the issue: after the failed save, Orbax lists no step.
  monkeypatch.setattr(checkpointing.Checkpointer, 'latest_step', lambda self: None)
  rc, _, err = run_train(_args(model_dir))
  assert rc == 1 and 'No space left on device' in _one_line(err), err
  assert checkpointing.committed_steps(str(model_dir)) == [PERIOD]
  assert checkpointing.verify_step(str(model_dir), PERIOD) is None
  checkpointing.read_numpy_prompt(str(model_dir), PERIOD)
  assert (model_dir / run_record.METRICS_FILE).exists()
  assert not (model_dir / run_lock.LOCK_FILE).exists()


@pytest.mark.parametrize('extra, message', [
    (['--gin.TRAIN_STEPS=2.5'], 'TRAIN_STEPS must be a positive integer, got 2.5'),
    (['--gin.TRAIN_STEP=5'],
     'gin macro TRAIN_STEP is set but never used (did you mean TRAIN_STEPS?)'),
    (["--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 2.5}"],
     "TASK_FEATURE_LENGTHS['targets'] must be a positive integer, got 2.5"),
])
def test_non_integer_counts_and_misspelled_macros_are_one_line_errors(tmp_path, run_train, extra,
                                                                       message):
  model_dir = tmp_path / 'run'
  rc, _, err = run_train(_args(model_dir, extra))
  line = _one_line(err)
  assert rc == 2 and line.startswith('ptj train: error: ') and message in line, err
  assert not model_dir.exists()


def test_export_refuses_a_best_prompt_that_fails_its_checksum(tmp_path, reference, capsys):
  from prompt_transfer_jax.trainer import cli
  model_dir = tmp_path / 'copy'
  shutil.copytree(reference[0], model_dir)
  path = model_dir / run_record.BEST_PROMPT_FILE
  data = bytearray(path.read_bytes())
  data[-1] ^= 0x01                      # a flipped bit in the last prompt value
  path.write_bytes(bytes(data))
  capsys.readouterr()
  assert cli.export_main([f'--prompt={model_dir}', '--format=numpy',
                          f'--out={tmp_path / "out"}']) == 2
  err = capsys.readouterr().err
  assert f'{path} does not match best_prompt_sha256' in _one_line(err, 'ptj export')
  assert not (tmp_path / 'out').exists()


def test_module_flag_imports_the_users_task_module(tmp_path, capsys):
  from prompt_transfer_jax.trainer import cli
  missing = tmp_path / 'my_tasks.py'
  assert cli.eval_main([f'--module={missing}', '--gin_file=models/t5_synth_prompt.gin']) == 2
  assert f'task module not found: {missing}' in _one_line(capsys.readouterr().err, 'ptj eval')
