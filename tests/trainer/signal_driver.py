"""`ptj` for tests that steer a run from outside: it sends itself a signal while it draws the
batch of a given step (the multi-process preemption test: only the process whose environment
names a signal gets one), or holds before its first batch until a gate file exists (a run
that is surely still running while the test starts a second one):

    PTJ_TEST_SIGNAL=SIGTERM PTJ_TEST_SIGNAL_AT=11 python -m tests.trainer.signal_driver train ...
    PTJ_TEST_GATE=/tmp/go python -m tests.trainer.signal_driver train ...
"""
import os
import signal
import sys
import time

from prompt_transfer_jax import cli
from prompt_transfer_jax.trainer import data as data_lib


def signalling(real, signum: signal.Signals, at: int):
  """`data.train_batches` that sends this process `signum` while it draws the batch of step
  `at` (steps count from 1)."""
  def batches(*args, start_batch=0, **kwargs):
    for i, batch in enumerate(real(*args, start_batch=start_batch, **kwargs), start_batch + 1):
      if i == at:
        os.kill(os.getpid(), signum)
      yield batch
  return batches


def gated(real, gate: str, timeout: float = 300.0):
  """`data.train_batches` that waits for the file `gate` before its first batch."""
  def batches(*args, **kwargs):
    deadline = time.time() + timeout
    while not os.path.exists(gate):
      if time.time() > deadline:
        raise TimeoutError(f'gate {gate} not opened within {timeout:.0f} s')
      time.sleep(0.02)
    yield from real(*args, **kwargs)
  return batches


if __name__ == '__main__':
  if os.environ.get('PTJ_TEST_GATE'):
    data_lib.train_batches = gated(data_lib.train_batches, os.environ['PTJ_TEST_GATE'])
  name = os.environ.get('PTJ_TEST_SIGNAL')
  if name:
    data_lib.train_batches = signalling(data_lib.train_batches, signal.Signals[name],
                                        int(os.environ['PTJ_TEST_SIGNAL_AT']))
  sys.exit(cli.main(sys.argv[1:]))
