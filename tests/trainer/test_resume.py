"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""
import json
import os
import signal
import time

import numpy as np

from prompt_transfer_jax.trainer import checkpointing, run_record
from tests.trainer.conftest import final_prompt, ptj_subprocess, synth_args

STEPS, PERIOD = 120, 10


def _args(model_dir):
  # dropout on, so the per-step RNG must come back right too
  return ['train'] + synth_args(model_dir, STEPS, eval_period=PERIOD,
                                extra=[f'--gin.CHECKPOINT_PERIOD={PERIOD}', '--gin.DROPOUT_RATE=0.1',
                                       '--gin.ptj.train.log_period=10'])


def _wait(proc, timeout=240):
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, err[-3000:]
  return err


def test_sigkill_then_resume_is_bit_identical(tmp_path):
  reference, victim = tmp_path / 'reference', tmp_path / 'victim'
  ref_proc = ptj_subprocess(_args(reference))
  proc = ptj_subprocess(_args(victim))
  marker = os.path.dirname(checkpointing.numpy_prompt_path(str(victim), 2 * PERIOD))
  deadline = time.time() + 240
  while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  os.kill(proc.pid, signal.SIGKILL)
  proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  killed_at = max(int(p.name.split('_')[1]) for p in (victim / 'numpy_checkpoints').iterdir()
                  if '.tmp-' not in p.name)
  assert killed_at < STEPS, 'the run finished before it could be killed'

  resumed = ptj_subprocess(_args(victim))
  _wait(ref_proc)
  assert f'resumed {victim} at step' in _wait(resumed)
  np.testing.assert_array_equal(final_prompt(victim, STEPS), final_prompt(reference, STEPS))
  ref_record = json.loads((reference / run_record.METRICS_FILE).read_text())
  record = json.loads((victim / run_record.METRICS_FILE).read_text())
  steps = [h['step'] for h in record['history']]
  assert steps == list(range(0, STEPS + 1, PERIOD))          # no step evaluated twice
  assert [h['score'] for h in record['history']] == [h['score'] for h in ref_record['history']]
  assert record['best_step'] == ref_record['best_step']
  np.testing.assert_array_equal(np.load(victim / run_record.BEST_PROMPT_FILE),
                                np.load(reference / run_record.BEST_PROMPT_FILE))
  assert not [p for p in victim.rglob('*') if 'tmp' in p.name]   # no partial step left behind
