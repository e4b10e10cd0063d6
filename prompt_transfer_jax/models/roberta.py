"""A Flax linen RoBERTa encoder with its masked-LM head, and the paper's soft-prompt layouts.

Numerics follow Hugging Face `RobertaForMaskedLM` (post-LayerNorm layers, exact-erf GELU, LayerNorm
eps from the config, position ids counted over non-pad tokens from `pad_token_id + 1`, MLM head
dense -> GELU -> LayerNorm -> decoder tied to the word embeddings plus a bias). Parameters carry
T5X logical axis names, so the partitioning rules that shard T5 shard RoBERTa too, and every layer
sows its FFN activations under the same names as T5 (`ffn_pre_activation`, `ffn_hidden`).

`RoBERTa(config).apply({'params': p}, input_tokens, prompt=None, enable_dropout=False)` returns
float32 MLM logits. With a prompt `[P, E]` (or `[B, P, E]`) the layout named by
`config.prompt_layout` applies:

* `'mask_slot'` (the paper, `PromptRoberta` of the original code): the input is
  `<mask> p_1..p_{P-1} <s> text </s> <pad>...`. Slot 0 holds the frozen `<mask>` word embedding
  (prompt row 0 is overwritten but, as in the original, still receives the gradient of slot 0);
  prompt slots get no position embedding and no embedding dropout; the text keeps plain RoBERTa
  positions (`<s>` at position id 2). The prediction slot is position 0.
* `'plain'`: `<s> p_1..p_P text <mask> </s> <pad>...`: all P rows act, `<mask>` is inserted before
  the last non-pad token, and positions count every non-pad slot as in plain RoBERTa.

The output covers every slot of the layout (prompt and text); `prediction_positions` says which
one holds `<mask>`. Inputs are right-padded with `pad_token_id` (1 in RoBERTa's vocabulary).
"""
from __future__ import annotations

import functools
from typing import Optional, Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_transfer_jax.config import (PROMPT_LAYOUTS, ROBERTA_PRESETS,  # noqa: F401
                                        RobertaConfig, roberta_preset)
from prompt_transfer_jax.models.t5 import FFN_HIDDEN, FFN_PRE_ACTIVATION, remat_layer

_ACTIVATIONS = {  # keys: config.ROBERTA_ACTIVATIONS
    'gelu': functools.partial(nn.gelu, approximate=False),
    'gelu_new': functools.partial(nn.gelu, approximate=True),
    'relu': nn.relu,
}


def _normal(axes, stddev: float):
  return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


def _dense(features: int, axes: tuple[str, str], cfg: RobertaConfig, name: str):
  """A biased projection whose kernel `[in, out]` and bias `[out]` carry logical axis names."""
  return nn.Dense(features, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                  kernel_init=_normal(axes, cfg.initializer_range),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]),
                  name=name)


def _layer_norm(cfg: RobertaConfig, name: Optional[str] = None):
  """LayerNorm with biased variance (as torch) and statistics in float32."""
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype),
                      param_dtype=jnp.dtype(cfg.param_dtype), use_fast_variance=False,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ('embed',)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ('embed',)),
                      name=name)


def _constrain(x, axes):
  return nn.with_logical_constraint(x, axes)


@jax.custom_vjp
def _overwrite(value, replacement):
  """Returns `replacement`; the gradient flows to `value` as if it had been used (torch `.data =`)."""
  del value
  return replacement


def _overwrite_fwd(value, replacement):
  del value
  return replacement, None


def _overwrite_bwd(_, g):
  return g, jnp.zeros_like(g)


_overwrite.defvjp(_overwrite_fwd, _overwrite_bwd)


def position_ids(key_mask, pad_token_id: int):
  """HF `create_position_ids_from_input_ids`: non-pad slots count from `pad + 1`, pads get `pad`."""
  mask = key_mask.astype(jnp.int32)
  return jnp.cumsum(mask, axis=1) * mask + pad_token_id


