"""Model configurations: one frozen dataclass per backbone and named presets.

`T5Config` field names follow T5X's `t5x.examples.t5.network.T5Config` so gin files read the
same; `RobertaConfig` field names follow Hugging Face's RoBERTa `config.json`.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

# Rematerialisation of the frozen model's layers in the backward pass: 'none' keeps every
# activation, 'full' recomputes each layer from its input, 'dots_saveable' keeps matmul outputs
# and recomputes the elementwise work (jax.checkpoint_policies.dots_saveable).
REMAT_POLICIES = ('none', 'full', 'dots_saveable')


def remat_policy(value: Union[bool, str], where: str) -> str:
  """A remat setting (a policy name; True / False for 'full' / 'none') -> a policy name."""
  if isinstance(value, bool):
    return 'full' if value else 'none'
  if value not in REMAT_POLICIES:
    raise ValueError(f'{where}.remat must be one of {", ".join(REMAT_POLICIES)} (or a bool), '
                     f'got {value!r}')
  return value


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyper-parameters of a T5 encoder-decoder (T5 1.0, T5 1.1, mT5, ByT5, Flan-T5)."""

  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 8
  head_dim: int = 64
  mlp_dim: int = 2048
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  mlp_activations: Sequence[str] = ('relu',)
  logits_via_embedding: bool = True
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.0
  layer_norm_epsilon: float = 1e-6
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  remat: Union[bool, str] = 'none'   # a REMAT_POLICIES name

  def __post_init__(self):
    object.__setattr__(self, 'mlp_activations', tuple(self.mlp_activations))
    object.__setattr__(self, 'remat', remat_policy(self.remat, 'T5Config'))
    for name in ('vocab_size', 'emb_dim', 'num_heads', 'head_dim', 'mlp_dim',
                 'num_encoder_layers', 'num_decoder_layers', 'relative_attention_num_buckets'):
      if getattr(self, name) <= 0:
        raise ValueError(f'T5Config.{name} must be positive, got {getattr(self, name)}')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f'T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}')

  @property
  def gated(self) -> bool:
    """True for gated MLPs (T5 1.1 family): `act(x wi_0) * (x wi_1)`."""
    return len(self.mlp_activations) > 1

  def replace(self, **kwargs) -> 'T5Config':
    return dataclasses.replace(self, **kwargs)


def _t5_1_0(emb, heads, head_dim, mlp, layers):
  return T5Config(emb_dim=emb, num_heads=heads, head_dim=head_dim, mlp_dim=mlp,
                  num_encoder_layers=layers, num_decoder_layers=layers,
                  mlp_activations=('relu',), logits_via_embedding=True)


def _t5_1_1(emb, heads, mlp, layers, vocab=32128, dec_layers=None):
  return T5Config(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=64, mlp_dim=mlp,
                  num_encoder_layers=layers, num_decoder_layers=dec_layers or layers,
                  mlp_activations=('gelu', 'linear'), logits_via_embedding=False)


T5_PRESETS: dict[str, T5Config] = {
    # T5 1.0 (ReLU MLP, logits tied to the embedding and scaled by 1/sqrt(d_model)).
    't5_small': _t5_1_0(512, 8, 64, 2048, 6),
    't5_base': _t5_1_0(768, 12, 64, 3072, 12),
    't5_large': _t5_1_0(1024, 16, 64, 4096, 24),
    't5_3B': _t5_1_0(1024, 32, 128, 16384, 24),
    't5_11B': _t5_1_0(1024, 128, 128, 65536, 24),
    # T5 1.1, LM-adapted and Flan-T5 (gated GELU, separate logits_dense).
    't5_1_1_small': _t5_1_1(512, 6, 1024, 8),
    't5_1_1_base': _t5_1_1(768, 12, 2048, 12),
    't5_1_1_large': _t5_1_1(1024, 16, 2816, 24),
    't5_1_1_xl': _t5_1_1(2048, 32, 5120, 24),
    't5_1_1_xxl': _t5_1_1(4096, 64, 10240, 24),
    # mT5: T5 1.1 shapes with the 250k multilingual vocabulary.
    'mt5_small': _t5_1_1(512, 6, 1024, 8, vocab=250112),
    'mt5_base': _t5_1_1(768, 12, 2048, 12, vocab=250112),
    'mt5_large': _t5_1_1(1024, 16, 2816, 24, vocab=250112),
    'mt5_xl': _t5_1_1(2048, 32, 5120, 24, vocab=250112),
    'mt5_xxl': _t5_1_1(4096, 64, 10240, 24, vocab=250112),
    # ByT5 base: byte vocabulary, deep encoder / shallow decoder.
    'byt5_base': _t5_1_1(1536, 12, 3968, 18, vocab=384, dec_layers=6),
    # Test sizes: the prompt-tuning fixture `test_t5_1_1_tiny` and T5X's `test_t5_tiny`.
    't5_1_1_tiny': T5Config(emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
                            num_encoder_layers=2, num_decoder_layers=2,
                            mlp_activations=('gelu', 'linear'), logits_via_embedding=False,
                            relative_attention_num_buckets=4, relative_attention_max_distance=8),
    't5x_tiny': T5Config(emb_dim=8, num_heads=4, head_dim=3, mlp_dim=16,
                         num_encoder_layers=2, num_decoder_layers=2,
                         mlp_activations=('gelu', 'linear'), logits_via_embedding=False),
    # A small-but-useful size for the CPU demo and fast tests (real T5 vocabulary).
    't5_demo': T5Config(emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                        num_encoder_layers=2, num_decoder_layers=2,
                        mlp_activations=('gelu', 'linear'), logits_via_embedding=False),
}
# Aliases used by the LM-adapted and Flan checkpoints: same architecture as T5 1.1.
for _size in ('small', 'base', 'large', 'xl', 'xxl'):
  T5_PRESETS[f't5_1_1_lm100k_{_size}'] = T5_PRESETS[f't5_1_1_{_size}']
  T5_PRESETS[f'flan_t5_{_size}'] = T5_PRESETS[f't5_1_1_{_size}']


