"""Saving and restoring a prompt-tuning run: Orbax checkpoints plus numpy prompt snapshots,
each with a checksum verified on restore.

`MODEL_DIR/checkpoint_<step>/` (Orbax, written to a temporary directory and renamed when
complete, so a killed run never leaves a partial step) holds `state` (step, prompt, optimizer
state, RNG, best prompt so far) and `meta` (JSON: batches consumed, best step and score, elapsed
training time). The frozen model is not saved: it is reloaded from its own checkpoint.
`MODEL_DIR/checksums/checkpoint_<step>.json` holds the SHA-256 of every file of that step,
written once the asynchronous save has committed. A step whose files no longer match is corrupt:
it is reported, moved to `MODEL_DIR/corrupt/` (never deleted) and the newest intact step is
used instead; rotation (`keep`) never removes the newest intact step. With several processes,
process 0 alone verifies and moves steps; the others wait for its answer, so every process
restores the same step (`decided_on_process_0`).

`MODEL_DIR/numpy_checkpoints/checkpoint_<step>/encoder.prompt.prompt.prompt` holds the prompt
alone as NPY, the google-research/prompt-tuning layout (file name without `.npy`), with its
SHA-256 beside it (`.sha256`); these snapshots are never deleted.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from prompt_transfer_jax import files
from prompt_transfer_jax.models.prompt import T5X_PROMPT_NAME

STEP_PREFIX = 'checkpoint'
NUMPY_DIR = 'numpy_checkpoints'
CHECKSUM_DIR = 'checksums'
CORRUPT_DIR = 'corrupt'
_STEP_DIR = re.compile(rf'^{STEP_PREFIX}_(\d+)$')


class CorruptCheckpointError(ValueError):
  """A saved checkpoint or prompt snapshot no longer matches its checksum."""


def sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def tree_checksums(directory: str) -> dict[str, str]:
  """`{relative path: sha256}` of every file under `directory`."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      out[os.path.relpath(path, directory)] = sha256_file(path)
  return dict(sorted(out.items()))


def step_dir(model_dir: str, step: int) -> str:
  return os.path.join(model_dir, f'{STEP_PREFIX}_{step}')


def checksum_path(model_dir: str, step: int) -> str:
  return os.path.join(model_dir, CHECKSUM_DIR, f'{STEP_PREFIX}_{step}.json')


