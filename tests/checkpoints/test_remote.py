"""A silent remote checkpoint path becomes a one-line error after the time limit."""
import threading
import time

import pytest

from prompt_transfer_jax.checkpoints import open_checkpoint, remote, t5x


def test_silence_times_out_and_errors_pass_through():
  release = threading.Event()
  start = time.perf_counter()
  with pytest.raises(remote.RemoteTimeoutError, match=r'gs://b/ckpt did not answer within 0.2 s '
                                                      r'.*PTJ_REMOTE_TIMEOUT') as e:
    remote.reachable('gs://b/ckpt', lambda: release.wait(30), seconds=0.2)
  release.set()
  assert time.perf_counter() - start < 5 and '\n' not in str(e.value)
  with pytest.raises(PermissionError, match='denied'):
    remote.reachable('gs://b/ckpt', lambda: (_ for _ in ()).throw(PermissionError('denied')), 1)
  remote.reachable('/local/path', lambda: 1 / 0)        # local paths are not probed
  remote.reachable('file:///local/path', lambda: 1 / 0)
  assert remote.call_with_timeout(lambda: 42, 'x', 1) == 42


def test_timeout_setting(monkeypatch):
  monkeypatch.setenv(remote.TIMEOUT_ENV, '2.5')
  assert remote.timeout_s() == 2.5
  monkeypatch.setenv(remote.TIMEOUT_ENV, 'soon')
  with pytest.raises(ValueError, match='PTJ_REMOTE_TIMEOUT must be a number'):
    remote.timeout_s()
  monkeypatch.delenv(remote.TIMEOUT_ENV)
  assert remote.timeout_s() == remote.DEFAULT_TIMEOUT_S


def test_t5x_reader_times_out_on_a_hanging_bucket(monkeypatch):
  release = threading.Event()
  monkeypatch.setattr(t5x.Location, 'exists', lambda self: release.wait(30))
  monkeypatch.setenv(remote.TIMEOUT_ENV, '0.3')
  with pytest.raises(remote.RemoteTimeoutError, match='gs://bucket/t5x/checkpoint_1100000 did not'):
    open_checkpoint('gs://bucket/t5x/checkpoint_1100000')
  release.set()
