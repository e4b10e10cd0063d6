"""`ptj` for the multi-process preemption tests: a signal sent to this process while it draws the
batch of a given step, and the batches from there on drawn slowly.

    PTJ_TEST_SIGNAL=SIGTERM PTJ_TEST_SIGNAL_AT=4 PTJ_TEST_BATCH_SLEEP=0.25 \
      python -m tests.trainer.signal_driver train ...

Only the process whose environment names a signal gets it; the sleep (the other processes keep
step with it) leaves JAX's preemption service, which polls for the notice, time to agree on a
step well before the end.
"""
import os
import signal
import sys
import time

from prompt_transfer_jax import cli
from prompt_transfer_jax.trainer import data as data_lib


def _slow_batches(real, sleep: float, signum, at: int):
  def batches(*args, start_batch=0, **kwargs):
    for i, batch in enumerate(real(*args, start_batch=start_batch, **kwargs), start_batch + 1):
      if signum is not None and i == at:
        os.kill(os.getpid(), signum)
      if signum is not None and i >= at:
        time.sleep(sleep)
      yield batch
  return batches


if __name__ == '__main__':
  name = os.environ.get('PTJ_TEST_SIGNAL')
  data_lib.train_batches = _slow_batches(
      data_lib.train_batches, float(os.environ.get('PTJ_TEST_BATCH_SLEEP', '0')),
      signal.Signals[name] if name else None, int(os.environ.get('PTJ_TEST_SIGNAL_AT', '0')))
  sys.exit(cli.main(sys.argv[1:]))
