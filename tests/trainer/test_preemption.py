"""`preemption.StopSignals`: when a signal stops the loop, with one process and with several
(the vote, here over this process's devices; two real processes: test_multihost_preemption)."""
import signal

import pytest

from prompt_transfer_jax.trainer import preemption


def test_one_process_stops_at_once_and_raises_before_the_loop():
  with preemption.StopSignals(process_count=1) as signals:
    assert signal.getsignal(signal.SIGTERM) == signals._handle
    assert signals.poll() is None
    with pytest.raises(preemption.Interrupted) as raised:   # setup: nothing to save yet
      signals._handle(signal.SIGINT, None)
    assert raised.value.exit_code == 130
    signals.deferred = True
    signals._handle(signal.SIGTERM, None)
    assert signals.poll() == signals.poll(wait=True) == signal.SIGTERM
    with pytest.raises(preemption.Interrupted):              # a second signal: at once
      signals._handle(signal.SIGTERM, None)
  assert signal.getsignal(signal.SIGTERM) != signals._handle


def test_several_processes_record_from_the_start_and_stop_one_poll_later(capsys):
  with preemption.StopSignals(process_count=2) as signals:
    assert signals.deferred
    assert [signals.poll() for _ in range(3)] == [None, None, None]
    signals._handle(signal.SIGTERM, None)                    # during setup: recorded
    assert 'SIGTERM received: every process stops at the next step' in capsys.readouterr().err
    assert signals.poll() is None                            # reads the vote cast before it
    assert signals.poll() == signal.SIGTERM
    assert signals.poll(wait=True) == signal.SIGTERM         # a boundary reads the newest vote
    with pytest.raises(preemption.Interrupted) as raised:
      signals._handle(signal.SIGINT, None)
    assert raised.value.exit_code == 130

