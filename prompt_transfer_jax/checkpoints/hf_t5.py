"""Hugging Face T5 directories (config.json + safetensors) to and from our T5X parameter tree.

HF `Linear.weight` is `[out, in]`, the transpose of a T5X kernel; `relative_attention_bias`
lives in block 0 of each stack and is `rel_embedding.T`; `shared.weight` is the token embedding.
Only safetensors are read (never pickled `pytorch_model.bin`).

Logits: T5 1.0 ties them to the embedding and scales the decoder output by 1/sqrt(d_model);
T5 1.1 has an untied, unscaled `lm_head`. transformers 5 records the scaling in
`scale_decoder_outputs` (and always writes `tie_word_embeddings: true`), transformers 4 in
`tie_word_embeddings`. Tied + scaled maps to `logits_via_embedding=True`; every other case maps
to a `decoder/logits_dense/kernel` (the `lm_head`, or the embedding when the head is tied but
unscaled, with the 1/sqrt(d_model) folded in when an untied head is scaled).
"""
from __future__ import annotations

import json
import os
from typing import Mapping

import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from safetensors import safe_open

from prompt_transfer_jax.checkpoints import validate
from prompt_transfer_jax.checkpoints.store import unflatten
from prompt_transfer_jax.config import T5Config
from prompt_transfer_jax.files import atomic_write

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
WEIGHTS_INDEX_FILE = 'model.safetensors.index.json'
LM_HEAD = 'lm_head.weight'
SHARED = 'shared.weight'
# Present in HF files but not parameters of their own (tied copies, an unused cross-attn bias).
_IGNORED = ('encoder.embed_tokens.weight', 'decoder.embed_tokens.weight',
            'decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight')
_HF_ACTIVATIONS = {'relu': 'relu', 'gelu_new': 'gelu', 'gelu': 'gelu_exact', 'silu': 'silu',
                   'swish': 'silu'}


def activations_from_hf(feed_forward_proj: str, where: str = 'config.json') -> tuple[str, ...]:
  """HF `feed_forward_proj` ('relu', 'gated-gelu', 'gated-silu', ...) -> `mlp_activations`."""
  parts = feed_forward_proj.split('-')
  gated = len(parts) == 2 and parts[0] == 'gated'
  act = parts[-1]
  # HF maps 'gated-gelu' to the tanh GELU (`gelu_new`), as T5X; a plain 'gelu' is the erf GELU.
  act = 'gelu_new' if gated and act == 'gelu' else act
  if (len(parts) > 1 and not gated) or act not in _HF_ACTIVATIONS:
    raise ValueError(f'{where}: unsupported feed_forward_proj {feed_forward_proj!r}; supported: '
                     'relu, gelu, gelu_new, silu, gated-gelu, gated-relu, gated-silu')
  return (_HF_ACTIVATIONS[act], 'linear') if gated else (_HF_ACTIVATIONS[act],)


def feed_forward_proj(activations) -> str:
  """`mlp_activations` -> HF `feed_forward_proj` (inverse of `activations_from_hf`)."""
  activations = tuple(activations)
  if len(activations) == 2 and activations[1] == 'linear' and activations[0] in ('gelu', 'relu',
                                                                                   'silu', 'swish'):
    return 'gated-' + ('silu' if activations[0] == 'swish' else activations[0])
  single = {('relu',): 'relu', ('gelu',): 'gelu_new', ('gelu_exact',): 'gelu', ('silu',): 'silu',
            ('swish',): 'silu'}
  if activations not in single:
    raise ValueError(f'mlp_activations {activations} have no Hugging Face T5 equivalent')
  return single[activations]


def _scales_logits(hf: Mapping) -> bool:
  if 'scale_decoder_outputs' in hf:
    return bool(hf['scale_decoder_outputs'])
  return hf.get('tie_word_embeddings', True) is not False


def config_from_hf(hf: Mapping, where: str = CONFIG_FILE) -> T5Config:
  """Our `T5Config` from an HF T5 config.json (HF defaults for absent fields).

  `logits_via_embedding` reflects config.json alone (scaled logits); `read_hf_t5` refines it
  with the weights (an untied `lm_head`).
  """
  model_type = hf.get('model_type', 't5')
  if model_type not in ('t5', 'mt5'):
    raise ValueError(f'{where}: model_type {model_type!r} is not a T5 encoder-decoder '
                     "(supported: 't5', 'mt5')")
  layers = hf.get('num_layers', 6)
  return T5Config(
      vocab_size=hf.get('vocab_size', 32128), emb_dim=hf.get('d_model', 512),
      num_heads=hf.get('num_heads', 8), head_dim=hf.get('d_kv', 64), mlp_dim=hf.get('d_ff', 2048),
      num_encoder_layers=layers, num_decoder_layers=hf.get('num_decoder_layers') or layers,
      mlp_activations=activations_from_hf(hf.get('feed_forward_proj', 'relu'), where),
      logits_via_embedding=_scales_logits(hf),
      relative_attention_num_buckets=hf.get('relative_attention_num_buckets', 32),
      relative_attention_max_distance=hf.get('relative_attention_max_distance', 128),
      layer_norm_epsilon=hf.get('layer_norm_epsilon', 1e-6))


