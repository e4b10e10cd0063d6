"""One frozen-model path: the same preset and seed give the same weights through every entry point."""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.trainer import frozen_model, runs


def _same(a, b):
  flat_a, tree_a = jax.tree_util.tree_flatten(a)
  flat_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _gin_model(gin_file):
  return runs.run_gin(lambda: frozen_model.t5_model() if 't5' in gin_file
                      else frozen_model.roberta_model(), [gin_file])


def _every_entry_point(family, preset, gin_file):
  from prompt_transfer_jax.analysis import cli as analysis_cli
  from prompt_transfer_jax.transfer import cli as transfer_cli
  yield 'frozen_model.load', frozen_model.load(preset, family).params
  yield 'gin MODEL', _gin_model(gin_file).params
  yield 'ptj transfer', transfer_cli.load_frozen_model(preset, family).params
  yield 'ptj analyze / bank', analysis_cli._load_model(
      argparse.Namespace(model=preset, family=family, config=None, model_parallel=1))[1].params
  if family == 't5':
    yield 'checkpoints.load_t5', checkpoints.load_t5(preset)[1]
    yield 'random_t5_params', frozen_model.random_t5_params(t5_preset(preset))
  else:
    yield 'checkpoints.load_roberta', checkpoints.load_roberta(preset)[1]


@pytest.mark.parametrize('family,preset,gin_file', [
    ('t5', 't5_1_1_tiny', 'models/t5_1_1_tiny_prompt.gin'),
    ('roberta', 'roberta_tiny', 'models/roberta_tiny.gin')])
def test_same_preset_and_seed_give_identical_weights_everywhere(family, preset, gin_file):
  config = (t5_preset(preset) if family == 't5' else roberta_lib.roberta_preset(preset))
  reference = checkpoints.random_params(config, seed=0)
  for name, params in _every_entry_point(family, preset, gin_file):
    try:
      _same(params, reference)
    except AssertionError as e:
      raise AssertionError(f'{name} differs from random_params: {e}') from None
  other = frozen_model.load(preset, family, seed=1).params
  assert any(not np.array_equal(a, b)
             for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(reference)))


def test_one_preset_rule():
  assert not checkpoints.is_checkpoint_path('t5_base')
  for path in ('./t5_base', 'dir/t5_base', 'gs://bucket/ckpt', '~/ckpt'):
    assert checkpoints.is_checkpoint_path(path)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    frozen_model.load('/no/such/checkpoint', 't5')
  with pytest.raises(ValueError, match='unknown RoBERTa preset'):
    frozen_model.load('roberta_huge', 'roberta')
  with pytest.raises(ValueError, match='unknown model family'):
    frozen_model.load('t5_base', 'gpt')
  with pytest.raises(ValueError, match='checkpoint .* or a preset'):
    frozen_model.load(None, 't5')


def test_frozen_dtype_is_applied_as_each_array_is_read(tmp_path):
  config = t5_preset('t5x_tiny')
  params = checkpoints.random_params(config, seed=3)
  checkpoints.save_hf_t5(tmp_path, config, params)
  model = frozen_model.load(str(tmp_path), 't5', frozen_dtype='bfloat16')
  assert model.config.param_dtype == 'bfloat16'
  _same(model.params, jax.tree.map(lambda x: np.asarray(x).astype(jnp.bfloat16), params))
  random_bf16 = frozen_model.load('t5x_tiny', 't5', frozen_dtype='bfloat16', seed=3)
  _same(random_bf16.params, model.params)      # random bf16 weights = the float32 ones, rounded
  roberta = frozen_model.load('roberta_tiny', 'roberta', frozen_dtype='bfloat16')
  assert {x.dtype for x in jax.tree.leaves(roberta.params)} == {jnp.dtype(jnp.bfloat16)}
  assert roberta.config.param_dtype == 'bfloat16'


def test_capabilities_not_family_names():
  t5 = frozen_model.load('t5x_tiny', 't5')
  roberta = frozen_model.load('roberta_tiny', 'roberta')
  assert t5.can_generate and not t5.needs_label_words
  assert roberta.needs_label_words and not roberta.can_generate
  labels = np.array([[7, 1], [9, 1]], np.int32)
  assert t5.for_task(labels) is t5.backbone
  assert roberta.for_task(labels).label_token_ids == (7, 9)
  with pytest.raises(ValueError, match='classification task'):
    roberta.for_task(None)
