"""Two `jax.distributed` processes (CPU, gloo, localhost) train the same prompt as one process
(which here shards the frozen model over two devices: the `model` mesh axis)."""
import json
import socket

import numpy as np

from prompt_transfer_jax.trainer import run_record
from tests.trainer.conftest import final_prompt, ptj_subprocess, synth_args

STEPS = 8


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _args(model_dir, extra=()):
  # no shuffling: then the two hosts' shards (seqio ShardInfo) make up the very batches one host reads
  return ['train'] + synth_args(model_dir, STEPS, eval_period=4,
                                extra=['--gin.ptj.train.shuffle=False'] + list(extra))


def test_two_processes_match_one(tmp_path):
  """Data parallel over 2 processes vs 1 process holding the model sharded over 2 devices."""
  port = _free_port()
  single = ptj_subprocess(_args(tmp_path / 'single', ['--gin.ptj.train.model_parallel=2']),
                          devices=2)
  multi = [ptj_subprocess(_args(tmp_path / 'multi', [
      '--multiprocess', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
      f'--process_id={i}'])) for i in range(2)]
  outputs = []
  for proc in [single] + multi:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    outputs.append(out)
  assert not [line for line in outputs[2].splitlines() if line.startswith('{')]  # process 0 reports
  summary = json.loads(outputs[1].strip().splitlines()[-1])
  assert summary['final_step'] == STEPS
  np.testing.assert_allclose(final_prompt(tmp_path / 'multi', STEPS),
                             final_prompt(tmp_path / 'single', STEPS), rtol=1e-5, atol=2e-5)
  one = json.loads((tmp_path / 'single' / run_record.METRICS_FILE).read_text())
  two = json.loads((tmp_path / 'multi' / run_record.METRICS_FILE).read_text())
  assert [h['score'] for h in two['history']] == [h['score'] for h in one['history']]
  for a, b in zip(one['history'][1:], two['history'][1:]):
    np.testing.assert_allclose(b['train_loss'], a['train_loss'], rtol=1e-5)
