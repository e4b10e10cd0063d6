"""A time limit on the first touch of a remote checkpoint (gs://, s3://, ...).

Without network or credentials, the storage clients retry for minutes, silently. `reachable`
runs a cheap probe of the path in a daemon thread and turns silence into a one-line error naming
the path and the limit (`PTJ_REMOTE_TIMEOUT` seconds, default 60); local paths are not probed.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional

TIMEOUT_ENV = 'PTJ_REMOTE_TIMEOUT'
DEFAULT_TIMEOUT_S = 60.0


class RemoteTimeoutError(TimeoutError):
  """A remote path did not answer within the time limit."""


def is_remote(path) -> bool:
  return '://' in os.fspath(path) and not os.fspath(path).startswith('file://')


def timeout_s() -> float:
  value = os.environ.get(TIMEOUT_ENV)
  try:
    seconds = float(value) if value else DEFAULT_TIMEOUT_S
  except ValueError:
    raise ValueError(f'{TIMEOUT_ENV} must be a number of seconds, got {value!r}') from None
  if seconds <= 0:
    raise ValueError(f'{TIMEOUT_ENV} must be positive, got {value!r}')
  return seconds


def call_with_timeout(fn: Callable[[], Any], what: str, seconds: Optional[float] = None) -> Any:
  """`fn()` run in a daemon thread; its result, its exception, or `RemoteTimeoutError`."""
  seconds = timeout_s() if seconds is None else seconds
  box: dict = {}

  def target():
    try:
      box['value'] = fn()
    except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
      box['error'] = e

  thread = threading.Thread(target=target, daemon=True, name=f'probe {what}')
  thread.start()
  thread.join(seconds)
  if thread.is_alive():
    raise RemoteTimeoutError(f'{what} did not answer within {seconds:g} s (no network or no '
                             f'credentials?); set {TIMEOUT_ENV} to wait longer')
  if 'error' in box:
    raise box['error']
  return box.get('value')


def reachable(path, probe: Callable[[], Any], seconds: Optional[float] = None) -> None:
  """Runs `probe()` (e.g. an existence check of `path`) under the limit when `path` is remote."""
  if is_remote(path):
    call_with_timeout(probe, os.fspath(path), seconds)
