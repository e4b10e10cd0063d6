"""Parity with transformers' PyTorch T5, loading its own `save_pretrained` output via `load_t5`.

T5 1.0 (ReLU, tied and scaled logits; saved sharded) and T5 1.1 (gated GELU, untied `lm_head`
written into the safetensors, since transformers 5 always ties a freshly built model). The
relative-attention max distance is below the sequence length so log-spaced buckets are used.
"""
import jax
import numpy as np
import pytest
import safetensors.numpy

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from prompt_transfer_jax import checkpoints  # pylint: disable=g-import-not-at-top
from prompt_transfer_jax.models import t5, t5_backbone  # pylint: disable=g-import-not-at-top

VOCAB, LENGTH, PROMPT = 64, 24, 5


def _hf_dir(tmp_path, gated: bool, proj=None, **save_kwargs):
  config = transformers.T5Config(
      vocab_size=VOCAB, d_model=16, d_kv=6, d_ff=24, num_layers=2, num_decoder_layers=3,
      num_heads=3, relative_attention_num_buckets=8, relative_attention_max_distance=12,
      feed_forward_proj=proj or ('gated-gelu' if gated else 'relu'), tie_word_embeddings=not gated,
      decoder_start_token_id=0, dropout_rate=0.0)
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  model.save_pretrained(tmp_path, safe_serialization=True, **save_kwargs)
  return tmp_path


def _untie_head(directory):
  path = str(directory / 'model.safetensors')
  tensors = safetensors.numpy.load_file(path)
  tensors['lm_head.weight'] = np.random.default_rng(1).standard_normal(
      tensors['shared.weight'].shape).astype(np.float32)
  safetensors.numpy.save_file(tensors, path, metadata={'format': 'pt'})


def _reference(directory):
  return transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()


def _batch():
  rng = np.random.RandomState(0)
  ids = rng.randint(2, VOCAB, (3, LENGTH)).astype(np.int32)
  ids[0, 15:] = 0
  ids[1, 20:] = 0
  ids[:, -1][ids[:, -1] > 0] = 1
  targets = rng.randint(2, VOCAB, (3, 7)).astype(np.int32)
  targets[1, 4:] = 0
  targets[2, 6:] = 0
  return {'encoder_input_tokens': ids, 'decoder_target_tokens': targets,
          'decoder_input_tokens': np.asarray(t5.shift_right(targets)),
          'decoder_loss_weights': (targets > 0).astype(np.float32)}


def _check_logits(directory, reference):
  config, params = checkpoints.load_t5(directory)
  batch = _batch()
  with jax.default_matmul_precision('highest'):
    ours = np.asarray(jax.jit(t5.T5(config).apply)(
        {'params': params}, batch['encoder_input_tokens'], batch['decoder_input_tokens']))
  with torch.no_grad():
    ids = torch.tensor(batch['encoder_input_tokens'], dtype=torch.long)
    ref = reference(input_ids=ids, attention_mask=(ids > 0).long(),
                    decoder_input_ids=torch.tensor(batch['decoder_input_tokens'],
                                                   dtype=torch.long)).logits.numpy()
  assert np.abs(ours - ref).max() <= 1e-4, np.abs(ours - ref).max()
  return config, params


def _check_prompted_loss(config, params, reference):
  """Our per-example summed loss with a prompt == HF fed `[prompt; embed(ids)]` and labels."""
  batch = _batch()
  prompt = np.random.RandomState(2).randn(PROMPT, config.emb_dim).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    loss, tokens = jax.jit(t5_backbone.T5Backbone(config).token_loss)(params, prompt, batch)
  for i in range(3):
    ids = torch.tensor(batch['encoder_input_tokens'][i:i + 1], dtype=torch.long)
    labels = torch.tensor(batch['decoder_target_tokens'][i:i + 1], dtype=torch.long)
    with torch.no_grad():
      embedded = torch.cat([torch.tensor(prompt)[None], reference.shared(ids)], dim=1)
      mask = torch.cat([torch.ones(1, PROMPT, dtype=torch.long), (ids > 0).long()], dim=1)
      out = reference(inputs_embeds=embedded, attention_mask=mask,
                      labels=labels.masked_fill(labels == 0, -100))
    n = int((labels > 0).sum())
    assert int(tokens[i]) == n
    np.testing.assert_allclose(float(loss[i]), float(out.loss) * n, rtol=1e-5, atol=1e-4)


def test_t5_1_0_sharded_parity(tmp_path):
  directory = _hf_dir(tmp_path, gated=False, max_shard_size='40KB')
  assert (directory / 'model.safetensors.index.json').is_file()
  assert len(list(directory.glob('model-*.safetensors'))) > 1
  reference = _reference(directory)
  config, params = _check_logits(directory, reference)
  assert config.logits_via_embedding and config.mlp_activations == ('relu',)
  _check_prompted_loss(config, params, reference)


def test_t5_1_1_parity(tmp_path):
  directory = _hf_dir(tmp_path, gated=True)
  tied_config, _ = _check_logits(directory, _reference(directory))  # head tied, not scaled
  assert not tied_config.logits_via_embedding
  _untie_head(directory)
  reference = _reference(directory)
  assert not torch.equal(reference.lm_head.weight, reference.shared.weight)
  config, params = _check_logits(directory, reference)
  assert config.mlp_activations == ('gelu', 'linear') and not config.logits_via_embedding
  _check_prompted_loss(config, params, reference)


def test_erf_gelu_parity(tmp_path):
  directory = _hf_dir(tmp_path, gated=False, proj='gelu')
  config, _ = _check_logits(directory, _reference(directory))
  assert config.mlp_activations == ('gelu_exact',)


def test_saved_model_loads_in_transformers(tmp_path):
  """`save_hf_t5` output is the same model for transformers (untied head kept)."""
  source = _hf_dir(tmp_path / 'source', gated=True)
  _untie_head(source)
  config, params = checkpoints.load_t5(source)
  checkpoints.save_hf_t5(tmp_path / 'copy', config, params)
  _check_logits(tmp_path / 'copy', _reference(tmp_path / 'copy'))
  _check_logits(source, _reference(tmp_path / 'copy'))