def committed_steps(model_dir: str) -> list[int]:
  """Steps of the committed Orbax checkpoints in `model_dir` (temporary directories excluded)."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(int(m.group(1)) for m in map(_STEP_DIR.match, os.listdir(model_dir))
                if m and os.path.isdir(os.path.join(model_dir, m.group(0))))


def write_checksum(model_dir: str, step: int) -> None:
  """Records the checksums of committed step `step` (process 0 only)."""
  if jax.process_index() == 0:
    files.write_json(checksum_path(model_dir, step), tree_checksums(step_dir(model_dir, step)))


def verify_step(model_dir: str, step: int) -> Optional[str]:
  """None if step `step` matches its checksums, 'unverified' if it has none, else the problem."""
  path = checksum_path(model_dir, step)
  if not os.path.exists(path):
    return 'unverified'
  try:
    expected = files.read_json(path, 'checkpoint checksum file')
  except ValueError as e:
    return str(e)
  actual = tree_checksums(step_dir(model_dir, step))
  missing = sorted(set(expected) - set(actual))
  changed = sorted(k for k in expected if k in actual and actual[k] != expected[k])
  if missing or changed:
    parts = ([f'missing {", ".join(missing[:3])}'] if missing else []) + (
        [f'changed {", ".join(changed[:3])}'] if changed else [])
    return f'{step_dir(model_dir, step)} does not match its checksums ({"; ".join(parts)})'
  return None


def newest_usable_step(model_dir: str, steps: Optional[Iterable[int]] = None
                       ) -> tuple[Optional[int], list[str]]:
  """(newest step that is intact or has no checksum yet, problems of the newer corrupt steps)."""
  problems = []
  for step in sorted(committed_steps(model_dir) if steps is None else steps, reverse=True):
    problem = verify_step(model_dir, step)
    if problem in (None, 'unverified'):
      return step, problems
    problems.append(problem)
  return None, problems


def decided_on_process_0(decide: Callable[[], Optional[int]]) -> Optional[int]:
  """`decide()` run on process 0 only, its answer (a step or None) on every process.

  Several processes share MODEL_DIR: were each to verify the steps itself while process 0 moves
  a corrupt one away, they could disagree on the step to restore. The broadcast is also the
  sync point the others wait at until process 0 is done.
  """
  if jax.process_count() == 1:
    return decide()
  from jax.experimental import multihost_utils
  step = decide() if jax.process_index() == 0 else None
  step = int(multihost_utils.broadcast_one_to_all(np.int32(-1 if step is None else step)))
  return None if step < 0 else step


def steps_to_remove(steps: Sequence[int], intact: Iterable[int], keep: int) -> list[int]:
  """Rotation: all but the newest `keep` steps, never the newest intact step."""
  steps = sorted(steps)
  intact = sorted(set(intact) & set(steps))
  protected = set(steps[-keep:]) | set(intact[-1:])
  return [s for s in steps if s not in protected]


def quarantine(model_dir: str, step: int) -> str:
  """Moves a corrupt step (and its checksum file) to MODEL_DIR/corrupt/; returns where."""
  target = os.path.join(model_dir, CORRUPT_DIR, f'{STEP_PREFIX}_{step}')
  if os.path.exists(target):
    target += f'-{int(time.time())}'
  os.makedirs(os.path.dirname(target), exist_ok=True)
  os.replace(step_dir(model_dir, step), target)
  if os.path.exists(checksum_path(model_dir, step)):
    os.replace(checksum_path(model_dir, step), target + '.json')
  return target


# What a run leaves that is worth keeping even when it failed (the failure handler never deletes
# a MODEL_DIR holding any of it): records, the best prompt, TensorBoard event directories.
WORK_FILES = ('metrics.json', 'best_prompt.npy')
WORK_DIRS = ('train', 'training_eval', NUMPY_DIR)


def work_in(model_dir: str, work_dirs: Sequence[str] = ()) -> list[str]:
  """The committed work in `model_dir` (checkpoints, snapshots, records, events and any of
  `work_dirs`); a failure handler may remove a directory it created only when this is empty."""
  if not os.path.isdir(model_dir):
    return []
  found = [f'{STEP_PREFIX}_{s}' for s in committed_steps(model_dir)]
  found += [name for name in WORK_FILES if os.path.exists(os.path.join(model_dir, name))]
  for name in WORK_DIRS + tuple(work_dirs):
    path = os.path.join(model_dir, name)
    if os.path.isdir(path) and any(names for _, _, names in os.walk(path)):
      found.append(name)
  return found


def clean_up_failed(model_dir: str, ckpt: Optional['Checkpointer'], created: bool,
                    work_dirs: Sequence[str] = ()) -> None:
  """After a failure: lets a pending save finish, then removes MODEL_DIR only if this run created
  it and it holds no committed work (`work_in`: a save that failed, e.g. on a full disk, leaves
  earlier checkpoints, snapshots, records and events in place)."""
  if ckpt is not None:
    try:
      ckpt.wait()
    except Exception as e:  # noqa: BLE001  (the run's own error is the one reported)
      logging.warning('while stopping after a failure, the pending checkpoint failed too: %s', e)
  if created and jax.process_index() == 0 and not work_in(model_dir, work_dirs):
    shutil.rmtree(model_dir, ignore_errors=True)


def numpy_prompt_path(model_dir: str, step: int) -> str:
  return os.path.join(model_dir, NUMPY_DIR, f'{STEP_PREFIX}_{step}', T5X_PROMPT_NAME)


def save_numpy_prompt(model_dir: str, step: int, prompt) -> Optional[str]:
  """Writes the prompt snapshot of `step` and its checksum (process 0 only; temporary directory,
  then rename; the temporary is removed on failure)."""
  if jax.process_index() != 0:
    return None
  final = os.path.dirname(numpy_prompt_path(model_dir, step))
  os.makedirs(os.path.dirname(final), exist_ok=True)
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(prompt, np.float32), allow_pickle=False)
  data = buffer.getvalue()
  tmp = files.atomic_path(final)
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    with open(os.path.join(tmp, T5X_PROMPT_NAME), 'wb') as f:
      f.write(data)
    with open(os.path.join(tmp, T5X_PROMPT_NAME + '.sha256'), 'w') as f:
      f.write(hashlib.sha256(data).hexdigest() + '\n')
    if os.path.exists(final):
      shutil.rmtree(final)
    os.replace(tmp, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return os.path.join(final, T5X_PROMPT_NAME)


def read_numpy_prompt(model_dir: str, step: int) -> np.ndarray:
  """The prompt snapshot of `step`, verified against its checksum when it has one."""
  path = numpy_prompt_path(model_dir, step)
  if os.path.exists(path + '.sha256'):
    with open(path + '.sha256') as f:
      expected = f.read().strip()
    if sha256_file(path) != expected:
      raise CorruptCheckpointError(f'{path} does not match its checksum {path}.sha256')
  return files.read_prompt(path)


class Checkpointer:
  """Orbax checkpoints of the train state under `model_dir`, checksummed; keeps the newest
  `keep` and always the newest intact one."""

  def __init__(self, model_dir: str, keep: int = 1, asynchronous: bool = True):
    if keep < 1:
      raise ValueError(f'keep_checkpoints must be >= 1, got {keep}')
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True, step_prefix=STEP_PREFIX,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=asynchronous)
    self.model_dir = model_dir
    self.keep = keep
    self.problems: list[str] = []
    self._pending: Optional[int] = None
    self._manager = ocp.CheckpointManager(os.path.abspath(model_dir), options=options)

  def latest_step(self) -> Optional[int]:
    """The newest usable step; newer corrupt steps are reported and moved to MODEL_DIR/corrupt/
    (by process 0, while the others wait for its answer: every process restores the same step).
    """
    self._finalize()

    def decide() -> Optional[int]:
      step, problems = newest_usable_step(self.model_dir, self._manager.all_steps())
      for problem in problems:
        logging.warning('corrupt checkpoint skipped: %s', problem)
      for bad in [s for s in self._manager.all_steps() if problems and (step is None or s > step)]:
        quarantine(self.model_dir, bad)
      self.problems += problems
      return step

    step = decided_on_process_0(decide)
    if self.problems or jax.process_count() > 1:
      self._manager.reload()
    return step

  def save(self, step: int, state: dict, meta: dict) -> None:
    self._finalize()
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
    self._pending = step

  def restore(self, step: int, abstract_state: Any) -> tuple[dict, dict]:
    """(state with the shardings of `abstract_state`, meta) of checkpoint `step`, verified."""
    problem = verify_step(self.model_dir, step)
    if problem not in (None, 'unverified'):
      raise CorruptCheckpointError(problem)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def _finalize(self) -> None:
    """Once the pending save has committed: its checksums, then rotation."""
    if self._pending is None:
      return
    step, self._pending = self._pending, None
    self._manager.wait_until_finished()
    try:
      write_checksum(self.model_dir, step)
    except OSError as e:   # e.g. a full disk: the step stays usable, unverified
      logging.warning('could not write the checksums of checkpoint %d: %s', step, e)
    steps = self._manager.all_steps()
    # The step just committed counts as intact on every process (process 0 may still be writing
    # its checksums), so all processes take the same decisions (Orbax deletes collectively).
    intact = [s for s in steps if s == step or verify_step(self.model_dir, s) is None]
    for old in steps_to_remove(steps, intact, self.keep):
      self._manager.delete(old)
      if jax.process_index() == 0 and os.path.exists(checksum_path(self.model_dir, old)):
        os.remove(checksum_path(self.model_dir, old))

  def wait(self) -> None:
    self._finalize()

  def close(self) -> None:
    self._finalize()
    self._manager.close()


def abstract_of(tree) -> Any:
  """ShapeDtypeStructs (with shardings) of a tree of arrays, the target of a restore."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
