"""Reads a Hugging Face RoBERTa directory (`config.json` + safetensors) into our Flax parameter tree.

Accepts `model.safetensors` or a sharded `model.safetensors.index.json`, tensors named as
`RobertaForMaskedLM` saves them (with or without the `roberta.` prefix; the pooler is ignored).
The `<mask>` id comes from the directory's tokenizer files (`vocab.json` or `tokenizer.json`) when
present. Linear weights `[out, in]` become Flax kernels `[in, out]`; every tensor is checked
against the shape the config implies, and a missing, unexpected or misshapen tensor is a one-line
error naming the file and tensor.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from safetensors import safe_open

from prompt_transfer_jax.checkpoints import validate
from prompt_transfer_jax.checkpoints.presets import is_checkpoint_path, random_params
from prompt_transfer_jax.models import roberta as roberta_lib

_CONFIG_FIELDS = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
                  'intermediate_size', 'hidden_act', 'hidden_dropout_prob',
                  'attention_probs_dropout_prob', 'max_position_embeddings', 'type_vocab_size',
                  'layer_norm_eps', 'pad_token_id', 'bos_token_id', 'eos_token_id',
                  'initializer_range')
_MODEL_TYPES = ('roberta', 'xlm-roberta')
# HF tensors we do not need: the pooler of RobertaModel and the non-persistent id buffers.
_IGNORED_PREFIXES = ('pooler.', 'embeddings.position_ids', 'embeddings.token_type_ids')
_MASK_TOKEN = '<mask>'


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'{path}: no such file') from None
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: invalid JSON ({e})') from None


def _mask_token_id(directory: str) -> Optional[int]:
  """`<mask>`'s id from `vocab.json` or `tokenizer.json` in `directory`, or None."""
  vocab_path = os.path.join(directory, 'vocab.json')
  if os.path.exists(vocab_path):
    vocab = _read_json(vocab_path)
    if _MASK_TOKEN in vocab:
      return int(vocab[_MASK_TOKEN])
  tokenizer_path = os.path.join(directory, 'tokenizer.json')
  if os.path.exists(tokenizer_path):
    tokenizer = _read_json(tokenizer_path)
    for token in tokenizer.get('added_tokens', []):
      if token.get('content') == _MASK_TOKEN:
        return int(token['id'])
    vocab = (tokenizer.get('model') or {}).get('vocab')
    if isinstance(vocab, dict) and _MASK_TOKEN in vocab:
      return int(vocab[_MASK_TOKEN])
  return None


def read_config(directory: str, **overrides) -> roberta_lib.RobertaConfig:
  """`RobertaConfig` from `directory/config.json` (+ the tokenizer's `<mask>` id)."""
  path = os.path.join(directory, 'config.json')
  raw = _read_json(path)
  model_type = raw.get('model_type')
  if model_type not in _MODEL_TYPES:
    raise ValueError(f'{path}: model_type {model_type!r} is not one of {", ".join(_MODEL_TYPES)}')
  position_type = raw.get('position_embedding_type', 'absolute')
  if position_type != 'absolute':
    raise ValueError(f'{path}: position_embedding_type {position_type!r} is not supported '
                     '(only absolute)')
  if raw.get('is_decoder', False):
    raise ValueError(f'{path}: is_decoder=true (causal RoBERTa) is not supported; need a masked LM')
  fields = {name: raw[name] for name in _CONFIG_FIELDS if raw.get(name) is not None}
  mask_id = _mask_token_id(directory)
  if mask_id is not None:
    fields['mask_token_id'] = mask_id
  fields.update(overrides)
  try:
    return roberta_lib.RobertaConfig(**fields)
  except ValueError as e:
    raise ValueError(f'{path}: {e}') from None


