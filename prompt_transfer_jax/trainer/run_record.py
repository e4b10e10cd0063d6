"""The record of a run: every evaluation (step, time, metric) and the best prompt so far.

`MODEL_DIR/metrics.json` holds the task, the metric, the best step and score and the full
history `[{step, elapsed_s, train_s, wall_time, score, tasks: {task: {metric: value}}, ...}]`;
convergence-speed comparisons between runs read it. `MODEL_DIR/best_prompt.npy` is the prompt
of the best step. Both are rewritten atomically after every evaluation (process 0 only).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import numpy as np

from prompt_transfer_jax.models import prompt as prompt_lib

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
      with open(self.path) as f:
        self.history = [h for h in json.load(f).get('history', []) if h['step'] <= step]
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

  def save(self, best_prompt: Optional[np.ndarray] = None) -> None:
    if jax.process_index() != 0:
      return
    if best_prompt is not None:
      prompt_lib.save_prompt(self.best_prompt_path, best_prompt)
    tmp = f'{self.path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
      json.dump(self.to_json(), f, indent=1)
    os.replace(tmp, self.path)
