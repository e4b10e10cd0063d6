"""Hugging Face T5 directories without torch: config mapping, round trips, shards, bad input.

Numerical parity with transformers' own T5 is in tests/models/test_t5_parity.py.
"""
import json

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.checkpoints import hf_t5, t5x
from prompt_transfer_jax.config import T5Config

V10 = T5Config(vocab_size=40, emb_dim=8, num_heads=2, head_dim=3, mlp_dim=12,
               num_encoder_layers=2, num_decoder_layers=1, mlp_activations=('relu',),
               logits_via_embedding=True, relative_attention_num_buckets=6,
               relative_attention_max_distance=10)
V11 = V10.replace(mlp_activations=('gelu', 'linear'), logits_via_embedding=False,
                  num_decoder_layers=3, layer_norm_epsilon=1e-5)


def _random_params(config, seed=0):
  rng = np.random.default_rng(seed)
  return t5x.unflatten({path: rng.standard_normal(shape).astype(np.float32)
                        for path, shape in checkpoints.expected_shapes(config).items()})


def _assert_same(a, b):
  a, b = t5x.flatten(a), t5x.flatten(b)
  assert set(a) == set(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


@pytest.mark.parametrize('proj,acts', [('relu', ('relu',)), ('gated-gelu', ('gelu', 'linear')),
                                       ('gated-silu', ('silu', 'linear')),
                                       ('gated-relu', ('relu', 'linear')),
                                       ('gelu_new', ('gelu',)), ('gelu', ('gelu_exact',)),
                                       ('silu', ('silu',))])
def test_feed_forward_proj_mapping(proj, acts):
  assert hf_t5.activations_from_hf(proj) == acts
  assert hf_t5.feed_forward_proj(acts) == proj


@pytest.mark.parametrize('proj', ['tanh-gelu', 'gated-gelu-x', 'gated-mish'])
def test_unsupported_feed_forward_proj(proj):
  with pytest.raises(ValueError, match=f"unsupported feed_forward_proj '{proj}'"):
    hf_t5.activations_from_hf(proj)


def test_config_from_hf_fields():
  hf = {'model_type': 't5', 'vocab_size': 40, 'd_model': 8, 'd_kv': 3, 'd_ff': 12,
        'num_layers': 2, 'num_decoder_layers': 3, 'num_heads': 2,
        'relative_attention_num_buckets': 6, 'relative_attention_max_distance': 10,
        'feed_forward_proj': 'gated-gelu', 'layer_norm_epsilon': 1e-5,
        'tie_word_embeddings': False}
  assert hf_t5.config_from_hf(hf) == V11
  assert hf_t5.config_from_hf({}) == T5Config()  # HF defaults are T5 1.0 small
  with pytest.raises(ValueError, match="model_type 'umt5' is not a T5"):
    hf_t5.config_from_hf({'model_type': 'umt5'})


@pytest.mark.parametrize('config', [V10, V11], ids=['t5_1_0', 't5_1_1'])
def test_save_then_load_round_trips(tmp_path, config):
  params = _random_params(config)
  checkpoints.save_hf_t5(tmp_path, config, params)
  with safe_open(str(tmp_path / hf_t5.WEIGHTS_FILE), framework='numpy') as f:
    names = set(f.keys())
  assert (hf_t5.LM_HEAD in names) == (not config.logits_via_embedding)
  assert 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight' in names
  assert not list(tmp_path.glob('*.tmp-*'))
  loaded_config, loaded = checkpoints.load_t5(tmp_path)
  assert loaded_config == config
  _assert_same(loaded, params)
  bf16_config, bf16 = checkpoints.load_t5(tmp_path, dtype='bfloat16')
  assert bf16_config == config.replace(param_dtype='bfloat16')
  for key, value in t5x.flatten(params).items():
    assert t5x.flatten(bf16)[key].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(t5x.flatten(bf16)[key], value.astype(ml_dtypes.bfloat16))


def _split_into_shards(directory):
  tensors = safetensors.numpy.load_file(str(directory / hf_t5.WEIGHTS_FILE))
  (directory / hf_t5.WEIGHTS_FILE).unlink()
  names = sorted(tensors)
  weight_map = {}
  for i, part in enumerate((names[::2], names[1::2])):
    file = f'model-{i + 1:05d}-of-00002.safetensors'
    safetensors.numpy.save_file({n: tensors[n] for n in part}, str(directory / file))
    weight_map.update({n: file for n in part})
  (directory / hf_t5.WEIGHTS_INDEX_FILE).write_text(json.dumps({'weight_map': weight_map}))
  return weight_map


def test_sharded_index_loads(tmp_path):
  params = _random_params(V11, seed=3)
  checkpoints.save_hf_t5(tmp_path, V11, params)
  _split_into_shards(tmp_path)
  config, loaded = checkpoints.load_t5(tmp_path)
  assert config == V11
  _assert_same(loaded, params)
  (tmp_path / 'model-00002-of-00002.safetensors').unlink()
  with pytest.raises(FileNotFoundError, match='model-00002-of-00002.safetensors named in'):
    checkpoints.load_t5(tmp_path)


def _rewrite(directory, edit):
  path = str(directory / hf_t5.WEIGHTS_FILE)
  tensors = safetensors.numpy.load_file(path)
  edit(tensors)
  safetensors.numpy.save_file(tensors, path)


def test_logits_head_variants(tmp_path):
  """Tied-but-unscaled and untied-but-scaled heads become a logits_dense kernel."""
  params = _random_params(V10, seed=4)
  checkpoints.save_hf_t5(tmp_path, V10, params)
  hf = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps({**hf, 'scale_decoder_outputs': False}))
  config, loaded = checkpoints.load_t5(tmp_path)
  assert not config.logits_via_embedding
  np.testing.assert_array_equal(loaded['decoder']['logits_dense']['kernel'],
                                params['token_embedder']['embedding'].T)
  head = np.random.default_rng(5).standard_normal((V10.vocab_size, V10.emb_dim)).astype(np.float32)
  _rewrite(tmp_path, lambda t: t.update({hf_t5.LM_HEAD: head}))
  (tmp_path / 'config.json').write_text(json.dumps({**hf, 'scale_decoder_outputs': True}))
  config, loaded = checkpoints.load_t5(tmp_path)
  assert not config.logits_via_embedding
  np.testing.assert_allclose(loaded['decoder']['logits_dense']['kernel'],
                             head.T / np.sqrt(V10.emb_dim), rtol=1e-6)
  (tmp_path / 'config.json').write_text(json.dumps({**hf, 'tie_word_embeddings': True}))
  del hf['scale_decoder_outputs']
  (tmp_path / 'config.json').write_text(json.dumps(hf))  # transformers 4: a tied head is ignored
  assert checkpoints.load_t5(tmp_path)[0].logits_via_embedding


