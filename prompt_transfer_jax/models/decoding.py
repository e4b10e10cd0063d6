"""Incremental decoding over a key/value cache: temperature sampling (greedy at 0) and beam search.

Both algorithms are model-agnostic, as in T5X's `decoding.py`: they drive a
`tokens_to_logits(tokens [R, 1], cache) -> (logits [R, V], cache)` function (one decoder step,
the cache advancing by one position) inside a `lax.while_loop` that stops as soon as every row
has produced EOS. Outputs are `[..., max_length]` generated ids without the start token: EOS is
kept and everything after it is 0 (pad). `min_length` forbids EOS at steps `< min_length`.

Beam search is T5X's algorithm: each step keeps the best 2K of the K x V continuations, the K
best that did not end become the live beams (their cache rows gathered), those that ended join
the finished set, scored `log p / ((5 + length) / 6) ** alpha`; the search stops early when no
live beam can beat the worst finished one; a batch row with nothing finished returns its live
beams.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

NEG_INF = -1.0e7

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def forbid_eos(log_probs, step, eos_id: int, min_length: int):
  """`log_probs` `[..., V]` with EOS at NEG_INF while `step < min_length`."""
  if min_length <= 0:
    return log_probs
  is_eos = jnp.arange(log_probs.shape[-1]) == eos_id
  return jnp.where(is_eos & (step < min_length), NEG_INF, log_probs)


def temperature_sample(cache, tokens_to_logits: TokensToLogits, batch_size: int,
                       max_length: int, eos_id: int, min_length: int = 0,
                       temperature: float = 0.0, rng: Optional[jax.Array] = None,
                       start_id: int = 0) -> jax.Array:
  """`[B, max_length]` ids: argmax at `temperature == 0` (greedy), else sampled from
  `softmax(logits / temperature)` with `rng`. Rows stop independently at EOS."""
  if temperature < 0:
    raise ValueError(f'temperature must be >= 0, got {temperature}')
  if temperature > 0 and rng is None:
    raise ValueError('sampling with temperature > 0 needs an rng')
  rng = jax.random.PRNGKey(0) if rng is None else rng

  def cond(state):
    step, _, _, ended, _, _ = state
    return (step < max_length) & ~jnp.all(ended)

  def body(state):
    step, tokens, last, ended, cache, key = state
    logits, cache = tokens_to_logits(last[:, None], cache)
    logits = forbid_eos(logits.astype(jnp.float32), step, eos_id, min_length)
    if temperature == 0:
      nxt = jnp.argmax(logits, axis=-1)
    else:
      key, sub = jax.random.split(key)
      nxt = jax.random.categorical(sub, logits / temperature, axis=-1)
    nxt = jnp.where(ended, 0, nxt).astype(jnp.int32)
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], step, axis=1)
    return step + 1, tokens, nxt, ended | (nxt == eos_id), cache, key

  state = (jnp.array(0, jnp.int32), jnp.zeros((batch_size, max_length), jnp.int32),
           jnp.full((batch_size,), start_id, jnp.int32), jnp.zeros((batch_size,), bool), cache,
           rng)
  return jax.lax.while_loop(cond, body, state)[1]


def brevity_penalty(alpha: float, length):
  """T5X / GNMT length penalty `((5 + length) / 6) ** alpha`."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def _gather_beams(x, indices):
  """`x` `[B, N, ...]`, `indices` `[B, K]` -> `[B, K, ...]`."""
  return jax.vmap(lambda row, idx: row[idx])(x, indices)


def _cache_gather(cache, origins, batch_size: int, beam_size: int):
  """Reorders the cache rows (`[B * K, ...]`, batch-major) to follow the surviving beams."""
  def gather(leaf):
    if leaf.ndim == 0:   # cache_index: shared by every row
      return leaf
    rows = leaf.reshape((batch_size, beam_size) + leaf.shape[1:])
    return _gather_beams(rows, origins).reshape(leaf.shape)
  return jax.tree.map(gather, cache)


def beam_search(cache, tokens_to_logits: TokensToLogits, batch_size: int, beam_size: int,
                max_length: int, eos_id: int, alpha: float = 0.6, min_length: int = 0,
                start_id: int = 0) -> tuple[jax.Array, jax.Array]:
  """(`[B, K, max_length]` sequences, `[B, K]` scores), best first per row.

  `cache` holds `batch_size * beam_size` rows, batch-major (each example repeated K times);
  its scalar leaves (`cache_index`) are shared.
  """
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1, got {beam_size}')
  b, k = batch_size, beam_size

  def cond(state):
    step, live_lp, _, fin_scores, _, fin_flags, _ = state
    best_live = live_lp[:, 0] / brevity_penalty(alpha, max_length)
    worst_finished = jnp.where(jnp.all(fin_flags, axis=1), jnp.min(fin_scores, axis=1), NEG_INF)
    return (step < max_length) & ~jnp.all(worst_finished > best_live)

  def body(state):
    step, live_lp, live_seqs, fin_scores, fin_seqs, fin_flags, cache = state
    previous = jax.lax.dynamic_index_in_dim(live_seqs, jnp.maximum(step - 1, 0), axis=2,
                                            keepdims=False)
    last = jnp.where(step == 0, start_id, previous).reshape(b * k, 1)
    logits, cache = tokens_to_logits(last, cache)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(b, k, -1)
    log_probs = forbid_eos(log_probs, step, eos_id, min_length)
    vocab = log_probs.shape[-1]
    candidates = (live_lp[:, :, None] + log_probs).reshape(b, k * vocab)
    top_lp, top_idx = jax.lax.top_k(candidates, 2 * k)                    # [B, 2K]
    origin, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    seqs = jax.lax.dynamic_update_slice_in_dim(_gather_beams(live_seqs, origin),
                                               token[:, :, None], step, axis=2)
    ended = token == eos_id
    # Live: the K best continuations that did not end.
    _, keep = jax.lax.top_k(top_lp + ended * NEG_INF, k)
    live_lp = _gather_beams(top_lp + ended * NEG_INF, keep)
    live_seqs = _gather_beams(seqs, keep)
    cache = _cache_gather(cache, _gather_beams(origin, keep), b, k)
    # Finished: merge the newly ended ones (length-normalized) with the finished set.
    scores = top_lp / brevity_penalty(alpha, step + 1) + (~ended) * NEG_INF
    all_scores = jnp.concatenate([fin_scores, scores], axis=1)
    _, best = jax.lax.top_k(all_scores, k)
    fin_scores = _gather_beams(all_scores, best)
    fin_seqs = _gather_beams(jnp.concatenate([fin_seqs, seqs], axis=1), best)
    fin_flags = _gather_beams(jnp.concatenate([fin_flags, ended], axis=1), best)
    return step + 1, live_lp, live_seqs, fin_scores, fin_seqs, fin_flags, cache

  first_live = jnp.concatenate([jnp.zeros((b, 1)), jnp.full((b, k - 1), NEG_INF)], axis=1)
  state = (jnp.array(0, jnp.int32), first_live, jnp.zeros((b, k, max_length), jnp.int32),
           jnp.full((b, k), NEG_INF), jnp.zeros((b, k, max_length), jnp.int32),
           jnp.zeros((b, k), bool), cache)
  _, live_lp, live_seqs, fin_scores, fin_seqs, fin_flags, _ = jax.lax.while_loop(cond, body, state)
  any_finished = jnp.any(fin_flags, axis=1)
  seqs = jnp.where(any_finished[:, None, None], fin_seqs, live_seqs)
  scores = jnp.where(any_finished[:, None], fin_scores, live_lp)
  return seqs, scores
