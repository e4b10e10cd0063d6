"""The one preset rule and the one random initializer of every model family.

`is_checkpoint_path(value)`: a URL, a value with a path separator or a leading `.`/`~`, or an
existing file or directory is a checkpoint; anything else names a preset (`config.T5_PRESETS`,
`models.roberta.ROBERTA_PRESETS`). `random_params(config, seed)`: the preset's weights, drawn
in float32 with the default (threefry) `jax.random.PRNGKey(seed)` and cast to
`config.param_dtype` one array at a time, so the same preset and seed give bit-identical weights
whichever entry point asks for them (and the bf16 weights are the float32 ones, rounded).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from prompt_transfer_jax.config import T5Config
from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.models import t5 as t5_lib


def is_checkpoint_path(value) -> bool:
  """True when `value` names a checkpoint rather than a preset (see the module docstring)."""
  value = os.fspath(value)
  return ('://' in value or os.sep in value or '/' in value or value.startswith(('.', '~')) or
          os.path.exists(value))


@functools.lru_cache(maxsize=8)
def _init(config):
  """The jitted initializer of `config` (compiled once per config, not once per call)."""
  if isinstance(config, T5Config):
    return jax.jit(functools.partial(t5_lib.init_params, config))
  if isinstance(config, roberta_lib.RobertaConfig):
    return jax.jit(functools.partial(roberta_lib.init_params, config))
  raise TypeError(f'no random initializer for {type(config).__name__}')


def random_params(config, seed: int = 0) -> dict:
  """Random parameters (numpy, `config.param_dtype`) of a T5 or RoBERTa config."""
  params = _init(config.replace(param_dtype='float32'))(jax.random.PRNGKey(seed))
  dtype = jnp.dtype(config.param_dtype)
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x.astype(dtype))), params)
