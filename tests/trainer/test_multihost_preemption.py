"""Two `jax.distributed` processes (CPU, localhost): a SIGTERM that reaches ONE of them stops
both at the same step, both save that checkpoint, and a resume ends bit-identical to an
uninterrupted two-process run; a corrupt latest checkpoint is moved to MODEL_DIR/corrupt/ by
process 0 alone and both processes restore the same older step."""
import json
import os

import numpy as np

from prompt_transfer_jax.trainer import checkpointing, run_record
from tests.trainer.conftest import final_prompt, ptj_subprocess, synth_args
from tests.trainer.test_checkpoint_integrity import _flip, _largest_file
from tests.trainer.test_multihost import _free_port

STEPS, CHECKPOINT_PERIOD = 20, 8
SIGNAL_AT = 11     # not a boundary of the loop (8, 16, 20): the processes stop one step later


def _two_processes(model_dir, envs=({}, {})):
  """Runs the same `ptj train` on 2 processes (process i with `envs[i]`, see `signal_driver`);
  [(rc, stderr)] * 2."""
  port = _free_port()
  args = ['train'] + synth_args(model_dir, STEPS, eval_period=STEPS, extra=[
      f'--gin.CHECKPOINT_PERIOD={CHECKPOINT_PERIOD}', '--gin.ptj.train.keep_checkpoints=2',
      '--gin.ptj.train.max_eval_examples=8',
      '--multiprocess', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2'])
  procs = [ptj_subprocess(args + [f'--process_id={i}'], module='tests.trainer.signal_driver',
                          env=env) for i, env in enumerate(envs)]
  results = []
  try:       # the watchdog: two processes waiting on each other must not hang the suite
    for proc in procs:
      _, err = proc.communicate(timeout=300)
      results.append((proc.returncode, err))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return results


def _history(model_dir):
  record = json.loads((model_dir / run_record.METRICS_FILE).read_text())
  return [(h['step'], h['score']) for h in record['history']]


def _ok(results):
  for rc, err in results:
    assert rc == 0, err[-3000:]
  return results[0][1]


def test_sigterm_to_one_process_stops_both_at_one_step_and_corrupt_checkpoints_quarantined_once(
    tmp_path):
  reference, model_dir = tmp_path / 'reference', tmp_path / 'run'
  _ok(_two_processes(reference))
  ref_prompt, ref_history = final_prompt(reference, STEPS), _history(reference)

  # SIGTERM to process 1 alone, while it draws the batch of step SIGNAL_AT.
  hit = {'PTJ_TEST_SIGNAL': 'SIGTERM', 'PTJ_TEST_SIGNAL_AT': str(SIGNAL_AT)}
  (rc0, err0), (rc1, err1) = _two_processes(model_dir, ({}, hit))
  assert rc0 == rc1 == 143, (err0[-2000:], err1[-2000:])
  stop = SIGNAL_AT + 1
  for err in (err0, err1):
    lines = [line for line in err.splitlines() if line.startswith('ptj train: ')]
    assert lines == [f'ptj train: interrupted by SIGTERM at step {stop}; saved checkpoint_{stop}; '
                     'run the same command to resume'], err[-2000:]
  assert 'SIGTERM received: every process stops' in err1 and 'SIGTERM received' not in err0
  assert checkpointing.committed_steps(str(model_dir)) == [CHECKPOINT_PERIOD, stop]
  assert checkpointing.verify_step(str(model_dir), stop) is None
  err0 = _ok(_two_processes(model_dir))
  assert f'resumed {model_dir} at step {stop}' in err0 and 'corrupt' not in err0
  np.testing.assert_array_equal(final_prompt(model_dir, STEPS), ref_prompt)
  assert _history(model_dir) == ref_history
  assert checkpointing.committed_steps(str(model_dir)) == [2 * CHECKPOINT_PERIOD, STEPS]

  # A flipped byte in the latest checkpoint: process 0 moves it away, both restore the one before.
  _flip(_largest_file(checkpointing.step_dir(str(model_dir), STEPS)))
  snapshot = checkpointing.numpy_prompt_path(str(model_dir), STEPS)
  os.remove(snapshot)                          # must be written again
  err0 = _ok(_two_processes(model_dir))
  assert f'resumed {model_dir} at step {2 * CHECKPOINT_PERIOD}' in err0
  assert f'corrupt checkpoint skipped (moved to corrupt/): {model_dir}/checkpoint_{STEPS}' in err0
  assert (model_dir / 'corrupt' / f'checkpoint_{STEPS}').is_dir()
  np.testing.assert_array_equal(final_prompt(model_dir, STEPS), ref_prompt)
  assert _history(model_dir) == ref_history
  assert checkpointing.committed_steps(str(model_dir)) == [2 * CHECKPOINT_PERIOD, STEPS]
  assert checkpointing.verify_step(str(model_dir), STEPS) is None
