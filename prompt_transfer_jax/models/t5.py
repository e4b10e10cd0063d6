"""A Flax linen T5 encoder-decoder with T5X's exact parameter tree and logical axis names.

The tree matches `t5x/examples/t5/network.py` and Flaxformer (see the T5X notes, section 2.1), so
T5X checkpoints load as they are. A soft prompt `[P, E]` (or `[B, P, E]`) passed to `__call__` /
`encode` is prepended to the embedded encoder input; encoder self-attention and decoder
cross-attention see prompt + real tokens (pads masked), and relative positions span both, as in
google-research/prompt-tuning.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from prompt_transfer_jax.config import T5Config

_NEG_INF = -1e10
# Intermediate names sown by every MLP (read by the activation extractor).
FFN_PRE_ACTIVATION = 'ffn_pre_activation'  # x @ wi (1.0) or x @ wi_0 (gated), before the activation
FFN_HIDDEN = 'ffn_hidden'                  # the tensor that enters `wo`


def _dtype(name: str):
  return jnp.dtype(name)


def _logical(init, axes):
  return nn.with_logical_partitioning(init, axes)


def _constrain(x, axes):
  return nn.with_logical_constraint(x, axes)


class RMSNorm(nn.Module):
  """T5 layer norm: no mean subtraction, no bias, statistics in float32."""
  epsilon: float = 1e-6
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
    scale = self.param('scale', _logical(nn.initializers.ones, ('embed',)), (x.shape[-1],),
                       _dtype(self.param_dtype))
    return y.astype(self.dtype) * jnp.asarray(scale, self.dtype)


class Dense(nn.Module):
  """A bias-free projection whose 2-D kernel carries logical axis names."""
  features: int
  kernel_axes: tuple[str, str]
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  kernel_init: nn.initializers.Initializer = nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', _logical(self.kernel_init, self.kernel_axes),
                        (x.shape[-1], self.features), _dtype(self.param_dtype))
    return jnp.dot(jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype))


class Embed(nn.Module):
  """The shared token embedding; `attend` gives tied logits (T5 1.0)."""
  num_embeddings: int
  features: int
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  def setup(self):
    self.embedding = self.param('embedding', _logical(nn.initializers.normal(1.0), ('vocab', 'embed')),
                                (self.num_embeddings, self.features), _dtype(self.param_dtype))

  def __call__(self, ids):
    return jnp.take(jnp.asarray(self.embedding, self.dtype), ids, axis=0)

  def attend(self, query):
    return jnp.dot(jnp.asarray(query, jnp.float32), jnp.asarray(self.embedding, jnp.float32).T)


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int,
                             max_distance: int):
  """T5's bucketing of `memory_position - query_position` (T5X `RelativePositionBiases`)."""
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
      np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) /
      np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
  val_if_large = np.minimum(val_if_large, num_buckets - 1)
  return ret + np.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
  """One relative-position bias table per stack, shared by all its layers."""
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool):
    context = np.arange(qlen, dtype=np.int32)[:, None]
    memory = np.arange(klen, dtype=np.int32)[None, :]
    buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = self.param('rel_embedding',
                       _logical(nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform'),
                                ('heads', 'relpos_buckets')),
                       (self.num_heads, self.num_buckets), _dtype(self.param_dtype))
    values = jnp.take(jnp.asarray(table, self.dtype), jnp.asarray(buckets), axis=1)  # [H, q, k]
    return values[None]


CACHE_AXES = ('batch', 'heads', 'kv', 'length')  # T5X's cache layout: length last


