"""The small interface through which trainer, evaluator, extractor and projector see a backbone.

Everything above the model layer works on these functions of (frozen params, prompt, batch):
no `if model == ...` branches. A batch is a dict of int32 arrays named as SeqIO's EncDec
feature converter names them (`encoder_input_tokens`, `decoder_input_tokens`,
`decoder_target_tokens`, `decoder_loss_weights`); an MLM backbone reads `encoder_input_tokens`
and `label` (the class index). Optional capabilities are methods a backbone may lack and
callers test with `hasattr` (see `Generator`): RoBERTa cannot generate.
"""
from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp

from prompt_transfer_jax.models import t5 as t5_lib


class Backbone(Protocol):
  """What every backbone offers to the layers above it."""
  embed_dim: int
  ffn_dim: int

  def embedding_table(self, params) -> jax.Array: ...

  def token_loss(self, params, prompt, batch, dropout_rng=None, z_loss: float = 0.0,
                 label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]: ...

  def score_labels(self, params, prompt, batch, label_targets) -> jax.Array: ...

  def ffn_activations(self, params, prompt, batch, stack: str = 'decoder',
                      kind: str = t5_lib.FFN_PRE_ACTIVATION) -> jax.Array: ...


class Generator(Protocol):
  """The generation capability (T5): incremental decoding with a key/value cache.

  Each returns `[B, max_length]` ids, EOS kept and 0 after it; `min_length` forbids EOS at
  earlier steps. `first_token_scores` is the 1.0 code's classification rule.
  """

  def greedy_decode(self, params, prompt, encoder_input_tokens, max_length: int, eos_id: int = 1,
                    min_length: int = 0) -> jax.Array: ...

  def sample(self, params, prompt, encoder_input_tokens, max_length: int, rng, temperature: float,
             eos_id: int = 1, min_length: int = 0) -> jax.Array: ...

  def beam_search(self, params, prompt, encoder_input_tokens, max_length: int, eos_id: int = 1,
                  beam_size: int = 4, alpha: float = 0.6, min_length: int = 0) -> jax.Array: ...

  def first_token_scores(self, params, prompt, batch, label_targets) -> jax.Array: ...


def cross_entropy(logits, targets, weights, z_loss: float = 0.0, label_smoothing: float = 0.0):
  """Per-example summed token cross-entropy (+ z-loss), T5X's `compute_weighted_cross_entropy`."""
  vocab = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  confidence = 1.0 - label_smoothing
  low = (1.0 - confidence) / (vocab - 1)
  soft = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_probs = logits - log_z[..., None]
  loss = -jnp.sum(soft * log_probs, axis=-1)
  if label_smoothing > 0:
    normalizing = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
    loss = loss - normalizing
  loss = loss + z_loss * jnp.square(log_z)
  weights = weights.astype(jnp.float32)
  return jnp.sum(loss * weights, axis=-1), jnp.sum(weights, axis=-1)
