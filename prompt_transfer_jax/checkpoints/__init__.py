"""Loading frozen parameters: presets (random init), Hugging Face directories, T5X / Orbax.

`load_t5(path_or_preset, config=None, dtype=None) -> (T5Config, params)` and
`load_roberta(path_or_preset, **overrides)` are the entry points; params are nested dicts of
numpy arrays named as in `models/t5.py` (the T5X tree) / `models/roberta.py`, checked against
`abstract_params(config)` before any array data is read, and cast to the parameter dtype one
array at a time as they are read (never a second full copy on the host).

One preset rule and one random initializer for every entry point: `presets.is_checkpoint_path`
and `presets.random_params`.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from prompt_transfer_jax.checkpoints import hf_t5, t5x
from prompt_transfer_jax.checkpoints.hf_t5 import read_hf_t5, save_hf_t5
from prompt_transfer_jax.checkpoints.presets import is_checkpoint_path, random_params
from prompt_transfer_jax.checkpoints.roberta import load_roberta, save_roberta
from prompt_transfer_jax.checkpoints.t5x import (infer_t5_config, open_checkpoint,
                                                 read_t5x_checkpoint, read_t5x_variable)
from prompt_transfer_jax.config import T5Config, t5_preset
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.models.prompt import T5X_PROMPT_NAME

__all__ = ['load_t5', 'load_roberta', 'save_roberta', 'random_params', 'is_checkpoint_path',
           'read_t5x_variable', 'read_t5x_checkpoint', 'read_hf_t5', 'save_hf_t5',
           'infer_t5_config', 'open_checkpoint', 'validate_params', 'expected_shapes']

# Prompt-tuning checkpoints carry the prompt inside the encoder; it is not a backbone parameter
# (read it with `read_t5x_variable(path, T5X_PROMPT_NAME)`).
_PROMPT_SUBTREE = tuple(T5X_PROMPT_NAME.split('.')[:2])

ConfigLike = Union[T5Config, str, None]


def _resolve_config(config: ConfigLike) -> tuple[Optional[T5Config], str]:
  if config is None:
    return None, ''
  if isinstance(config, str):
    return t5_preset(config), f'preset {config}'
  if isinstance(config, T5Config):
    return config, 'the given config'
  raise TypeError(f'config must be a T5Config or a preset name, got {type(config).__name__}')


def expected_shapes(config: T5Config) -> dict[tuple, tuple[int, ...]]:
  """{parameter path: shape} of the model `config` describes (no compute)."""
  abstract = nn.meta.unbox(t5_lib.abstract_params(config))
  return {tuple(getattr(k, 'key', k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}


def validate_params(shapes: Mapping[tuple, tuple], config: T5Config, where: str,
                    expected_from: str) -> None:
  """Raises a one-line ValueError on missing, unexpected or wrongly shaped parameters."""
  expected = expected_shapes(config)
  fmt = lambda p: '/'.join(map(str, p))
  missing = sorted(set(expected) - set(shapes))
  if missing:
    raise ValueError(f'{where}: missing parameters {", ".join(fmt(p) for p in missing[:6])}'
                     f'{" ..." if len(missing) > 6 else ""} ({len(missing)} in all) expected by '
                     f'{expected_from}')
  unexpected = sorted(set(shapes) - set(expected))
  if unexpected:
    listed = ', '.join(f'{fmt(p)} {tuple(shapes[p])}' for p in unexpected[:6])
    more = ' ...' if len(unexpected) > 6 else ''
    raise ValueError(f'{where}: unexpected parameters {listed}{more} ({len(unexpected)} in all) '
                     f'not in {expected_from}')
  wrong = [p for p, shape in sorted(expected.items()) if tuple(shapes[p]) != shape]
  if wrong:
    more = f' ({len(wrong) - 1} more mismatched)' if len(wrong) > 1 else ''
    raise ValueError(f'{where}: parameter {fmt(wrong[0])} has shape {tuple(shapes[wrong[0]])} but '
                     f'{expected_from} expects {expected[wrong[0]]}{more}')


def load_t5(path_or_preset, config: ConfigLike = None, dtype=None,
            seed: int = 0) -> tuple[T5Config, dict]:
  """Returns `(T5Config, params)` for a preset name, an HF T5 directory or a T5X checkpoint.

  - a preset name (see `config.T5_PRESETS`): random parameters `random_params(config, seed)`;
  - a directory with `config.json`: an HF T5 model (`hf_t5.read_hf_t5`); `config`, if given,
    replaces the one built from config.json and the weights are checked against it;
  - anything else: a T5X / Orbax checkpoint (model dir, step dir or msgpack file, local or
    gs://). T5X stores no config: pass `config` (a T5Config or preset name) or let it be
    inferred from the shapes (`t5x.infer_t5_config`). A prompt-tuning prompt in the checkpoint
    (`encoder/prompt/...`) is skipped.

  Float parameters are cast to `dtype` as each is read (default: the config's `param_dtype`,
  float32); when `dtype` is given the returned config's `param_dtype` is set to it.
  """
  given, given_name = _resolve_config(config)
  path = os.fspath(path_or_preset)
  if not is_checkpoint_path(path):
    try:
      cfg = t5_preset(path)
    except ValueError as e:
      raise ValueError(f'{e} (and no file or directory {path!r} exists)') from None
    if given is not None and given != cfg:
      raise ValueError(f'{path!r} is a preset; config= applies to checkpoints only')
    cfg = cfg.replace(param_dtype=jnp.dtype(dtype).name) if dtype is not None else cfg
    return cfg, random_params(cfg, seed)
  location = t5x.Location.of(path)
  if not location.exists():
    raise FileNotFoundError(f'checkpoint path does not exist: {location}')
  if not location.is_url and os.path.isfile(os.path.join(location.path, hf_t5.CONFIG_FILE)):
    target = jnp.dtype(dtype if dtype is not None else
                       given.param_dtype if given is not None else 'float32')
    cfg, params = read_hf_t5(location.path, target)
    cfg_name = hf_t5.CONFIG_FILE
    if given is not None:
      cfg, cfg_name = given, given_name
    validate_params({p: np.shape(v) for p, v in t5x.flatten(params).items()}, cfg,
                    location.path, cfg_name)
  else:
    cfg, params = _load_t5x(location, given, given_name, dtype)
  if dtype is not None:
    cfg = cfg.replace(param_dtype=jnp.dtype(dtype).name)
  return cfg, params


def _cast_leaf(x, dtype) -> np.ndarray:
  """One array in `dtype` when it is floating (no copy when it already is)."""
  x = np.asarray(x)
  return x.astype(dtype, copy=False) if jnp.issubdtype(x.dtype, jnp.floating) else x


def _load_t5x(location, config: Optional[T5Config], config_name: str, dtype=None):
  config, leaves = t5x_leaves(location, config, config_name)
  target = jnp.dtype(dtype if dtype is not None else config.param_dtype)
  params = {}
  for path in list(leaves):   # one array at a time: read, cast, drop the lazy handle
    params[path] = _cast_leaf(t5x.materialize(leaves.pop(path)), target)
  return config, t5x.unflatten(params)


def t5x_leaves(location, config: Optional[T5Config], config_name: str):
  """`(config, {path: leaf})` of a T5X / Orbax checkpoint's backbone, checked against the config
  (given, or inferred from the stored shapes); leaves stay lazy (`LazyArray`) or inline numpy."""
  ckpt = open_checkpoint(location.path)
  leaves = {p: v for p, v in t5x.flatten(ckpt.target).items()
            if v is not None and p[:len(_PROMPT_SUBTREE)] != _PROMPT_SUBTREE}
  if config is None:
    if any(isinstance(v, t5x.LazyArray) and not v.has_metadata for v in leaves.values()):
      raise ValueError(f'{ckpt.index}: arrays are stored without shapes (Orbax aggregate without '
                       '.zarray), so the T5 config cannot be inferred; pass config=')
    config = infer_t5_config(t5x.unflatten(leaves), ckpt.index)
    config_name = 'the config inferred from its shapes'
  expected = expected_shapes(config)
  for path, leaf in leaves.items():
    if isinstance(leaf, t5x.LazyArray) and path in expected and not leaf.has_metadata:
      leaf.assume(expected[path], np.float32)  # T5X saves `target` in float32 by default
  validate_params({p: t5x.shape_of(v) for p, v in leaves.items()}, config, ckpt.index, config_name)
  return config, leaves