def test_bad_hf_directories(tmp_path):
  checkpoints.save_hf_t5(tmp_path, V11, _random_params(V11))
  hf = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps({**hf, 'd_ff': 14}))
  with pytest.raises(ValueError, match=r'parameter decoder/layers_0/mlp/wi_0/kernel has shape '
                     r'\(8, 12\) but config.json expects \(8, 14\)'):
    checkpoints.load_t5(tmp_path)
  (tmp_path / 'config.json').write_text(json.dumps(hf))
  with pytest.raises(ValueError, match=r'parameter .* has shape .* but the given config expects'):
    checkpoints.load_t5(tmp_path, V11.replace(num_heads=3, head_dim=2, mlp_dim=10))
  _rewrite(tmp_path, lambda t: t.update({'encoder.extra.weight': np.zeros(2, np.float32)}))
  with pytest.raises(ValueError,
                     match=r'model.safetensors: unexpected tensors encoder.extra.weight'):
    checkpoints.load_t5(tmp_path)
  _rewrite(tmp_path, lambda t: [t.pop('encoder.extra.weight'),
                                t.pop('decoder.block.2.layer.2.DenseReluDense.wo.weight')])
  with pytest.raises(ValueError, match=r'model.safetensors: missing tensors '
                     r'decoder.block.2.layer.2.DenseReluDense.wo.weight \(1 in all\)'):
    checkpoints.load_t5(tmp_path)
  (tmp_path / hf_t5.WEIGHTS_FILE).unlink()
  (tmp_path / 'pytorch_model.bin').write_bytes(b'not read')
  with pytest.raises(FileNotFoundError,
                     match=r'no model.safetensors or .* \(pickled pytorch_model.bin files '
                     r'are not read\)'):
    checkpoints.load_t5(tmp_path)
