"""The soft prompt: one `[P, E]` array, its initializers and its file format.

The prompt is kept apart from the frozen model's parameters: training differentiates only this
array, and evaluation can feed any array (or a stack of them) to the frozen model.
It is replicated on every device (`partitioning.PROMPT_RULES`), as in google-research/prompt-tuning.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from prompt_transfer_jax import files

# Name of the prompt parameter in T5X / prompt-tuning checkpoints and numpy_checkpoints.
T5X_PROMPT_NAME = 'encoder.prompt.prompt.prompt'

Initializer = Callable[[jax.Array, tuple], jax.Array]


def normal(stddev: float = 1.0) -> Initializer:
  """N(0, stddev^2); the paper uses 1.0 for T5 and 0.02 for RoBERTa."""
  return nn.initializers.normal(stddev)


def uniform(scale: float = 0.5) -> Initializer:
  """U(-scale, scale) as in Lester et al. (T5X `prompt_init` default scale 0.5)."""
  def init(rng, shape, dtype=jnp.float32):
    return jax.random.uniform(rng, shape, dtype, -scale, scale)
  return init


def from_sampled_vocab(embeddings, population_size: int = 5000) -> Initializer:
  """Rows of the embedding table drawn without replacement from the first `population_size`."""
  table = np.asarray(embeddings)

  def init(rng, shape, dtype=jnp.float32):
    population = min(population_size, table.shape[0])
    replace = shape[0] > population
    idx = jax.random.choice(rng, population, (shape[0],), replace=replace)
    return jnp.asarray(table[np.asarray(idx)], dtype)
  return init


def from_class_labels(embeddings, label_token_ids: Sequence[Sequence[int]],
                      fallback: Optional[Initializer] = None) -> Initializer:
  """Row i = mean embedding of label i's tokens; remaining rows from `fallback` (sampled vocab)."""
  table = np.asarray(embeddings)
  fallback = fallback or from_sampled_vocab(table)

  def init(rng, shape, dtype=jnp.float32):
    out = np.array(fallback(rng, shape, jnp.float32))
    for i, ids in enumerate(list(label_token_ids)[:shape[0]]):
      if len(ids) == 0:
        raise ValueError(f'class label {i} has no tokens')
      out[i] = table[np.asarray(ids)].mean(axis=0)
    return jnp.asarray(out, dtype)
  return init


def init_prompt(init: Initializer, length: int, embed_dim: int, seed: int = 0) -> np.ndarray:
  """Materializes an initializer into a float32 `[length, embed_dim]` numpy prompt."""
  return np.asarray(init(jax.random.PRNGKey(seed), (length, embed_dim), jnp.float32), np.float32)


def load_prompt(path: str, shape: Optional[tuple] = None) -> np.ndarray:
  """Reads a `.npy` prompt (local or gs://) without unpickling; see `files.read_prompt`."""
  return files.read_prompt(path, shape)


def save_prompt(path: str, prompt) -> None:
  """Writes a float32 `.npy` atomically (temp name, then rename)."""
  files.save_prompt(path, prompt)