def insert_mask_token(input_tokens, mask_id: int, pad_id: int):
  """`<s> text </s> pad..` -> `<s> text <mask> </s> pad..`: `<mask>` before the last non-pad token."""
  batch, length = input_tokens.shape
  last = jnp.sum(input_tokens != pad_id, axis=1, keepdims=True) - 1
  idx = jnp.arange(length + 1)[None]
  source = jnp.clip(jnp.where(idx <= last, idx, idx - 1), 0, length - 1)
  shifted = jnp.take_along_axis(input_tokens, jnp.broadcast_to(source, (batch, length + 1)), axis=1)
  return jnp.where(idx == last, mask_id, shifted)


def prediction_positions(config: RobertaConfig, input_tokens, prompt_length: Optional[int]):
  """Index `[B]` of the `<mask>` slot in the layout's output (None: plain RoBERTa, first `<mask>`)."""
  batch = input_tokens.shape[0]
  if prompt_length is None:
    return jnp.argmax(input_tokens == config.mask_id, axis=1).astype(jnp.int32)
  if config.prompt_layout == 'mask_slot':
    return jnp.zeros((batch,), jnp.int32)
  return (prompt_length + jnp.sum(input_tokens != config.pad_token_id, axis=1) - 1).astype(jnp.int32)


def _batched_prompt(prompt, batch: int, embed: int):
  batched_ok = prompt.ndim == 2 or (prompt.ndim == 3 and prompt.shape[0] == batch)
  if not batched_ok or prompt.shape[-1] != embed:
    raise ValueError(f'prompt shape {tuple(prompt.shape)} does not fit a batch of {batch} with '
                     f'hidden size {embed}: expected [P, {embed}] or [{batch}, P, {embed}]')
  return jnp.broadcast_to(prompt, (batch,) + prompt.shape[-2:])


class Embeddings(nn.Module):
  """Word + position + token-type (0) embeddings, LayerNorm and dropout, for each layout."""
  config: RobertaConfig

  def setup(self):
    cfg = self.config
    embed = functools.partial(nn.Embed, features=cfg.hidden_size, dtype=jnp.dtype(cfg.dtype),
                              param_dtype=jnp.dtype(cfg.param_dtype))
    init = functools.partial(_normal, stddev=cfg.initializer_range)
    self.word_embeddings = embed(cfg.vocab_size, embedding_init=init(('vocab', 'embed')))
    self.position_embeddings = embed(cfg.max_position_embeddings,
                                     embedding_init=init(('abspos_buckets', 'embed')))
    self.token_type_embeddings = embed(cfg.type_vocab_size,
                                       embedding_init=init(('token_types', 'embed')))
    self.LayerNorm = _layer_norm(cfg)
    self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

  def _positions(self, key_mask):
    limit = self.config.max_position_embeddings
    if key_mask.shape[1] + self.config.pad_token_id >= limit:
      raise ValueError(f'input of {key_mask.shape[1]} position slots does not fit '
                       f'max_position_embeddings={limit} (positions start at pad id + 1 = '
                       f'{self.config.pad_token_id + 1})')
    return self.position_embeddings(position_ids(key_mask, self.config.pad_token_id))

  def _finish(self, x, deterministic: bool):
    x = x + self.token_type_embeddings(jnp.zeros((1, 1), jnp.int32))
    x = self.LayerNorm(x)
    x = self.dropout(x, deterministic=deterministic)
    return _constrain(x, ('batch', 'length', 'embed'))

  def __call__(self, input_tokens, prompt=None, deterministic: bool = True):
    """Returns (embedded `[B, S, E]`, key mask `[B, S]`) for the configured layout."""
    cfg = self.config
    if prompt is None:
      mask = input_tokens != cfg.pad_token_id
      x = self.word_embeddings(input_tokens) + self._positions(mask)
      return self._finish(x, deterministic), mask
    prompt = _batched_prompt(prompt, input_tokens.shape[0], cfg.hidden_size)
    prompt = prompt.astype(jnp.dtype(cfg.dtype))
    if cfg.prompt_layout == 'mask_slot':
      if prompt.shape[1] < 1:
        raise ValueError('the mask_slot layout needs a prompt of at least 1 row '
                         '(row 0 is the <mask> slot)')
      mask_row = self.word_embeddings(jnp.full(prompt.shape[:1] + (1,), cfg.mask_id, jnp.int32))
      prompt = jnp.concatenate([_overwrite(prompt[:, :1], mask_row), prompt[:, 1:]], axis=1)
      text_mask = input_tokens != cfg.pad_token_id
      text = self.word_embeddings(input_tokens) + self._positions(text_mask)
      x = jnp.concatenate([prompt, text], axis=1)
      mask = jnp.concatenate([jnp.ones(prompt.shape[:2], bool), text_mask], axis=1)
      return self._finish(x, deterministic=True), mask
    tokens = insert_mask_token(input_tokens, cfg.mask_id, cfg.pad_token_id)
    words = self.word_embeddings(tokens)
    token_mask = tokens != cfg.pad_token_id
    x = jnp.concatenate([words[:, :1], prompt, words[:, 1:]], axis=1)
    mask = jnp.concatenate([token_mask[:, :1], jnp.ones(prompt.shape[:2], bool), token_mask[:, 1:]],
                           axis=1)
    return self._finish(x + self._positions(mask), deterministic), mask

  def attend(self, hidden):
    """Tied decoder: `hidden @ word_embeddings.T` in float32."""
    table = jnp.asarray(self.word_embeddings.embedding, jnp.float32)
    return jnp.dot(jnp.asarray(hidden, jnp.float32), table.T)


