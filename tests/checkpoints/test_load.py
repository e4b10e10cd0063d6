"""`load_t5` dispatch: presets, paths, dtypes and one-line errors."""
import numpy as np
import pytest

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.checkpoints import t5x
from prompt_transfer_jax.config import T5_PRESETS, t5_preset


def test_preset_gives_random_parameters_of_the_preset_shapes():
  config, params = checkpoints.load_t5('t5_1_1_tiny')
  assert config == t5_preset('t5_1_1_tiny')
  flat = t5x.flatten(params)
  assert {p: v.shape for p, v in flat.items()} == checkpoints.expected_shapes(config)
  assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in flat.values())
  assert np.std(flat[('token_embedder', 'embedding')]) > 0.1


def test_unknown_preset_lists_presets():
  with pytest.raises(ValueError, match=r"unknown T5 preset 't5_1_1_tinyy'; known presets: .*"
                     r't5_1_1_tiny, .*t5x_tiny') as err:
    checkpoints.load_t5('t5_1_1_tinyy')
  assert all(name in str(err.value) for name in T5_PRESETS)


def test_missing_path_is_named(tmp_path):
  missing = tmp_path / 'no_such_checkpoint'
  with pytest.raises(FileNotFoundError, match=f'checkpoint path does not exist: {missing}$'):
    checkpoints.load_t5(missing, 't5_1_1_tiny')
  with pytest.raises(FileNotFoundError, match='checkpoint path does not exist: .*/nope'):
    checkpoints.load_t5('./nope')


def test_bad_config_argument(tmp_path):
  with pytest.raises(ValueError, match="unknown T5 preset 'nope'"):
    checkpoints.load_t5(tmp_path, 'nope')
  with pytest.raises(TypeError, match='config must be a T5Config or a preset name, got int'):
    checkpoints.load_t5(tmp_path, 3)
