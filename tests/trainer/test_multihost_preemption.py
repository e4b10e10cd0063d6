"""Two `jax.distributed` processes (CPU, localhost): a corrupt latest checkpoint is moved to
MODEL_DIR/corrupt/ by process 0 alone and both processes restore the same older step, ending
bit-identical to the uninterrupted run."""
import json
import os

import numpy as np

from prompt_transfer_jax.trainer import checkpointing, run_record
from tests.trainer.conftest import final_prompt, ptj_subprocess, synth_args
from tests.trainer.test_checkpoint_integrity import _flip, _largest_file
from tests.trainer.test_multihost import _free_port

STEPS, CHECKPOINT_PERIOD = 20, 8


def _two_processes(model_dir):
  """Runs the same `ptj train` on 2 processes; [(rc, stderr)] * 2."""
  port = _free_port()
  args = ['train'] + synth_args(model_dir, STEPS, eval_period=STEPS, extra=[
      f'--gin.CHECKPOINT_PERIOD={CHECKPOINT_PERIOD}', '--gin.ptj.train.keep_checkpoints=2',
      '--gin.ptj.train.max_eval_examples=8',
      '--multiprocess', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2'])
  procs = [ptj_subprocess(args + [f'--process_id={i}']) for i in range(2)]
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


def test_corrupt_latest_checkpoint_is_quarantined_once_and_both_processes_restore_the_same_step(
    tmp_path):
  model_dir = tmp_path / 'run'
  _ok(_two_processes(model_dir))
  ref_prompt, ref_history = final_prompt(model_dir, STEPS), _history(model_dir)
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