class MultiHeadAttention(nn.Module):
  """T5 attention: no 1/sqrt(d) logit scaling (folded into the query init), softmax in float32.

  `decode=True` is one step of incremental decoding (T5X's cache layout, a 'cache' collection
  with `cached_key` / `cached_value` `[B, H, D, L]`): self-attention (`cross=False`) writes the
  new token's key/value at `cache_index` and attends to the cache, its `bias` `[., H, L, L]` is
  cut to row `cache_index`; cross-attention projects the encoder output once and keeps it. The
  first decode call only creates the cache (zeros for self-attention) and leaves the index at 0.
  """
  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  @nn.compact
  def __call__(self, q_in, kv_in, bias, deterministic: bool, decode: bool = False,
               cross: bool = False, max_length: Optional[int] = None):
    emb = q_in.shape[-1]
    inner = self.num_heads * self.head_dim
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    q_init = nn.initializers.variance_scaling(1.0 / self.head_dim, 'fan_in', 'normal')
    kv_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'normal')
    split = lambda t: t.reshape(t.shape[:-1] + (self.num_heads, self.head_dim))
    q = _constrain(split(dense(inner, ('embed', 'joined_kv'), kernel_init=q_init,
                               name='query')(q_in)), ('batch', 'length', 'heads', 'kv'))
    key = dense(inner, ('embed', 'joined_kv'), kernel_init=kv_init, name='key')
    value = dense(inner, ('embed', 'joined_kv'), kernel_init=kv_init, name='value')
    project = lambda layer: _constrain(split(layer(kv_in)), ('batch', 'length', 'heads', 'kv'))
    if not decode:
      k, v = project(key), project(value)
      logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32)
    else:
      k, v, bias = self._cached_kv(key, value, project, q.shape[0], bias, cross, max_length)
      logits = jnp.einsum('bqhd,bhdk->bhqk', q, k, preferred_element_type=jnp.float32)
    logits = logits + bias.astype(jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    if self.dropout_rate > 0.0 and not deterministic:
      keep = jax.random.bernoulli(self.make_rng('dropout'), 1.0 - self.dropout_rate, weights.shape)
      weights = weights * keep.astype(self.dtype) / jnp.asarray(1.0 - self.dropout_rate, self.dtype)
    if decode:
      out = jnp.einsum('bhqk,bhdk->bqhd', weights, v)
    else:
      out = jnp.einsum('bhqk,bkhd->bqhd', weights, v)
    out = out.reshape(out.shape[:-2] + (inner,))
    return dense(emb, ('joined_kv', 'embed'), kernel_init=kv_init, name='out')(out)

  def _cached_kv(self, key, value, project, batch, bias, cross: bool, max_length):
    """(keys `[B, H, D, L]`, values `[B, H, D, L]`, bias for this step) from / into the cache."""
    swap = lambda t: jnp.moveaxis(t, 1, 3)   # [B, L, H, D] -> [B, H, D, L]
    initialized = self.has_variable('cache', 'cached_key')
    cache = lambda name, make: self.variable('cache', name, _logical(make, CACHE_AXES))
    if cross:
      cached_k = cache('cached_key', lambda: swap(project(key)))
      cached_v = cache('cached_value', lambda: swap(project(value)))
      return (_constrain(cached_k.value, CACHE_AXES), _constrain(cached_v.value, CACHE_AXES),
              bias)
    if max_length is None:
      raise ValueError('decoding self-attention needs max_length (the cache length)')
    shape = (batch, self.num_heads, self.head_dim, max_length)
    dtype = _dtype(self.dtype)
    cached_k = cache('cached_key', lambda: jnp.zeros(shape, dtype))
    cached_v = cache('cached_value', lambda: jnp.zeros(shape, dtype))
    index = self.variable('cache', 'cache_index', lambda: jnp.array(0, jnp.int32))
    step = index.value
    row = jax.lax.dynamic_slice_in_dim(bias, step, 1, axis=2)   # [., H, 1, L]
    if initialized:
      k, v = swap(project(key)), swap(project(value))           # [B, H, D, 1]
      cached_k.value = _constrain(
          jax.lax.dynamic_update_slice_in_dim(cached_k.value, k.astype(dtype), step, axis=3),
          CACHE_AXES)
      cached_v.value = _constrain(
          jax.lax.dynamic_update_slice_in_dim(cached_v.value, v.astype(dtype), step, axis=3),
          CACHE_AXES)
      index.value = step + 1
    return cached_k.value, cached_v.value, row


class MlpBlock(nn.Module):
  """ReLU (`wi`) or gated (`wi_0`, `wi_1`) feed-forward; sows its hidden activations."""
  mlp_dim: int
  activations: tuple[str, ...]
  dropout_rate: float = 0.0
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  @nn.compact
  def __call__(self, x, deterministic: bool):
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    names = ['wi'] if len(self.activations) == 1 else [f'wi_{i}' for i in range(len(self.activations))]
    hidden = None
    for name, act in zip(names, self.activations):
      h = dense(self.mlp_dim, ('embed', 'mlp'), name=name)(x)
      if hidden is None:
        self.sow('intermediates', FFN_PRE_ACTIVATION, h)
      h = _activation(act)(h)
      hidden = h if hidden is None else hidden * h
    hidden = _constrain(hidden, ('batch', 'length', 'mlp'))
    self.sow('intermediates', FFN_HIDDEN, hidden)
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic=deterministic)
    return dense(x.shape[-1], ('mlp', 'embed'), name='wo')(hidden)


