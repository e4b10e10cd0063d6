"""Two `jax.distributed` processes (CPU, localhost): a SIGTERM that reaches ONE of them stops both
at the same step with the same checkpoint, and a resume ends bit-identical to an uninterrupted
two-process run; a corrupt latest checkpoint is moved to MODEL_DIR/corrupt/ by process 0 and
both processes restore the same older step."""
import json
import os
import re

import numpy as np
import pytest

from prompt_transfer_jax.trainer import checkpointing, run_record
from prompt_transfer_jax.trainer import train
from tests.trainer.conftest import final_prompt, ptj_subprocess, synth_args
from tests.trainer.test_checkpoint_integrity import _flip, _largest_file
from tests.trainer.test_multihost import _free_port

STEPS, CHECKPOINT_PERIOD, SIGNAL_AT = 20, 8, 9


def _two_processes(model_dir, envs=({}, {})):
  """Runs the same `ptj train` on 2 processes (process i with `envs[i]`); [(rc, stderr)] * 2."""
  port = _free_port()
  args = ['train'] + synth_args(model_dir, STEPS, eval_period=STEPS, extra=[
      f'--gin.CHECKPOINT_PERIOD={CHECKPOINT_PERIOD}', '--gin.ptj.train.keep_checkpoints=2',
      '--gin.ptj.train.max_eval_examples=8',
      '--multiprocess', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2'])
  procs = [ptj_subprocess(args + [f'--process_id={i}'], module='tests.trainer.signal_driver',
                          env=env) for i, env in enumerate(envs)]
  results = []
  for proc in procs:
    _, err = proc.communicate(timeout=300)
    results.append((proc.returncode, err))
  return results


def _history(model_dir):
  record = json.loads((model_dir / run_record.METRICS_FILE).read_text())
  return [(h['step'], h['score']) for h in record['history']]


def _ok(results):
  for rc, err in results:
    assert rc == 0, err[-3000:]
  return results[0][1]


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  reference, model_dir = tmp_path / 'reference', tmp_path / 'run'
  _ok(_two_processes(reference))
  ref_prompt, ref_history = final_prompt(reference, STEPS), _history(reference)

  # 0.25 s per step from the signal on: 2.75 s to the end; JAX polls for the notice every 1 s.
  hit = {'PTJ_TEST_SIGNAL': 'SIGTERM', 'PTJ_TEST_SIGNAL_AT': str(SIGNAL_AT),
         'PTJ_TEST_BATCH_SLEEP': '0.25'}
  (rc0, err0), (rc1, err1) = _two_processes(model_dir, ({}, hit))
  assert rc0 == rc1 == 143, (err0[-2000:], err1[-2000:])   # process 0 learnt of it from JAX
  steps = [re.search(r'ptj train: interrupted by SIGTERM at step (\d+); saved checkpoint_\1;', err)
           for err in (err0, err1)]
  assert steps[0] and steps[1], (err0[-2000:], err1[-2000:])
  stop = int(steps[0].group(1))
  assert int(steps[1].group(1)) == stop and SIGNAL_AT <= stop < STEPS
  assert checkpointing.committed_steps(str(model_dir)) == [CHECKPOINT_PERIOD, stop]
  assert checkpointing.verify_step(str(model_dir), stop) is None

  err0 = _ok(_two_processes(model_dir))
  assert 'corrupt' not in err0
  np.testing.assert_array_equal(final_prompt(model_dir, STEPS), ref_prompt)
  assert _history(model_dir) == ref_history

  # A flipped byte in the latest checkpoint: process 0 moves it away, both restore the one before.
  assert checkpointing.committed_steps(str(model_dir)) == [2 * CHECKPOINT_PERIOD, STEPS]
  _flip(_largest_file(checkpointing.step_dir(str(model_dir), STEPS)))
  snapshot = checkpointing.numpy_prompt_path(str(model_dir), STEPS)
  os.remove(snapshot)                          # must be written again
  err0 = _ok(_two_processes(model_dir))
  assert f'resumed {model_dir} at step {2 * CHECKPOINT_PERIOD}' in err0
  assert f'corrupt checkpoint skipped (moved to corrupt/): {model_dir}/checkpoint_{STEPS}' in err0
  assert (model_dir / 'corrupt' / f'checkpoint_{STEPS}').is_dir()
  np.testing.assert_array_equal(final_prompt(model_dir, STEPS), ref_prompt)
  assert checkpointing.committed_steps(str(model_dir)) == [2 * CHECKPOINT_PERIOD, STEPS]
  assert checkpointing.verify_step(str(model_dir), STEPS) is None


def test_sigint_becomes_the_preemption_notice_with_several_processes(monkeypatch):
  """With several processes SIGTERM stays with JAX's preemption service; a SIGINT is recorded and
  passed on to it as a SIGTERM, and the loop stops only where the sync point says."""
  raised, asked = [], []
  monkeypatch.setattr(train.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(train, '_preemption_service', lambda: True)
  monkeypatch.setattr(train.signal, 'raise_signal', raised.append)
  from jax.experimental import multihost_utils
  monkeypatch.setattr(multihost_utils, 'reached_preemption_sync_point',
                      lambda step: asked.append(step) or step == 7)
  term = train.signal.getsignal(train.signal.SIGTERM)
  with train._StopSignals() as signals:
    assert signals.synced and train.signal.getsignal(train.signal.SIGTERM) is term
    signals._handle(train.signal.SIGINT, None)
    assert signals.received == train.signal.SIGINT and raised == [train.signal.SIGTERM]
    assert [signals.stop(s) for s in (5, 5, 6, 7, 7)] == [None, None, None, train.signal.SIGINT,
                                                          train.signal.SIGINT]
    assert asked == [5, 6, 7]                  # once per step
    with pytest.raises(train.Interrupted):      # a second Ctrl-C stops at once
      signals._handle(train.signal.SIGINT, None)
