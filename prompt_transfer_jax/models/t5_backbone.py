"""T5 seen through the backbone interface, with incremental (key/value-cached) generation.

Training and rank classification run the decoder teacher-forced over whole sequences. Generation
runs the encoder once, projects its output to every layer's cross-attention keys/values once,
and then one decoder position per step against the self-attention cache (`T5.decode_step`),
driven by the model-agnostic loops of `models/decoding.py`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_transfer_jax.config import T5Config
from prompt_transfer_jax.models import decoding
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.models.backbone import cross_entropy


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

  def first_token_scores(self, params, prompt, batch, label_targets):
    """The 1.0 code's classification: first decoding step's log-probabilities of each label's
    first piece (`label_targets[:, 0]`): `[B, K]`; the argmax is the prediction."""
    encoded, mask = self.encode(params, prompt, batch['encoder_input_tokens'])
    start = jnp.zeros((encoded.shape[0], 1), jnp.int32)
    log_probs = jax.nn.log_softmax(self.decode(params, encoded, mask, start)[:, 0]
                                   .astype(jnp.float32), axis=-1)
    return jnp.take(log_probs, jnp.asarray(label_targets)[:, 0], axis=-1)

  def _decoder_fn(self, params, encoded, mask, max_length: int):
    """(initial cache, `tokens_to_logits`) for incremental decoding of `max_length` steps."""
    model = self.model
    start = jnp.zeros((encoded.shape[0], 1), jnp.int32)
    _, state = model.apply({'params': params}, encoded, mask, start, max_length,
                           method=t5_lib.T5.decode_step, mutable=['cache'])

    def tokens_to_logits(tokens, cache):
      logits, state = model.apply({'params': params, 'cache': cache}, encoded, mask, tokens,
                                  max_length, method=t5_lib.T5.decode_step, mutable=['cache'])
      return logits[:, 0], state['cache']

    return nn.meta.unbox(state['cache']), tokens_to_logits

  def sample(self, params, prompt, encoder_input_tokens, max_length: int, rng,
             temperature: float, eos_id: int = 1, min_length: int = 0):
    """Cached temperature sampling (`temperature=0`: greedy): `[B, max_length]` ids."""
    encoded, mask = self.encode(params, prompt, encoder_input_tokens)
    cache, step = self._decoder_fn(params, encoded, mask, max_length)
    return decoding.temperature_sample(cache, step, encoded.shape[0], max_length, eos_id,
                                       min_length, temperature, rng)

  def greedy_decode(self, params, prompt, encoder_input_tokens, max_length: int,
                    eos_id: int = 1, min_length: int = 0):
    """Cached greedy decoding: `[B, max_length]` ids, EOS kept and 0 after it."""
    return self.sample(params, prompt, encoder_input_tokens, max_length, None, 0.0, eos_id,
                       min_length)

  def beam_search(self, params, prompt, encoder_input_tokens, max_length: int, eos_id: int = 1,
                  beam_size: int = 4, alpha: float = 0.6, min_length: int = 0):
    """Cached beam search (T5X's algorithm): the best beam per example, `[B, max_length]`."""
    encoded, mask = self.encode(params, prompt, encoder_input_tokens)
    rep = lambda t: jnp.repeat(t, beam_size, axis=0)
    cache, step = self._decoder_fn(params, rep(encoded), rep(mask), max_length)
    seqs, _ = decoding.beam_search(cache, step, encoded.shape[0], beam_size, max_length, eos_id,
                                   alpha, min_length)
    return seqs[:, 0]

  def greedy_decode_uncached(self, params, prompt, encoder_input_tokens, max_length: int,
                             eos_id: int = 1, min_length: int = 0):
    """Greedy decoding re-running the decoder over every position at every step (no cache):
    the reference the cached decoder is tested and benchmarked against."""
    encoded, mask = self.encode(params, prompt, encoder_input_tokens)
    b = encoded.shape[0]

    def step(i, tokens):
      logits = self.decode(params, encoded, mask, t5_lib.shift_right(tokens))[:, i]
      logits = decoding.forbid_eos(logits.astype(jnp.float32), i, eos_id, min_length)
      nxt = jnp.argmax(logits, axis=-1).astype(tokens.dtype)
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
