"""`ptj` that sends itself a signal while it draws the batch of a given step, for the
multi-process preemption test (only the process whose environment names a signal gets one):

    PTJ_TEST_SIGNAL=SIGTERM PTJ_TEST_SIGNAL_AT=11 python -m tests.trainer.signal_driver train ...
"""
import os
import signal
import sys

from prompt_transfer_jax import cli
from prompt_transfer_jax.trainer import data as data_lib


def _signalling(real, signum: signal.Signals, at: int):
  def batches(*args, start_batch=0, **kwargs):
    for i, batch in enumerate(real(*args, start_batch=start_batch, **kwargs), start_batch + 1):
      if i == at:
        os.kill(os.getpid(), signum)
      yield batch
  return batches


if __name__ == '__main__':
  name = os.environ.get('PTJ_TEST_SIGNAL')
  if name:
    data_lib.train_batches = _signalling(data_lib.train_batches, signal.Signals[name],
                                         int(os.environ['PTJ_TEST_SIGNAL_AT']))
  sys.exit(cli.main(sys.argv[1:]))