def hf_config(config: T5Config) -> dict:
  """The config.json that transformers (4.x and 5.x) reads back as this model."""
  return {
      'architectures': ['T5ForConditionalGeneration'], 'model_type': 't5',
      'vocab_size': config.vocab_size, 'd_model': config.emb_dim, 'd_kv': config.head_dim,
      'd_ff': config.mlp_dim, 'num_layers': config.num_encoder_layers,
      'num_decoder_layers': config.num_decoder_layers, 'num_heads': config.num_heads,
      'relative_attention_num_buckets': config.relative_attention_num_buckets,
      'relative_attention_max_distance': config.relative_attention_max_distance,
      'feed_forward_proj': feed_forward_proj(config.mlp_activations),
      'layer_norm_epsilon': config.layer_norm_epsilon, 'dropout_rate': config.dropout_rate,
      'tie_word_embeddings': config.logits_via_embedding,
      'scale_decoder_outputs': config.logits_via_embedding,
      'is_encoder_decoder': True, 'pad_token_id': 0, 'eos_token_id': 1,
      'decoder_start_token_id': 0, 'initializer_factor': 1.0, 'use_cache': True,
  }


def name_table(config: T5Config) -> list[tuple[str, tuple[str, ...], bool]]:
  """(HF tensor name, T5X parameter path, transposed?) for every parameter but the logits."""
  rows = [(SHARED, ('token_embedder', 'embedding'), False)]
  wi = ['wi'] if not config.gated else ['wi_0', 'wi_1']
  for stack, layers in (('encoder', config.num_encoder_layers),
                        ('decoder', config.num_decoder_layers)):
    rows.append((f'{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight',
                 (stack, 'relpos_bias', 'rel_embedding'), True))
    rows.append((f'{stack}.final_layer_norm.weight', (stack, f'{stack}_norm', 'scale'), False))
    if stack == 'encoder':
      attentions = [('SelfAttention', 'attention', 'pre_attention_layer_norm')]
    else:
      attentions = [
          ('SelfAttention', 'self_attention', 'pre_self_attention_layer_norm'),
          ('EncDecAttention', 'encoder_decoder_attention', 'pre_cross_attention_layer_norm')]
    for i in range(layers):
      block, ours = f'{stack}.block.{i}.layer', (stack, f'layers_{i}')
      for j, (hf_name, name, norm) in enumerate(attentions):
        for hf_proj, proj in (('q', 'query'), ('k', 'key'), ('v', 'value'), ('o', 'out')):
          rows.append((f'{block}.{j}.{hf_name}.{hf_proj}.weight',
                       ours + (name, proj, 'kernel'), True))
        rows.append((f'{block}.{j}.layer_norm.weight', ours + (norm, 'scale'), False))
      m = len(attentions)
      for w in wi + ['wo']:
        rows.append((f'{block}.{m}.DenseReluDense.{w}.weight', ours + ('mlp', w, 'kernel'), True))
      rows.append((f'{block}.{m}.layer_norm.weight', ours + ('pre_mlp_layer_norm', 'scale'), False))
  return rows


class _Tensors:
  """Tensor names -> safetensors files of an HF directory (single file or sharded index)."""

  def __init__(self, directory: str):
    self.directory = directory
    index = os.path.join(directory, WEIGHTS_INDEX_FILE)
    single = os.path.join(directory, WEIGHTS_FILE)
    if os.path.isfile(index):
      with open(index) as f:
        weight_map = json.load(f).get('weight_map')
      if not isinstance(weight_map, dict):
        raise ValueError(f'{index} has no weight_map')
      self.files = {name: os.path.join(directory, file) for name, file in weight_map.items()}
      self.where = index
    elif os.path.isfile(single):
      with safe_open(single, framework='numpy') as f:
        self.files = {name: single for name in f.keys()}
      self.where = single
    else:
      raise FileNotFoundError(f'no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE} in {directory} '
                              '(pickled pytorch_model.bin files are not read)')
    for file in set(self.files.values()):
      if not os.path.isfile(file):
        raise FileNotFoundError(f'safetensors shard {file} named in {self.where} does not exist')

  def __contains__(self, name):
    return name in self.files

  def read(self, names, dtype=None) -> dict[str, np.ndarray]:
    """The named tensors, each cast to `dtype` (floating ones) as it is read."""
    by_file: dict[str, list[str]] = {}
    for name in names:
      by_file.setdefault(self.files[name], []).append(name)
    out = {}
    for file, file_names in by_file.items():
      try:
        with safe_open(file, framework='numpy') as f:
          for name in file_names:
            value = f.get_tensor(name)
            if dtype is not None and jnp.issubdtype(value.dtype, jnp.floating):
              value = value.astype(dtype, copy=False)
            out[name] = value
      except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f'cannot read {file}: {" ".join(str(e).split())}') from None
    return out


