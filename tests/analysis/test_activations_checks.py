"""The extractor refuses token ids outside the model vocabulary and non-finite activations,
writing nothing (the sentinel 32099 on a small-vocabulary model gave all-NaN activations)."""
import os

import numpy as np
import pytest

from prompt_transfer_jax.analysis import activations as act
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.models.t5_backbone import T5Backbone
from tests.analysis.conftest import random_params


@pytest.fixture(scope='module')
def small_vocab_model():
  """A tiny T5 with the synthetic tasks' 256-word vocabulary."""
  config = t5_preset('t5x_tiny').replace(vocab_size=256)
  return T5Backbone(config), random_params(t5_lib.abstract_params(config))


def test_default_sentinel_on_a_small_vocabulary_is_refused(small_vocab_model, tmp_path):
  backbone, params = small_vocab_model
  prompts = np.zeros((2, 3, backbone.embed_dim), np.float32)
  vocab = backbone.config.vocab_size
  assert vocab <= act.T5_SENTINEL_ID
  path = str(tmp_path / 'acts.npz')
  with pytest.raises(ValueError, match=f'token id {act.T5_SENTINEL_ID}, outside the model '
                     rf'vocabulary \[0, {vocab}\)'):
    act.extract_to_file(path, backbone, params, ['a', 'b'], prompts)
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match='token id -1'):
    act.extract_activations(backbone, params, prompts, act.t5_sentinel_inputs(-1))
  with pytest.raises(ValueError, match='integer token ids'):
    act.extract_activations(backbone, params, prompts, {
        'encoder_input_tokens': np.ones((1, 1), np.float32),
        'decoder_input_tokens': np.zeros((1, 1), np.int32)})
  ok = act.extract_activations(backbone, params, prompts, act.t5_sentinel_inputs(vocab - 1))
  assert np.isfinite(ok).all()


def test_non_finite_activations_are_refused_before_writing(small_vocab_model, tmp_path):
  backbone, params = small_vocab_model
  prompts = np.zeros((3, 3, backbone.embed_dim), np.float32)
  prompts[1] = np.inf
  path = str(tmp_path / 'acts.npz')
  with pytest.raises(ValueError, match=r'activations of 1 prompt\(s\) are not finite.*: b;'):
    act.extract_to_file(path, backbone, params, ['a', 'b', 'c'], prompts,
                        act.t5_sentinel_inputs(5), chunk_size=1)
  assert os.listdir(tmp_path) == []


def test_check_finite_names_rows():
  values = np.zeros((7, 2))
  values[[1, 3, 4, 5, 6, 0]] = np.nan
  with pytest.raises(ValueError, match=r'scores of 6 prompt\(s\).*: p0, p1, p3, p4, p5 \.\.\.'):
    act.check_finite(values, 'scores', [f'p{i}' for i in range(7)])
  act.check_finite(np.zeros((2, 2)), 'scores')
