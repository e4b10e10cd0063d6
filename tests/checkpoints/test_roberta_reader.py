"""The Hugging Face RoBERTa reader against transformers' own `RobertaForMaskedLM` files."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from prompt_transfer_jax.checkpoints.roberta import load_roberta
from prompt_transfer_jax.models import roberta as roberta_lib

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

TINY = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=40, layer_norm_eps=1e-5,
            type_vocab_size=1)
# Right-padded with RoBERTa's pad id 1; `<s>` = 0, `</s>` = 2.
TOKENS = np.array([[0, 5, 6, 7, 2, 1, 1, 1],
                   [0, 8, 9, 10, 11, 12, 13, 2],
                   [0, 3, 2, 1, 1, 1, 1, 1]], np.int32)


def _hf_model(**overrides):
  """A random tiny `RobertaForMaskedLM` with every parameter perturbed (biases, LayerNorms too)."""
  torch.manual_seed(0)
  model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**{**TINY, **overrides})).eval()
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.3 * torch.randn_like(param))
  return model


@pytest.fixture(scope='module')
def hf_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('roberta_tiny'))
  model = _hf_model()
  model.save_pretrained(path)
  return model, path


def test_logits_match_transformers_with_padding(hf_dir):
  model, path = hf_dir
  config, params = load_roberta(path)
  assert (config.hidden_size, config.layer_norm_eps, config.mask_id) == (16, 1e-5, 63)
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(TOKENS, dtype=torch.long),
                attention_mask=torch.tensor(TOKENS != 1, dtype=torch.long)).logits.numpy()
  ours = np.asarray(roberta_lib.RoBERTa(config).apply({'params': params}, jnp.asarray(TOKENS)))
  assert ours.shape == ref.shape == (3, 8, 64)
  assert np.abs(ours - ref).max() <= 1e-4  # measured ~2.4e-6, pad positions included


def test_sharded_and_half_precision_directories(hf_dir, tmp_path):
  model, path = hf_dir
  _, params = load_roberta(path)
  sharded = tmp_path / 'sharded'
  model.save_pretrained(sharded, max_shard_size='20KB')
  assert (sharded / 'model.safetensors.index.json').exists()
  _, sharded_params = load_roberta(str(sharded))
  jax.tree_util.tree_map(np.testing.assert_array_equal, sharded_params, params)
  half = tmp_path / 'half'
  model.to(torch.float16).save_pretrained(half)
  model.to(torch.float32)
  _, half_params = load_roberta(str(half))
  word = half_params['embeddings']['word_embeddings']['embedding']
  assert word.dtype == np.float32
  full = params['embeddings']['word_embeddings']['embedding']
  np.testing.assert_array_equal(word, full.astype(np.float16))


def test_mask_id_from_tokenizer_files(hf_dir, tmp_path):
  _, path = hf_dir
  for name in ('config.json', 'model.safetensors'):
    os.symlink(os.path.join(path, name), tmp_path / name)
  (tmp_path / 'tokenizer.json').write_text(json.dumps(
      {'added_tokens': [{'id': 1, 'content': '<pad>'}, {'id': 60, 'content': '<mask>'}]}))
  assert load_roberta(str(tmp_path))[0].mask_id == 60
  (tmp_path / 'vocab.json').write_text(json.dumps({'<s>': 0, '<mask>': 61}))
  assert load_roberta(str(tmp_path))[0].mask_id == 61
  assert load_roberta(str(tmp_path), mask_token_id=7)[0].mask_id == 7


def _copy(path, dst, config_edit=None, tensor_edit=None):
  os.makedirs(dst)
  with open(os.path.join(path, 'config.json')) as f:
    config = json.load(f)
  config.update(config_edit or {})
  with open(os.path.join(dst, 'config.json'), 'w') as f:
    json.dump(config, f)
  tensors = safetensors.numpy.load_file(os.path.join(path, 'model.safetensors'))
  if tensor_edit:
    tensor_edit(tensors)
  safetensors.numpy.save_file(tensors, os.path.join(dst, 'model.safetensors'))
  return str(dst)


def test_bad_checkpoints_give_one_line_errors(hf_dir, tmp_path):
  _, path = hf_dir
  bad = _copy(path, tmp_path / 'ffn', {'intermediate_size': 48})
  with pytest.raises(ValueError, match=r"model.safetensors: tensor 'roberta.encoder.layer.0."
                     r"intermediate.dense.weight' has shape \(32, 16\), expected \(48, 16\)"):
    load_roberta(bad)
  bad = _copy(path, tmp_path / 'layers', {'num_hidden_layers': 1})
  with pytest.raises(ValueError, match=r'unexpected tensors .*roberta\.encoder\.layer\.1\.'):
    load_roberta(bad)
  bad = _copy(path, tmp_path / 'nohead', tensor_edit=lambda t: t.pop('lm_head.dense.weight'))
  with pytest.raises(ValueError, match=r"tensor 'lm_head.dense.weight' is missing"):
    load_roberta(bad)

  def untie(tensors):
    tensors['lm_head.decoder.weight'] = tensors['roberta.embeddings.word_embeddings.weight'] + 1
  bad = _copy(path, tmp_path / 'untied', tensor_edit=untie)
  with pytest.raises(ValueError, match='untied MLM decoders are not supported'):
    load_roberta(bad)
  bad = _copy(path, tmp_path / 'bert', {'model_type': 'bert'})
  with pytest.raises(ValueError, match=r"config.json: model_type 'bert' is not one of"):
    load_roberta(bad)
  empty = tmp_path / 'bin_only'
  empty.mkdir()
  (empty / 'config.json').write_text(json.dumps({'model_type': 'roberta'}))
  with pytest.raises(FileNotFoundError, match='neither model.safetensors'):
    load_roberta(str(empty))
  with pytest.raises(FileNotFoundError, match='not a directory nor a RoBERTa preset'):
    load_roberta(str(tmp_path / 'absent'))


def test_preset_name_gives_random_parameters():
  config, params = load_roberta('roberta_tiny', vocab_size=64)
  assert config.hidden_size == 16 and config.vocab_size == 64
  assert params['embeddings']['word_embeddings']['embedding'].shape == (64, 16)
  assert isinstance(params['lm_head']['bias'], np.ndarray)
