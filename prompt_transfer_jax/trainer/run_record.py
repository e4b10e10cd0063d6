"""The record of a run: every evaluation (step, time, metric) and the best prompt so far.

`MODEL_DIR/metrics.json` holds the task, the metric, the best step and score and the full
history `[{step, elapsed_s, train_s, wall_time, score, tasks: {task: {metric: value}}, ...}]`;
convergence-speed comparisons between runs read it. `MODEL_DIR/best_prompt.npy` is the prompt
of the best step, its SHA-256 recorded in metrics.json (`best_prompt_sha256`). Both are
rewritten atomically after every evaluation (process 0 only). An intact best_prompt.npy is never
replaced by a prompt with a lower score for a step the record keeps, nor by a non-finite one.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Optional

import jax
import numpy as np

from prompt_transfer_jax import files

METRICS_FILE = 'metrics.json'
BEST_PROMPT_FILE = 'best_prompt.npy'


class RunRecord:
  """Evaluation history and best step of one run (higher scores are better)."""

  def __init__(self, model_dir: str, task: str, metric: str):
    self.model_dir = model_dir
    self.task = task
    self.metric = metric
    self.history: list[dict] = []
    self.best_step: Optional[int] = None
    self.best_score: Optional[float] = None

  @property
  def path(self) -> str:
    return os.path.join(self.model_dir, METRICS_FILE)

  @property
  def best_prompt_path(self) -> str:
    return os.path.join(self.model_dir, BEST_PROMPT_FILE)

  def resume(self, step: int, best_step: Optional[int], best_score: Optional[float]) -> None:
    """Reloads the history up to `step` (later entries came from a run that was cut short)."""
    if os.path.exists(self.path):
      history = files.read_json(self.path, 'run record').get('history', [])
      if not all(isinstance(h, dict) and isinstance(h.get('step'), int) for h in history):
        raise ValueError(f'{self.path}: malformed history (every entry needs an integer step)')
      self.history = [h for h in history if h['step'] <= step]
    self.best_step, self.best_score = best_step, best_score

  def add(self, entry: dict) -> bool:
    """Appends an evaluation; True if it is the new best."""
    self.history.append(entry)
    if self.best_score is None or entry['score'] > self.best_score:
      self.best_step, self.best_score = entry['step'], float(entry['score'])
      return True
    return False

  def to_json(self) -> dict:
    return {'task': self.task, 'metric': self.metric, 'best_step': self.best_step,
            'best_score': self.best_score, 'history': self.history}

  def _keeps_saved_best(self) -> bool:
    """True if MODEL_DIR holds an intact best prompt that scored higher at a step still in the
    history (so replacing it would lose the better prompt)."""
    try:
      saved = files.read_json(self.path, 'run record')
      with open(self.best_prompt_path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    except (OSError, ValueError):
      return False
    score, step = saved.get('best_score'), saved.get('best_step')
    last = self.history[-1]['step'] if self.history else -1
    return (digest == saved.get('best_prompt_sha256') and isinstance(score, (int, float)) and
            isinstance(step, int) and step <= last and
            (self.best_score is None or score > self.best_score))

  def save(self, best_prompt: Optional[np.ndarray] = None) -> None:
    if jax.process_index() != 0:
      return
    record = self.to_json()
    saved = files.read_json(self.path, 'run record') if os.path.exists(self.path) else {}
    record['best_prompt_sha256'] = saved.get('best_prompt_sha256')
    if best_prompt is not None:
      value = files.check_prompt(np.asarray(best_prompt), 'the best prompt')
      if self._keeps_saved_best():
        logging.warning('%s: kept the saved best prompt (score %s at step %s), better than the '
                        'new one (score %s)', self.best_prompt_path, saved.get('best_score'),
                        saved.get('best_step'), self.best_score)
        record.update(best_step=saved['best_step'], best_score=saved['best_score'])
      else:
        files.save_prompt(self.best_prompt_path, value)
        with open(self.best_prompt_path, 'rb') as f:
          record['best_prompt_sha256'] = hashlib.sha256(f.read()).hexdigest()
    files.write_json(self.path, record)


def verify_best_prompt(model_dir: str) -> Optional[str]:
  """None if MODEL_DIR/best_prompt.npy matches the checksum in metrics.json, else the problem."""
  path = os.path.join(model_dir, BEST_PROMPT_FILE)
  expected = files.read_json(os.path.join(model_dir, METRICS_FILE), 'run record').get(
      'best_prompt_sha256')
  if expected is None:
    return f'{path}: no checksum recorded'
  with open(path, 'rb') as f:
    if hashlib.sha256(f.read()).hexdigest() != expected:
      return f'{path} does not match best_prompt_sha256 in {METRICS_FILE}'
  return None
