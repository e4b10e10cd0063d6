"""One writer per MODEL_DIR: `MODEL_DIR/.ptj_lock` holds the holder's host, pid and start time.

The lock is created with O_CREAT | O_EXCL, so of two runs started together exactly one gets it;
the other is refused with one line naming the holder. A lock left by a run that died (same host,
pid no longer alive) is stale and taken over; a lock from another host is never guessed stale
(remove it by hand once that run is gone).

    with run_lock.RunLock(model_dir):
      ...  # train
"""
from __future__ import annotations

import datetime
import json
import os
import socket
from typing import Optional

LOCK_FILE = '.ptj_lock'


class LockedError(RuntimeError):
  """MODEL_DIR is held by another live run."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def read_holder(model_dir: str) -> Optional[dict]:
  """The lock's content (`host`, `pid`, `started`), {} if unreadable, None if unlocked."""
  try:
    with open(os.path.join(model_dir, LOCK_FILE)) as f:
      holder = json.load(f)
    return holder if isinstance(holder, dict) else {}
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def is_stale(holder: dict) -> bool:
  """True for a lock written on this host by a process that is gone."""
  pid = holder.get('pid')
  return (holder.get('host') == socket.gethostname() and isinstance(pid, int) and
          pid != os.getpid() and not _pid_alive(pid))


class RunLock:
  """Context manager holding `MODEL_DIR/.ptj_lock` (creating MODEL_DIR if needed)."""

  def __init__(self, model_dir: str):
    self.model_dir = model_dir
    self.path = os.path.join(model_dir, LOCK_FILE)
    self.held = False

  def acquire(self) -> None:
    os.makedirs(self.model_dir, exist_ok=True)
    content = json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                          'started': datetime.datetime.now(datetime.timezone.utc).isoformat(
                              timespec='seconds')})
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = read_holder(self.model_dir)
        if holder is None:
          continue                       # released meanwhile: try again
        if holder and is_stale(holder):
          os.remove(self.path)            # its owner died; O_EXCL arbitrates between takers
          continue
        who = (f'pid {holder.get("pid")} on {holder.get("host")} since {holder.get("started")}'
               if holder else 'an unknown run (unreadable lock)')
        raise LockedError(f'{self.model_dir} is in use by {who}; wait for it to finish, or '
                          f'delete {self.path} if that run is gone') from None
      with os.fdopen(fd, 'w') as f:
        f.write(content)
      self.held = True
      return
    raise LockedError(f'{self.model_dir}: could not take {self.path} (another run races for it)')

  def release(self) -> None:
    if self.held:
      holder = read_holder(self.model_dir)
      if holder and holder.get('pid') == os.getpid() and holder.get('host') == socket.gethostname():
        os.remove(self.path)
      self.held = False

  def __enter__(self) -> 'RunLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