class SelfAttention(nn.Module):
  """Bidirectional multi-head attention with 1/sqrt(head_dim) scaling; pads masked as keys."""
  config: RobertaConfig

  @nn.compact
  def __call__(self, x, bias, deterministic: bool):
    cfg = self.config
    split = lambda t: t.reshape(t.shape[:-1] + (cfg.num_attention_heads, cfg.head_dim))
    q, k, v = (_constrain(split(_dense(cfg.hidden_size, ('embed', 'joined_kv'), cfg, name)(x)),
                          ('batch', 'length', 'heads', 'kv')) for name in ('query', 'key', 'value'))
    q = q / jnp.sqrt(jnp.asarray(cfg.head_dim, q.dtype))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32) + bias
    weights = jax.nn.softmax(logits, axis=-1).astype(jnp.dtype(cfg.dtype))
    weights = nn.Dropout(cfg.attention_probs_dropout_prob)(weights, deterministic=deterministic)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v)
    out = out.reshape(out.shape[:-2] + (cfg.hidden_size,))
    return _dense(cfg.hidden_size, ('joined_kv', 'embed'), cfg, 'out')(out)


class MlpBlock(nn.Module):
  """`wo(act(wi x))`; sows `x @ wi + b` and the activation under T5's intermediate names."""
  config: RobertaConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    h = _dense(cfg.intermediate_size, ('embed', 'mlp'), cfg, 'wi')(x)
    self.sow('intermediates', FFN_PRE_ACTIVATION, h)
    h = _constrain(_ACTIVATIONS[cfg.hidden_act](h), ('batch', 'length', 'mlp'))
    self.sow('intermediates', FFN_HIDDEN, h)
    return _dense(cfg.hidden_size, ('mlp', 'embed'), cfg, 'wo')(h)


class EncoderLayer(nn.Module):
  """Post-LayerNorm transformer layer: LN(x + drop(attn(x))), then LN(x + drop(mlp(x)))."""
  config: RobertaConfig

  @nn.compact
  def __call__(self, x, bias, deterministic: bool):
    cfg = self.config
    drop = nn.Dropout(cfg.hidden_dropout_prob)
    h = SelfAttention(cfg, name='attention')(x, bias, deterministic)
    x = _layer_norm(cfg, 'attention_layer_norm')(x + drop(h, deterministic=deterministic))
    h = MlpBlock(cfg, name='mlp')(x)
    x = _layer_norm(cfg, 'mlp_layer_norm')(x + drop(h, deterministic=deterministic))
    return _constrain(x, ('batch', 'length', 'embed'))


