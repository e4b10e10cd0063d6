"""How a run's prompt starts: gin-selectable initializers bound to `PROMPT_INIT`.

Each factory returns `init(frozen_model, task_names, length, seed) -> float32 [length, E]`. The
seed is the run's `prompt_seed`, independent of the task, so every task of a backbone starts from
the same prompt (the paper's setup) unless told otherwise.
"""
from __future__ import annotations

from typing import Callable, Sequence

import gin
import numpy as np

from prompt_transfer_jax.models import prompt as prompt_lib
from prompt_transfer_jax.trainer.gin_utils import require

PromptInit = Callable[..., np.ndarray]


def _materialize(initializer, frozen, length: int, seed: int) -> np.ndarray:
  return prompt_lib.init_prompt(initializer, length, frozen.embed_dim, seed)


@gin.configurable(module='ptj')
def uniform_init(scale: float = 0.5) -> PromptInit:
  """U(-scale, scale), Lester et al.'s default (scale 0.5)."""
  return lambda frozen, task_names, length, seed: _materialize(
      prompt_lib.uniform(scale), frozen, length, seed)


@gin.configurable(module='ptj')
def normal_init(stddev: float = 1.0) -> PromptInit:
  """N(0, stddev^2): the paper's T5 prompts use 1.0, RoBERTa 0.02."""
  return lambda frozen, task_names, length, seed: _materialize(
      prompt_lib.normal(stddev), frozen, length, seed)


@gin.configurable(module='ptj')
def sampled_vocab_init(population_size: int = 5000) -> PromptInit:
  """Rows of the frozen embedding table, drawn from its first `population_size` rows."""
  return lambda frozen, task_names, length, seed: _materialize(
      prompt_lib.from_sampled_vocab(frozen.embedding_table(), population_size), frozen, length,
      seed)


def _label_word_ids(task_names: Sequence[str]) -> list[list[int]]:
  """Token ids of every task's label words (EOS and padding dropped), first occurrence order."""
  from prompt_transfer_jax import tasks
  from prompt_transfer_jax.trainer import data as data_lib
  words: list[list[int]] = []
  for name in task_names:
    info = tasks.get_task_info(name)
    if not info.is_classification:
      continue
    eos = data_lib.provider(name).output_features['targets'].vocabulary.eos_id
    for row in tasks.label_targets(name):
      ids = [int(i) for i in row if i != 0 and i != eos] or [int(row[0])]
      if ids not in words:
        words.append(ids)
  return words


@gin.configurable(module='ptj')
def class_labels_init(population_size: int = 5000) -> PromptInit:
  """Row i = mean embedding of label word i's tokens; other rows sampled from the vocabulary."""
  def init(frozen, task_names, length, seed):
    table = frozen.embedding_table()
    words = _label_word_ids(task_names)
    if not words:
      raise ValueError(f'class_labels_init: tasks {list(task_names)} have no label words')
    return _materialize(prompt_lib.from_class_labels(
        table, words, prompt_lib.from_sampled_vocab(table, population_size)), frozen, length, seed)
  return init


@gin.configurable(module='ptj')
def file_init(path: str = gin.REQUIRED) -> PromptInit:
  """A prompt saved as `.npy` (e.g. another task's prompt: transfer by initialization)."""
  def init(frozen, task_names, length, seed):
    require(PROMPT_FILE=path)
    return load_checked(path, length, frozen.embed_dim)
  return init


def load_checked(path: str, length: int, embed_dim: int) -> np.ndarray:
  """Reads a prompt file and checks its shape `[length, embed_dim]` and finiteness."""
  value = prompt_lib.load_prompt(path)
  if value.shape != (length, embed_dim):
    raise ValueError(f'{path}: prompt has shape {value.shape}, expected ({length}, {embed_dim}) '
                     '(PROMPT_LENGTH, model embedding size)')
  if not np.all(np.isfinite(value)):
    raise ValueError(f'{path}: prompt contains NaN or infinite values')
  return value
