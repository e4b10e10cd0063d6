"""Preemption: SIGINT / SIGTERM stop the training loop at a step, where it saves and exits.

One process: the loop stops after the step during which the signal arrived. Several processes
(`jax.process_count() > 1`): a signal may reach only some of them (a Ctrl-C on one host, a
maintenance event on one VM), yet all must stop at the same step, or one waits forever in a
collective the others never join. So after every step each process casts a vote (the signal it
received, 0 for none) into a tiny all-reduce (max) dispatched right behind the step and read one
step later, together with that step's metrics, so the host never waits on the device for it.
Every process reads the same votes at the same points of the same program, hence stops at the
same step by construction: a signal received during step k stops all processes at step k + 1.
"""
from __future__ import annotations

import collections
import signal
import sys
import threading
from typing import Callable, NoReturn, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prompt_transfer_jax.partitioning import host
from prompt_transfer_jax.trainer.checkpointing import STEP_PREFIX


class Interrupted(KeyboardInterrupt):
  """The run stopped on SIGINT / SIGTERM (after saving a checkpoint at the current step, when it
  was training); `exit_code` is 128 + the signal number (130, 143)."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum


class _Vote:
  """max over all processes of one int per process, as a global array read later."""

  def __init__(self):
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ('processes',))
    self._sharding = NamedSharding(mesh, PartitionSpec('processes'))
    self._shape = (len(devices),)
    self._local = [d for d in devices if d.process_index == jax.process_index()]
    self._max = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, PartitionSpec()))

  def cast(self, value: int) -> jax.Array:
    shards = [jax.device_put(np.array([value], np.int32), d) for d in self._local]
    return self._max(jax.make_array_from_single_device_arrays(self._shape, self._sharding, shards))


class StopSignals:
  """SIGINT / SIGTERM handlers for one run (main thread only).

  Until `deferred` is set (setup, compilation) a signal raises `Interrupted` at once, with one
  process; with several, every signal is recorded from the start (a process leaving alone would
  leave the others waiting), and the first `poll` of the loop stops them all. Once deferred, a
  signal is only recorded (`received`) and `poll` says when to stop; a second signal raises at
  once (this process alone: the way out of a stop that hangs).
  """

  def __init__(self, process_count: Optional[int] = None):
    process_count = jax.process_count() if process_count is None else process_count
    self.received: Optional[int] = None
    self._vote = _Vote() if process_count > 1 else None
    self.deferred = self._vote is not None
    self._pending: collections.deque = collections.deque()
    self._saved = {}

  def _handle(self, signum, frame):
    del frame
    if self.deferred and self.received is None:
      self.received = signum
      if self._vote is not None:
        sys.stderr.write(f'\nptj: {signal.Signals(signum).name} received: every process stops at '
                         'the next step they agree on and saves it (a second signal stops this '
                         'process at once)\n')
      return
    raise Interrupted(f'interrupted by {signal.Signals(signum).name} before any training step was '
                      'saved; run the same command to start again', signum)

  def poll(self, wait: bool = False) -> Optional[int]:
    """The signal to stop on now, or None; called at the same points by every process (after each
    dispatched step; with `wait`, at a boundary of the loop, reading every vote cast so far)."""
    if self._vote is None:
      return self.received
    self._pending.append(self._vote.cast(self.received or 0))
    while len(self._pending) > (0 if wait else 1):
      signum = int(host(self._pending.popleft()))
      if signum:
        self._pending.clear()
        return signum
    return None

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._saved[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._saved.items():
      signal.signal(signum, handler)


def save_and_stop(signum: int, step: int, saved_step: Optional[int],
                  save: Callable[[int], None], wait: Callable[[], None]) -> NoReturn:
  """The stop of a training loop on `signum`: saves a checkpoint at `step` (unless `saved_step`
  is that step), waits for it to commit, raises `Interrupted` (a resume continues from there)."""
  name = signal.Signals(signum).name
  if step == 0:
    raise Interrupted(f'interrupted by {name} before the first step; run the same command to '
                      'start again', signum)
  if saved_step != step:
    save(step)
  wait()
  raise Interrupted(f'interrupted by {name} at step {step}; saved {STEP_PREFIX}_{step}; run the '
                    'same command to resume', signum)