def _activation(name: str):
  if name == 'linear':
    return lambda x: x
  if name == 'gelu':  # tanh approximation, as T5X (flax `nn.gelu`) and HF `gelu_new`
    return functools.partial(nn.gelu, approximate=True)
  if name == 'gelu_exact':  # the erf GELU (HF `feed_forward_proj='gelu'`)
    return functools.partial(nn.gelu, approximate=False)
  if name in ('relu', 'silu', 'swish'):
    return {'relu': nn.relu, 'silu': nn.silu, 'swish': nn.silu}[name]
  raise ValueError(f'unknown MLP activation {name!r}; use relu, gelu, gelu_exact, silu or linear')


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, bias, deterministic: bool):
    cfg = self.config
    norm = functools.partial(RMSNorm, cfg.layer_norm_epsilon, cfg.dtype, cfg.param_dtype)
    drop = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    h = norm(name='pre_attention_layer_norm')(x)
    h = MultiHeadAttention(cfg.num_heads, cfg.head_dim, cfg.dropout_rate, cfg.dtype,
                           cfg.param_dtype, name='attention')(h, h, bias, deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = norm(name='pre_mlp_layer_norm')(x)
    h = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, cfg.dtype, cfg.param_dtype,
                 name='mlp')(h, deterministic)
    x = x + drop(h, deterministic=deterministic)
    return _constrain(x, ('batch', 'length', 'embed'))


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, y, encoded, self_bias, cross_bias, deterministic: bool, decode: bool = False,
               max_length: Optional[int] = None):
    cfg = self.config
    norm = functools.partial(RMSNorm, cfg.layer_norm_epsilon, cfg.dtype, cfg.param_dtype)
    attn = functools.partial(MultiHeadAttention, cfg.num_heads, cfg.head_dim, cfg.dropout_rate,
                             cfg.dtype, cfg.param_dtype)
    drop = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    h = norm(name='pre_self_attention_layer_norm')(y)
    h = attn(name='self_attention')(h, h, self_bias, deterministic, decode, False, max_length)
    y = y + drop(h, deterministic=deterministic)
    h = norm(name='pre_cross_attention_layer_norm')(y)
    h = attn(name='encoder_decoder_attention')(h, encoded, cross_bias, deterministic, decode, True)
    y = y + drop(h, deterministic=deterministic)
    h = norm(name='pre_mlp_layer_norm')(y)
    h = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, cfg.dtype, cfg.param_dtype,
                 name='mlp')(h, deterministic)
    y = y + drop(h, deterministic=deterministic)
    return _constrain(y, ('batch', 'length', 'embed'))


def remat_layer(cls, policy: str, deterministic_argnum: int):
  """The layer class under a `config.REMAT_POLICIES` policy; `deterministic` (counted with
  `self` as 0) stays static."""
  if policy == 'none':
    return cls
  saveable = jax.checkpoint_policies.dots_saveable if policy == 'dots_saveable' else None
  return nn.remat(cls, static_argnums=(deterministic_argnum,), policy=saveable)


def _layer_cls(cls, config: T5Config, deterministic_argnum: int):
  return remat_layer(cls, config.remat, deterministic_argnum)


def _mask_to_bias(mask):
  return jnp.where(mask, 0.0, _NEG_INF).astype(jnp.float32)


class Encoder(nn.Module):
  config: T5Config
  embedder: nn.Module

  @nn.compact
  def __call__(self, embedded, key_mask, deterministic: bool):
    """`embedded` [B, L, E] (prompt already prepended), `key_mask` [B, L] bool."""
    cfg = self.config
    length = embedded.shape[1]
    bias = RelativePositionBiases(cfg.relative_attention_num_buckets,
                                  cfg.relative_attention_max_distance, cfg.num_heads, cfg.dtype,
                                  cfg.param_dtype, name='relpos_bias')(length, length, True)
    bias = bias + _mask_to_bias(key_mask[:, None, None, :] & key_mask[:, None, :, None])
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(embedded, deterministic=deterministic)
    x = _constrain(x.astype(cfg.dtype), ('batch', 'length', 'embed'))
    layer = _layer_cls(EncoderLayer, cfg, 3)
    for i in range(cfg.num_encoder_layers):
      x = layer(cfg, name=f'layers_{i}')(x, bias, deterministic)
    x = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype, cfg.param_dtype, name='encoder_norm')(x)
    return nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class Decoder(nn.Module):
  config: T5Config
  embedder: nn.Module

  @nn.compact
  def __call__(self, encoded, encoder_key_mask, decoder_input_tokens, deterministic: bool,
               decode: bool = False, max_length: Optional[int] = None):
    """Logits `[B, T, V]`; with `decode`, one step: tokens `[B, 1]`, a cache of `max_length`."""
    cfg = self.config
    length = max_length if decode else decoder_input_tokens.shape[1]
    self_bias = RelativePositionBiases(cfg.relative_attention_num_buckets,
                                       cfg.relative_attention_max_distance, cfg.num_heads,
                                       cfg.dtype, cfg.param_dtype,
                                       name='relpos_bias')(length, length, False)
    causal = jnp.tril(jnp.ones((length, length), bool))
    self_bias = self_bias + _mask_to_bias(causal)[None, None]
    cross_bias = _mask_to_bias(encoder_key_mask)[:, None, None, :]
    y = self.embedder(decoder_input_tokens)
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = _constrain(y.astype(cfg.dtype), ('batch', 'length', 'embed'))
    layer = DecoderLayer if decode else _layer_cls(DecoderLayer, cfg, 5)
    for i in range(cfg.num_decoder_layers):
      y = layer(cfg, name=f'layers_{i}')(y, encoded, self_bias, cross_bias, deterministic,
                                         *((decode, max_length) if decode else ()))
    y = RMSNorm(cfg.layer_norm_epsilon, cfg.dtype, cfg.param_dtype, name='decoder_norm')(y)
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    if cfg.logits_via_embedding:
      logits = self.embedder.attend(y) / jnp.sqrt(jnp.asarray(y.shape[-1], jnp.float32))
    else:
      logits = Dense(cfg.vocab_size, ('embed', 'vocab'), dtype='float32',
                     param_dtype=cfg.param_dtype, name='logits_dense')(y)
    return _constrain(logits, ('batch', 'length', 'vocab'))