def t5_preset(name: str) -> T5Config:
  """Returns the named preset or raises a one-line error listing the valid names."""
  try:
    return T5_PRESETS[name]
  except KeyError:
    raise ValueError(f'unknown T5 preset {name!r}; known presets: {", ".join(sorted(T5_PRESETS))}') from None


# ---------------------------------------------------------------------------------------------
# RoBERTa.

PROMPT_LAYOUTS = ('mask_slot', 'plain')
ROBERTA_ACTIVATIONS = ('gelu', 'gelu_new', 'relu')


@dataclasses.dataclass(frozen=True)
class RobertaConfig:
  """Hyper-parameters of a RoBERTa encoder + MLM head (field names as in HF `config.json`)."""

  vocab_size: int = 50265
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = 'gelu'
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 514
  type_vocab_size: int = 1
  layer_norm_eps: float = 1e-5
  pad_token_id: int = 1
  bos_token_id: int = 0
  eos_token_id: int = 2
  mask_token_id: Optional[int] = None  # from the tokenizer; None means vocab_size - 1
  initializer_range: float = 0.02      # stddev of the random weights (HF's initializer_range)
  prompt_layout: str = 'mask_slot'
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  remat: Union[bool, str] = 'none'   # a REMAT_POLICIES name

  def __post_init__(self):
    object.__setattr__(self, 'remat', remat_policy(self.remat, 'RobertaConfig'))
    for name in ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
                 'intermediate_size', 'max_position_embeddings', 'type_vocab_size'):
      if getattr(self, name) <= 0:
        raise ValueError(f'RobertaConfig.{name} must be positive, got {getattr(self, name)}')
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f'RobertaConfig.hidden_size {self.hidden_size} is not a multiple of '
                       f'num_attention_heads {self.num_attention_heads}')
    for name in ('hidden_dropout_prob', 'attention_probs_dropout_prob'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f'RobertaConfig.{name} must be in [0, 1), got {getattr(self, name)}')
    if self.hidden_act not in ROBERTA_ACTIVATIONS:
      raise ValueError(f'RobertaConfig.hidden_act {self.hidden_act!r} is not one of '
                       f'{", ".join(ROBERTA_ACTIVATIONS)}')
    if self.prompt_layout not in PROMPT_LAYOUTS:
      raise ValueError(f'RobertaConfig.prompt_layout {self.prompt_layout!r} is not one of '
                       f'{", ".join(PROMPT_LAYOUTS)}')
    for name in ('pad_token_id', 'bos_token_id', 'eos_token_id', 'mask_token_id'):
      value = getattr(self, name)
      if value is not None and not 0 <= value < self.vocab_size:
        raise ValueError(f'RobertaConfig.{name} {value} is outside the vocabulary '
                         f'[0, {self.vocab_size})')

  @property
  def mask_id(self) -> int:
    """The `<mask>` id: the tokenizer's, else the last id of the vocabulary as in RoBERTa's."""
    return self.vocab_size - 1 if self.mask_token_id is None else self.mask_token_id

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  def replace(self, **kwargs) -> 'RobertaConfig':
    return dataclasses.replace(self, **kwargs)


ROBERTA_PRESETS: dict[str, RobertaConfig] = {
    'roberta_base': RobertaConfig(),
    'roberta_large': RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                   intermediate_size=4096),
    # Test size with the real BPE vocabulary (50,265 ids, `<mask>` = 50264).
    'roberta_tiny': RobertaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32),
}


def roberta_preset(name: str, **overrides) -> RobertaConfig:
  """The named preset, with optional field overrides (e.g. `prompt_layout`, `mask_token_id`)."""
  try:
    config = ROBERTA_PRESETS[name]
  except KeyError:
    raise ValueError(f'unknown RoBERTa preset {name!r}; known presets: '
                     f'{", ".join(sorted(ROBERTA_PRESETS))}') from None
  return config.replace(**overrides) if overrides else config
