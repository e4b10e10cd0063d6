"""Saving and restoring a prompt-tuning run: Orbax checkpoints plus numpy prompt snapshots.

`MODEL_DIR/checkpoint_<step>/` (Orbax, written to a temporary directory and renamed when
complete, so a killed run never leaves a partial step) holds `state` (step, prompt, optimizer
state, RNG, best prompt so far) and `meta` (JSON: batches consumed, best step and score, elapsed
training time). The frozen model is not saved: it is reloaded from its own checkpoint.

`MODEL_DIR/numpy_checkpoints/checkpoint_<step>/encoder.prompt.prompt.prompt` holds the prompt
alone as NPY, the google-research/prompt-tuning layout (file name without `.npy`); these
snapshots are never deleted.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from prompt_transfer_jax.models.prompt import T5X_PROMPT_NAME

STEP_PREFIX = 'checkpoint'
NUMPY_DIR = 'numpy_checkpoints'


def numpy_prompt_path(model_dir: str, step: int) -> str:
  return os.path.join(model_dir, NUMPY_DIR, f'{STEP_PREFIX}_{step}', T5X_PROMPT_NAME)


def save_numpy_prompt(model_dir: str, step: int, prompt) -> Optional[str]:
  """Writes the prompt snapshot of `step` (process 0 only; temp directory, then rename)."""
  if jax.process_index() != 0:
    return None
  final = os.path.dirname(numpy_prompt_path(model_dir, step))
  tmp = f'{final}.tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  with open(os.path.join(tmp, T5X_PROMPT_NAME), 'wb') as f:
    np.save(f, np.asarray(prompt, np.float32), allow_pickle=False)
  if os.path.exists(final):
    shutil.rmtree(final)
  os.replace(tmp, final)
  return os.path.join(final, T5X_PROMPT_NAME)


class Checkpointer:
  """Orbax checkpoints of the train state under `model_dir`; keeps the newest `keep`."""

  def __init__(self, model_dir: str, keep: int = 1, asynchronous: bool = True):
    if keep < 1:
      raise ValueError(f'keep_checkpoints must be >= 1, got {keep}')
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, step_prefix=STEP_PREFIX,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=asynchronous)
    self.model_dir = model_dir
    self._manager = ocp.CheckpointManager(os.path.abspath(model_dir), options=options)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: dict, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[dict, dict]:
    """(state with the shardings of `abstract_state`, meta) of checkpoint `step`."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_of(tree) -> Any:
  """ShapeDtypeStructs (with shardings) of a tree of arrays, the target of a restore."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