class T5(nn.Module):
  """T5 with an optional soft prompt in front of the encoder.

  `apply({'params': params}, encoder_input_tokens, decoder_input_tokens, prompt=None,
  enable_dropout=False)` returns float32 logits `[B, T_dec, V]`. Pass
  `mutable=['intermediates']` to also get every layer's FFN activations.
  """
  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, cfg.dtype, cfg.param_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def embed_encoder_input(self, encoder_input_tokens, prompt=None):
    """Returns (`[prompt; embed(tokens)]`, key mask over prompt + tokens)."""
    x = self.token_embedder(encoder_input_tokens)
    mask = encoder_input_tokens > 0
    if prompt is not None:
      x, mask = prepend_prompt(prompt, x, mask)
    return x, mask

  def encode(self, encoder_input_tokens, prompt=None, enable_dropout: bool = False):
    """Returns (encoded `[B, P+L, E]`, key mask `[B, P+L]`)."""
    x, mask = self.embed_encoder_input(encoder_input_tokens, prompt)
    return self.encoder(x, mask, not enable_dropout), mask

  def decode(self, encoded, encoder_key_mask, decoder_input_tokens, enable_dropout: bool = False):
    return self.decoder(encoded, encoder_key_mask, decoder_input_tokens, not enable_dropout)

  def decode_step(self, encoded, encoder_key_mask, decoder_input_tokens, max_length: int):
    """One incremental step: tokens `[B, 1]` -> logits `[B, 1, V]`, reading and writing the
    'cache' collection (apply with `mutable=['cache']`). The first call creates the cache."""
    return self.decoder(encoded, encoder_key_mask, decoder_input_tokens, True, decode=True,
                        max_length=max_length)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, prompt=None,
               enable_dropout: bool = False):
    encoded, mask = self.encode(encoder_input_tokens, prompt, enable_dropout)
    return self.decode(encoded, mask, decoder_input_tokens, enable_dropout)


def prepend_prompt(prompt, embedded, mask):
  """Prepends `prompt` ([P, E] shared or [B, P, E] per example) to `embedded` [B, L, E]."""
  batch, _, width = embedded.shape
  if prompt.ndim not in (2, 3) or prompt.shape[-1] != width or (prompt.ndim == 3 and
                                                                prompt.shape[0] != batch):
    raise ValueError(f'prompt shape {tuple(prompt.shape)} does not fit embedded input '
                     f'{tuple(embedded.shape)}: expected [P, {width}] or [{batch}, P, {width}]')
  if prompt.ndim == 2:
    prompt = jnp.broadcast_to(prompt[None], (batch,) + prompt.shape)
  x = jnp.concatenate([prompt.astype(embedded.dtype), embedded], axis=1)
  mask = jnp.concatenate([jnp.ones(prompt.shape[:2], bool), mask], axis=1)
  return x, mask


def shift_right(targets, start_id: int = 0):
  """Decoder inputs from targets: prepend the start id (pad 0 for T5), drop the last token."""
  return jnp.concatenate([jnp.full_like(targets[:, :1], start_id), targets[:, :-1]], axis=1)


def init_params(config: T5Config, rng=None, enc_len: int = 8, dec_len: int = 4):
  """Random parameters (boxed with logical axes stripped) for `config`."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  model = T5(config)
  init = jax.jit(lambda r: model.init(r, jnp.ones((1, enc_len), jnp.int32),
                                      jnp.ones((1, dec_len), jnp.int32)))  # one compile, not eager ops
  return nn.meta.unbox(init(rng)['params'])


def abstract_params(config: T5Config):
  """Shape/dtype tree of the parameters, boxed with their logical axis names (no compute)."""
  model = T5(config)
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32),
                         jnp.ones((1, 4), jnp.int32)))['params']
