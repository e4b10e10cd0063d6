"""Tiny random T5 / RoBERTa backbones for the extractor tests (JAX imported only when used)."""
import functools

import numpy as np
import pytest


def random_params(abstract, seed: int = 0):
  """Random weights shaped like `abstract` (boxed ShapeDtypeStructs), filled with numpy: much
  faster on CPU than an eager `init_params`."""
  import jax
  from flax import linen as nn
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: (rng.normal(size=s.shape) / np.sqrt(s.shape[0])).astype(np.float32),
      nn.meta.unbox(abstract))


@functools.lru_cache(maxsize=None)
def tiny_t5():
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.models import t5 as t5_lib
  from prompt_transfer_jax.models.t5_backbone import T5Backbone
  config = t5_preset('t5x_tiny')
  return T5Backbone(config), random_params(t5_lib.abstract_params(config))


@functools.lru_cache(maxsize=None)
def tiny_roberta():
  from prompt_transfer_jax.models import roberta as roberta_lib
  from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone
  config = roberta_lib.roberta_preset('roberta_tiny')
  return RobertaBackbone(config), random_params(roberta_lib.abstract_params(config))


@pytest.fixture
def tiny_model():
  """(T5Backbone, params) of the `t5x_tiny` preset with random weights."""
  return tiny_t5()


@pytest.fixture
def tiny_roberta_model():
  """(RobertaBackbone, params) of the `roberta_tiny` preset with random weights."""
  return tiny_roberta()