class Encoder(nn.Module):
  config: RobertaConfig

  @nn.compact
  def __call__(self, x, key_mask, deterministic: bool):
    cfg = self.config
    bias = jnp.where(key_mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
    # flax counts `self` in static_argnums: 3 is `deterministic`.
    layer = remat_layer(EncoderLayer, cfg.remat, deterministic_argnum=3)
    for i in range(cfg.num_hidden_layers):
      x = layer(cfg, name=f'layers_{i}')(x, bias, deterministic)
    return x


class MlmHead(nn.Module):
  """dense -> exact GELU -> LayerNorm -> decoder tied to the word embeddings (`attend`) + bias."""
  config: RobertaConfig

  @nn.compact
  def __call__(self, x, attend):
    cfg = self.config
    x = _dense(cfg.hidden_size, ('embed', 'mlp'), cfg, 'dense')(x)
    x = nn.gelu(x, approximate=False)
    x = _layer_norm(cfg, 'layer_norm')(x)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros, ('vocab',)),
                      (cfg.vocab_size,), jnp.dtype(cfg.param_dtype))
    return attend(x) + jnp.asarray(bias, jnp.float32)


class RoBERTa(nn.Module):
  """RoBERTa + MLM head with an optional soft prompt (see the module docstring for the layouts).

  `apply({'params': params}, input_tokens, prompt=None, enable_dropout=False)` -> float32 logits
  `[B, S, V]`; pass `mutable=['intermediates']` to also get every layer's FFN activations.
  """
  config: RobertaConfig

  def setup(self):
    cfg = self.config
    self.embeddings = Embeddings(cfg)
    self.encoder = Encoder(cfg)
    self.lm_head = MlmHead(cfg)

  def encode(self, input_tokens, prompt=None, enable_dropout: bool = False):
    """Returns (hidden states `[B, S, E]`, key mask `[B, S]`)."""
    x, mask = self.embeddings(input_tokens, prompt, not enable_dropout)
    return self.encoder(x, mask, not enable_dropout), mask

  def mlm_logits(self, hidden):
    """float32 MLM logits for hidden states `[..., E]`."""
    return self.lm_head(hidden, self.embeddings.attend)

  def prediction_logits(self, input_tokens, prompt=None, enable_dropout: bool = False):
    """MLM logits `[B, V]` at the `<mask>` slot only (cheaper than all `[B, S, V]`)."""
    hidden, _ = self.encode(input_tokens, prompt, enable_dropout)
    positions = prediction_positions(self.config, input_tokens,
                                     None if prompt is None else prompt.shape[-2])
    picked = jnp.take_along_axis(hidden, positions[:, None, None], axis=1)[:, 0]
    return self.mlm_logits(picked)

  def __call__(self, input_tokens, prompt=None, enable_dropout: bool = False):
    hidden, _ = self.encode(input_tokens, prompt, enable_dropout)
    return _constrain(self.mlm_logits(hidden), ('batch', 'length', 'vocab'))


@functools.partial(jax.jit, static_argnums=(0,))
def _init_variables(config: RobertaConfig, rng):
  return RoBERTa(config).init(rng, jnp.full((1, 8), config.bos_token_id, jnp.int32))


def init_params(config: RobertaConfig, rng=None):
  """Random parameters (HF's N(0, 0.02) weights, zero biases, unit LayerNorms), unboxed."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  return nn.meta.unbox(_init_variables(config, rng)['params'])


def abstract_params(config: RobertaConfig):
  """Shape/dtype tree of the parameters, boxed with their logical axis names (no compute)."""
  return jax.eval_shape(lambda: RoBERTa(config).init(
      jax.random.PRNGKey(0), jnp.full((1, 8), config.bos_token_id, jnp.int32)))['params']
