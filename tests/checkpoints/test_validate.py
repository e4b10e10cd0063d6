"""Checkpoint readers refuse bool / int tensors (they would cast silently and train)."""
import os

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from prompt_transfer_jax.checkpoints import read_hf_t5, save_hf_t5, validate
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.trainer.frozen_model import random_t5_params


@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64, ml_dtypes.bfloat16])
def test_floating_dtypes_pass(dtype):
  value = np.zeros((2, 2), dtype)
  assert validate.check_floating(value, 'x') is value
  validate.check_floating(jnp.zeros(2, jnp.bfloat16), 'x')


@pytest.mark.parametrize('dtype', [bool, np.int8, np.int32, np.uint8, np.complex64])
def test_other_dtypes_fail_naming_the_tensor(dtype):
  with pytest.raises(ValueError, match=f'f.safetensors: w: checkpoint tensors must be floating'):
    validate.check_floating(np.zeros((2, 2), dtype), 'f.safetensors: w')
  with pytest.raises(ValueError, match='where: a/b: .*dtype'):
    validate.check_tree({'a': {'b': np.zeros(2, dtype)}, 'c': np.zeros(2)}, 'where')


@pytest.mark.parametrize('dtype', [bool, np.int32])
def test_hf_t5_reader_refuses_non_float_tensors(tmp_path, dtype):
  config = t5_preset('t5x_tiny').replace(vocab_size=32, num_heads=2, head_dim=4)
  directory = save_hf_t5(tmp_path / 'hf', config, random_t5_params(config, seed=0))
  path = os.path.join(directory, 'model.safetensors')
  tensors = safetensors.numpy.load_file(path)
  read_hf_t5(directory)                                    # intact: loads
  name = sorted(tensors)[3]
  tensors[name] = (tensors[name] > 0).astype(dtype)
  safetensors.numpy.save_file(tensors, path)
  with pytest.raises(ValueError, match=f'{name}: checkpoint tensors must be floating point') as e:
    read_hf_t5(directory)
  assert '\n' not in str(e.value)


def test_roberta_reader_refuses_non_float_tensors(tmp_path):
  pytest.importorskip('torch')
  from prompt_transfer_jax.checkpoints.roberta import load_roberta
  from tests.checkpoints.test_roberta_reader import _copy, _hf_model
  path = str(tmp_path / 'tiny')
  _hf_model().save_pretrained(path)

  def to_int(tensors):
    tensors['roberta.encoder.layer.0.output.dense.weight'] = np.ones((16, 32), np.int32)
  bad = _copy(path, tmp_path / 'int', tensor_edit=to_int)
  with pytest.raises(ValueError, match='output.dense.weight: checkpoint tensors must be floating'):
    load_roberta(bad)
