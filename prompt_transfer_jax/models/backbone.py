"""The small interface through which trainer, evaluator, extractor and projector see a backbone.

Everything above the model layer works on these functions of (frozen params, prompt, batch):
no `if model == ...` branches. A batch is a dict of int32 arrays named as SeqIO's EncDec
feature converter names them (`encoder_input_tokens`, `decoder_input_tokens`,
`decoder_target_tokens`, `decoder_loss_weights`); an MLM backbone reads `encoder_input_tokens`
and `label` (the class index).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Protocol

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_transfer_jax.config import T5Config
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


@dataclasses.dataclass(frozen=True)
class T5Backbone:
  """T5 seen through the backbone interface; `prompt` is `[P, E]` or `[B, P, E]`."""
  config: T5Config

  @property
  def model(self) -> t5_lib.T5:
    return t5_lib.T5(self.config)

  @property
  def embed_dim(self) -> int:
    return self.config.emb_dim

  @property
  def ffn_dim(self) -> int:
    return self.config.mlp_dim

  def embedding_table(self, params):
    return params['token_embedder']['embedding']

  def logits(self, params, prompt, batch, dropout_rng=None):
    rngs = {'dropout': dropout_rng} if dropout_rng is not None else {}
    return self.model.apply({'params': params}, batch['encoder_input_tokens'],
                            batch['decoder_input_tokens'], prompt=prompt,
                            enable_dropout=dropout_rng is not None, rngs=rngs)

  def token_loss(self, params, prompt, batch, dropout_rng=None, z_loss: float = 0.0,
                 label_smoothing: float = 0.0):
    """(summed loss per example [B], number of target tokens per example [B])."""
    logits = self.logits(params, prompt, batch, dropout_rng)
    targets = batch['decoder_target_tokens']
    weights = batch.get('decoder_loss_weights', (targets > 0).astype(jnp.float32))
    return cross_entropy(logits, targets, weights, z_loss, label_smoothing)

  def encode(self, params, prompt, encoder_input_tokens):
    return self.model.apply({'params': params}, encoder_input_tokens, prompt=prompt,
                            method=t5_lib.T5.encode)

  def decode(self, params, encoded, mask, decoder_input_tokens):
    return self.model.apply({'params': params}, encoded, mask, decoder_input_tokens,
                            method=t5_lib.T5.decode)

  def score_labels(self, params, prompt, batch, label_targets):
    """Rank classification: log p(label_k | input) for K label sequences `[K, T]` -> `[B, K]`.

    The encoder runs once; each label sequence is scored teacher-forced (pads 0 ignored).
    """
    encoded, mask = self.encode(params, prompt, batch['encoder_input_tokens'])
    b = encoded.shape[0]
    k = label_targets.shape[0]
    targets = jnp.broadcast_to(label_targets[None], (b,) + label_targets.shape).reshape(b * k, -1)
    rep = lambda t: jnp.repeat(t, k, axis=0)
    logits = self.decode(params, rep(encoded), rep(mask), t5_lib.shift_right(targets))
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_lp = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(token_lp * (targets > 0), axis=-1).reshape(b, k)

  def greedy_decode(self, params, prompt, encoder_input_tokens, max_length: int,
                    eos_id: int = 1):
    """Greedy decoding with the encoder run once; returns `[B, max_length]` ids (0 after EOS)."""
    encoded, mask = self.encode(params, prompt, encoder_input_tokens)
    b = encoded.shape[0]

    def step(i, tokens):
      logits = self.decode(params, encoded, mask, t5_lib.shift_right(tokens))
      nxt = jnp.argmax(logits[:, i], axis=-1).astype(tokens.dtype)
      done = jnp.any((tokens == eos_id) & (jnp.arange(max_length)[None] < i), axis=1)
      return tokens.at[:, i].set(jnp.where(done, 0, nxt))

    return jax.lax.fori_loop(0, max_length, step, jnp.zeros((b, max_length), jnp.int32))

  def ffn_activations(self, params, prompt, batch, stack: str = 'decoder',
                      kind: str = t5_lib.FFN_PRE_ACTIVATION):
    """FFN activations of every layer of `stack`: `[B, layers, length, mlp_dim]`."""
    if stack not in ('encoder', 'decoder'):
      raise ValueError(f"stack must be 'encoder' or 'decoder', got {stack!r}")
    _, state = self.model.apply({'params': params}, batch['encoder_input_tokens'],
                                batch['decoder_input_tokens'], prompt=prompt,
                                mutable=['intermediates'])
    layers = state['intermediates'][stack]
    n = self.config.num_encoder_layers if stack == 'encoder' else self.config.num_decoder_layers
    return jnp.stack([layers[f'layers_{i}']['mlp'][kind][0] for i in range(n)], axis=1)
