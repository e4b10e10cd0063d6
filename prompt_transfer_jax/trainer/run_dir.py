"""A training run's hold on its MODEL_DIR (`ptj train`, `ptj project train`).

`hold(model_dir)` takes the run lock on process 0 (a second run is refused before anything is
written), installs the SIGINT / SIGTERM handlers (`preemption`), and on any failure lets the
pending checkpoint finish and removes MODEL_DIR only if this run created it and it holds no
committed work (`checkpointing.clean_up_failed`); the checkpointer is closed and the lock released
on every way out.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Sequence

import jax

from prompt_transfer_jax.trainer import checkpointing
from prompt_transfer_jax.trainer import preemption
from prompt_transfer_jax.trainer import run_lock


class Run:
  """What `hold` yields: the run's signal handlers and (once opened) its checkpointer."""

  def __init__(self, model_dir: str, signals: preemption.StopSignals):
    self.model_dir, self.signals = model_dir, signals
    self.ckpt: Optional[checkpointing.Checkpointer] = None

  def checkpointer(self, keep: int) -> checkpointing.Checkpointer:
    self.ckpt = checkpointing.Checkpointer(self.model_dir, keep=keep)
    return self.ckpt


@contextlib.contextmanager
def hold(model_dir: str, work_dirs: Sequence[str] = ()) -> Iterator[Run]:
  """The run's lock, signals and clean-up; `work_dirs`: more committed work to keep."""
  created = not os.path.exists(model_dir)
  lock = run_lock.RunLock(model_dir) if jax.process_index() == 0 else None
  if lock is not None:
    lock.acquire()         # a second run on MODEL_DIR stops here (LockedError)
  run = None
  try:
    with preemption.StopSignals() as signals:
      run = Run(model_dir, signals)
      yield run
  except BaseException:
    checkpointing.clean_up_failed(model_dir, run and run.ckpt, created, work_dirs)
    raise
  finally:
    try:
      if run is not None and run.ckpt is not None:
        run.ckpt.close()
    finally:
      if lock is not None:
        lock.release()