def _tensor_files(directory: str) -> dict[str, str]:
  """Tensor name -> safetensors file holding it (single file or sharded index)."""
  single = os.path.join(directory, 'model.safetensors')
  index = os.path.join(directory, 'model.safetensors.index.json')
  if os.path.exists(single):
    with safe_open(single, framework='flax') as f:
      return {name: single for name in f.keys()}
  if os.path.exists(index):
    weight_map = _read_json(index).get('weight_map')
    if not isinstance(weight_map, dict):
      raise ValueError(f'{index}: no "weight_map" object')
    files = {name: os.path.join(directory, shard) for name, shard in weight_map.items()}
    for shard in sorted(set(files.values())):
      if not os.path.exists(shard):
        raise FileNotFoundError(f'{index}: shard {shard} is missing')
    return files
  raise FileNotFoundError(f'{directory}: neither model.safetensors nor model.safetensors.index.json '
                          '(only safetensors are read; convert pytorch_model.bin first)')


def _hf_names(config: roberta_lib.RobertaConfig) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our parameter path -> (HF tensor name without `roberta.`, whether it is a transposed Linear)."""
  names = {('embeddings', table, 'embedding'): (f'embeddings.{table}.weight', False)
           for table in ('word_embeddings', 'position_embeddings', 'token_type_embeddings')}
  names.update({
      ('embeddings', 'LayerNorm', 'scale'): ('embeddings.LayerNorm.weight', False),
      ('embeddings', 'LayerNorm', 'bias'): ('embeddings.LayerNorm.bias', False),
      ('lm_head', 'dense', 'kernel'): ('lm_head.dense.weight', True),
      ('lm_head', 'dense', 'bias'): ('lm_head.dense.bias', False),
      ('lm_head', 'layer_norm', 'scale'): ('lm_head.layer_norm.weight', False),
      ('lm_head', 'layer_norm', 'bias'): ('lm_head.layer_norm.bias', False),
      ('lm_head', 'bias'): ('lm_head.bias', False),
  })
  modules = {('attention', 'query'): 'attention.self.query',
             ('attention', 'key'): 'attention.self.key',
             ('attention', 'value'): 'attention.self.value',
             ('attention', 'out'): 'attention.output.dense',
             ('mlp', 'wi'): 'intermediate.dense', ('mlp', 'wo'): 'output.dense'}
  norms = {'attention_layer_norm': 'attention.output.LayerNorm', 'mlp_layer_norm': 'output.LayerNorm'}
  for i in range(config.num_hidden_layers):
    ours, theirs = ('encoder', f'layers_{i}'), f'encoder.layer.{i}'
    for path, hf in modules.items():
      names[ours + path + ('kernel',)] = (f'{theirs}.{hf}.weight', True)
      names[ours + path + ('bias',)] = (f'{theirs}.{hf}.bias', False)
    for ln, hf in norms.items():
      names[ours + (ln, 'scale')] = (f'{theirs}.{hf}.weight', False)
      names[ours + (ln, 'bias')] = (f'{theirs}.{hf}.bias', False)
  return names


def _canonical(name: str) -> str:
  """HF name without the `roberta.` prefix, with old `gamma`/`beta` LayerNorm names renamed."""
  name = name[len('roberta.'):] if name.startswith('roberta.') else name
  if name.endswith('LayerNorm.gamma') or name.endswith('layer_norm.gamma'):
    name = name[:-len('gamma')] + 'weight'
  elif name.endswith('LayerNorm.beta') or name.endswith('layer_norm.beta'):
    name = name[:-len('beta')] + 'bias'
  return name


def load_roberta(path: str, seed: int = 0,
                 **config_overrides) -> tuple[roberta_lib.RobertaConfig, dict]:
  """(config, params) from a Hugging Face RoBERTa directory; params are numpy arrays of
  `param_dtype`, each cast as it is read.

  A preset name (`roberta_base`, `roberta_large`, `roberta_tiny`; `presets.is_checkpoint_path`
  decides) gives `presets.random_params(config, seed)`. `config_overrides` replace config fields
  (e.g. `prompt_layout='plain'`, `mask_token_id=50264`, `param_dtype='bfloat16'`).
  """
  path = os.fspath(path)
  if not is_checkpoint_path(path):
    config = roberta_lib.roberta_preset(path, **config_overrides)
    return config, random_params(config, seed)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{path}: not a directory nor a RoBERTa preset '
                            f'({", ".join(sorted(roberta_lib.ROBERTA_PRESETS))})')
  config = read_config(path, **config_overrides)
  files = _tensor_files(path)
  available = {}
  for name, file in files.items():
    canonical = _canonical(name)
    if canonical.startswith(_IGNORED_PREFIXES):
      continue
    available[canonical] = (name, file)
  decoder = available.pop('lm_head.decoder.weight', None)
  decoder_bias = available.pop('lm_head.decoder.bias', None)
  abstract = nn.meta.unbox(roberta_lib.abstract_params(config))
  expected = jax.tree_util.tree_map(lambda x: x.shape, abstract)
  dtype = jnp.dtype(config.param_dtype)
  params: dict = {}
  with contextlib.ExitStack() as stack:
    handles = {}

    def read(name: str, file: str) -> np.ndarray:
      if file not in handles:
        handles[file] = stack.enter_context(safe_open(file, framework='flax'))
      raw = validate.check_floating(handles[file].get_tensor(name), f'{file}: {name}')
      return np.asarray(raw, dtype)

    for ours, (hf, transposed) in _hf_names(config).items():
      if hf not in available:
        raise ValueError(f'{path}: tensor {hf!r} is missing (needed for {"/".join(ours)}; a '
                         'RobertaForMaskedLM checkpoint with its lm_head is required)')
      name, file = available.pop(hf)
      value = read(name, file)
      shape = tuple(functools.reduce(lambda node, key: node[key], ours, expected))
      want = tuple(reversed(shape)) if transposed else shape
      if value.shape != want:
        raise ValueError(f'{file}: tensor {name!r} has shape {value.shape}, expected {want} '
                         f'from {os.path.join(path, "config.json")}')
      node = params
      for key in ours[:-1]:
        node = node.setdefault(key, {})
      node[ours[-1]] = value.T if transposed else value
    if available:
      extra = sorted(name for name, _ in available.values())
      more = f' and {len(extra) - 5} more' if len(extra) > 5 else ''
      raise ValueError(f'{path}: unexpected tensors for the config in config.json: '
                       f'{", ".join(extra[:5])}{more}')
    ties = ((decoder, params['embeddings']['word_embeddings']['embedding'], 'the word embeddings'),
            (decoder_bias, params['lm_head']['bias'], 'lm_head.bias'))
    for tied, ours, what in ties:
      if tied is not None:
        value = read(*tied)
        if value.shape != ours.shape or not np.array_equal(value, ours):
          raise ValueError(f'{tied[1]}: {tied[0]!r} differs from {what}; untied MLM decoders '
                           'are not supported')
  return config, params


def save_roberta(path: str, config: roberta_lib.RobertaConfig, params) -> str:
  """Writes `config.json` + `model.safetensors` as `RobertaForMaskedLM` saves them (the inverse of
  `load_roberta`; the decoder tied to the word embeddings), each written atomically."""
  import safetensors.numpy

  from prompt_transfer_jax.files import atomic_write
  directory = os.path.abspath(os.fspath(path))
  os.makedirs(directory, exist_ok=True)
  tensors = {}
  for ours, (hf, transposed) in _hf_names(config).items():
    value = np.asarray(functools.reduce(lambda node, key: node[key], ours, params))
    tensors[f'roberta.{hf}' if not hf.startswith('lm_head.') else hf] = np.ascontiguousarray(
        value.T if transposed else value)
  raw = {name: getattr(config, name) for name in _CONFIG_FIELDS}
  raw.update(model_type='roberta', architectures=['RobertaForMaskedLM'],
             position_embedding_type='absolute')
  with atomic_write(os.path.join(directory, 'model.safetensors'), 'wb') as f:
    f.write(safetensors.numpy.save(tensors, metadata={'format': 'pt'}))
  with atomic_write(os.path.join(directory, 'config.json')) as f:
    json.dump(raw, f, indent=1)
  return directory