def hf_layout(path):
  """`(config.json dict, T5Config, _Tensors, name table)` of an HF T5 directory, checked for
  missing and unexpected tensors; no tensor data is read."""
  directory = os.path.abspath(os.fspath(path))
  config_file = os.path.join(directory, CONFIG_FILE)
  if not os.path.isfile(config_file):
    raise FileNotFoundError(f'no {CONFIG_FILE} in {directory}')
  with open(config_file) as f:
    hf = json.load(f)
  config = config_from_hf(hf, config_file)
  tensors = _Tensors(directory)
  table = name_table(config)
  missing = [name for name, _, _ in table if name not in tensors]
  if SHARED in missing and 'encoder.embed_tokens.weight' in tensors:
    missing.remove(SHARED)
    table[0] = ('encoder.embed_tokens.weight',) + table[0][1:]
  if missing:
    raise ValueError(f'{tensors.where}: missing tensors {", ".join(missing[:8])}'
                     f'{" ..." if len(missing) > 8 else ""} ({len(missing)} in all) for a '
                     f'{config.num_encoder_layers}+{config.num_decoder_layers}-layer T5')
  known = {name for name, _, _ in table} | set(_IGNORED) | {LM_HEAD, SHARED}
  unexpected = sorted(set(tensors.files) - known)
  if unexpected:
    more = ' ...' if len(unexpected) > 8 else ''
    raise ValueError(f'{tensors.where}: unexpected tensors {", ".join(unexpected[:8])}{more} '
                     '(not part of T5 with this config.json)')
  if hf.get('tie_word_embeddings') is False and 'scale_decoder_outputs' not in hf and (
      LM_HEAD not in tensors):
    raise ValueError(f'{tensors.where}: missing tensor {LM_HEAD} (config.json says '
                     'tie_word_embeddings: false)')
  return hf, config, tensors, table


def untied_head_allowed(hf: Mapping) -> bool:
  """Whether config.json lets a stored `lm_head` differ from the embedding."""
  return 'scale_decoder_outputs' in hf or hf.get('tie_word_embeddings') is False


def read_hf_t5(path, dtype=None) -> tuple[T5Config, dict]:
  """`(T5Config, params)` from an HF T5 directory; shapes are checked by `load_t5`.

  Each tensor is cast to `dtype` (default: as stored) as it is read, and released once its
  parameter is built, so the host holds one copy of the weights plus one tensor.
  """
  hf, config, tensors, table = hf_layout(path)
  values = tensors.read([name for name, _, _ in table] + ([LM_HEAD] if LM_HEAD in tensors else []),
                        dtype)
  validate.check_tree(values, tensors.where)
  embedding = values[table[0][0]]
  head = values.get(LM_HEAD)
  untied = (head is not None and untied_head_allowed(hf) and
            (head.shape != embedding.shape or not np.array_equal(head, embedding)))
  scale = _scales_logits(hf)
  config = config.replace(logits_via_embedding=scale and not untied)
  flat = {}
  for name, param_path, transpose in table:
    value = values.pop(name)
    flat[param_path] = np.ascontiguousarray(value.T) if transpose else value
  if not config.logits_via_embedding:
    kernel = (head if untied else embedding).T
    if scale:
      kernel = kernel * np.asarray(config.emb_dim ** -0.5, kernel.dtype)
    flat[('decoder', 'logits_dense', 'kernel')] = np.ascontiguousarray(kernel)
  return config, unflatten(flat)


def save_hf_t5(path, config: T5Config, params: Mapping) -> str:
  """Writes `config.json` + `model.safetensors` that transformers' T5ForConditionalGeneration
  loads as the same model (each file written to a temporary name, then renamed)."""
  directory = os.path.abspath(os.fspath(path))
  os.makedirs(directory, exist_ok=True)
  tensors = {}
  for name, param_path, transpose in name_table(config):
    node = params
    for key in param_path:
      node = node[key]
    value = np.asarray(node)
    tensors[name] = np.ascontiguousarray(value.T if transpose else value)
  if not config.logits_via_embedding:
    head = np.asarray(params['decoder']['logits_dense']['kernel']).T
    tensors[LM_HEAD] = np.ascontiguousarray(head)
  with atomic_write(os.path.join(directory, WEIGHTS_FILE), 'wb') as f:
    # safetensors writes by file name: it fills the temporary `f` names (nothing goes through f).
    safetensors.numpy.save_file(tensors, f.name, metadata={'format': 'pt'})
  with atomic_write(os.path.join(directory, CONFIG_FILE)) as f:
    json.dump(hf_config(config), f, indent=2)
  return directory
