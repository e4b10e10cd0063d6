"""Model behaviour beyond reference parity: prompts, capture, remat, dropout, dtypes, buckets."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_transfer_jax.config import T5Config, t5_preset
from prompt_transfer_jax.models import t5

CFG = T5Config(vocab_size=128, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=24,
               num_encoder_layers=2, num_decoder_layers=2, mlp_activations=('gelu', 'linear'),
               logits_via_embedding=False, relative_attention_num_buckets=8,
               relative_attention_max_distance=16)


@pytest.fixture(scope='module')
def setup():
  params = t5.init_params(CFG, jax.random.PRNGKey(0))
  rng = np.random.RandomState(0)
  enc = rng.randint(2, 128, (3, 10)).astype(np.int32)
  enc[1, 6:] = 0
  dec = rng.randint(2, 128, (3, 4)).astype(np.int32)
  prompt = rng.randn(5, 16).astype(np.float32)
  return params, enc, dec, prompt


def test_shared_prompt_equals_per_example_prompt(setup):
  params, enc, dec, prompt = setup
  model = t5.T5(CFG)
  shared = model.apply({'params': params}, enc, dec, prompt=prompt)
  batched = model.apply({'params': params}, enc, dec, prompt=np.stack([prompt] * 3))
  np.testing.assert_allclose(shared, batched, atol=1e-6)
  other = model.apply({'params': params}, enc, dec, prompt=prompt + 1.0)
  assert np.abs(np.asarray(other) - np.asarray(shared)).max() > 1e-3


def test_pads_do_not_change_outputs(setup):
  params, enc, dec, prompt = setup
  model = t5.T5(CFG)
  short = enc[1:2, :6]
  padded = np.concatenate([short, np.zeros((1, 7), np.int32)], axis=1)
  a = model.apply({'params': params}, short, dec[1:2], prompt=prompt)
  b = model.apply({'params': params}, padded, dec[1:2], prompt=prompt)
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_wrong_prompt_shape_names_both_shapes(setup):
  params, enc, dec, _ = setup
  with pytest.raises(ValueError, match=r'prompt shape \(5, 7\).*\[P, 16\]'):
    t5.T5(CFG).apply({'params': params}, enc, dec, prompt=np.zeros((5, 7), np.float32))


def test_ffn_capture_is_opt_in_and_free(setup):
  params, enc, dec, prompt = setup
  model = t5.T5(CFG)
  plain = model.apply({'params': params}, enc, dec, prompt=prompt)
  logits, state = model.apply({'params': params}, enc, dec, prompt=prompt, mutable=['intermediates'])
  np.testing.assert_array_equal(plain, logits)
  enc_acts = state['intermediates']['encoder']
  assert set(enc_acts) == {'layers_0', 'layers_1'}
  pre = enc_acts['layers_0']['mlp'][t5.FFN_PRE_ACTIVATION][0]
  hidden = enc_acts['layers_0']['mlp'][t5.FFN_HIDDEN][0]
  assert pre.shape == (3, 5 + 10, 24) and hidden.shape == pre.shape
  dec_pre = state['intermediates']['decoder']['layers_1']['mlp'][t5.FFN_PRE_ACTIVATION][0]
  assert dec_pre.shape == (3, 4, 24)
  relu_cfg = CFG.replace(mlp_activations=('relu',), logits_via_embedding=True)
  relu_params = t5.init_params(relu_cfg, jax.random.PRNGKey(1))
  _, relu_state = t5.T5(relu_cfg).apply({'params': relu_params}, enc, dec, prompt=prompt,
                                        mutable=['intermediates'])
  mlp = relu_state['intermediates']['encoder']['layers_1']['mlp']
  np.testing.assert_array_equal(mlp[t5.FFN_HIDDEN][0], np.maximum(mlp[t5.FFN_PRE_ACTIVATION][0], 0))


def test_remat_gives_same_values_and_prompt_gradients(setup):
  params, enc, dec, prompt = setup

  def loss(cfg, q):
    return jnp.sum(t5.T5(cfg).apply({'params': params}, enc, dec, prompt=q) ** 2)

  g_plain = jax.grad(lambda q: loss(CFG, q))(prompt)
  g_remat = jax.grad(lambda q: loss(CFG.replace(remat=True), q))(prompt)
  np.testing.assert_allclose(g_plain, g_remat, rtol=1e-5, atol=1e-5)
  dropout_cfg = CFG.replace(dropout_rate=0.1)
  rngs = {'dropout': jax.random.PRNGKey(3)}
  with_dropout = lambda cfg: t5.T5(cfg).apply({'params': params}, enc, dec, prompt=prompt,
                                              enable_dropout=True, rngs=rngs)
  np.testing.assert_allclose(with_dropout(dropout_cfg), with_dropout(dropout_cfg.replace(remat=True)),
                             rtol=1e-5, atol=1e-5)


def test_dropout_is_active_only_when_enabled(setup):
  params, enc, dec, prompt = setup
  model = t5.T5(CFG.replace(dropout_rate=0.3))
  off = model.apply({'params': params}, enc, dec, prompt=prompt)
  np.testing.assert_allclose(off, t5.T5(CFG).apply({'params': params}, enc, dec, prompt=prompt), atol=1e-6)
  rngs = lambda s: {'dropout': jax.random.PRNGKey(s)}
  on1 = model.apply({'params': params}, enc, dec, prompt=prompt, enable_dropout=True, rngs=rngs(1))
  on1b = model.apply({'params': params}, enc, dec, prompt=prompt, enable_dropout=True, rngs=rngs(1))
  on2 = model.apply({'params': params}, enc, dec, prompt=prompt, enable_dropout=True, rngs=rngs(2))
  np.testing.assert_array_equal(on1, on1b)
  assert np.abs(np.asarray(on1) - np.asarray(off)).max() > 1e-3
  assert np.abs(np.asarray(on1) - np.asarray(on2)).max() > 1e-3


def test_bfloat16_activations_stay_close_to_float32(setup):
  params, enc, dec, prompt = setup
  f32 = np.asarray(t5.T5(CFG).apply({'params': params}, enc, dec, prompt=prompt))
  bf16 = t5.T5(CFG.replace(dtype='bfloat16')).apply({'params': params}, enc, dec, prompt=prompt)
  assert bf16.dtype == jnp.float32  # logits stay float32
  assert np.abs(np.asarray(bf16) - f32).max() <= 0.05 * np.abs(f32).max()


def test_relative_position_buckets_match_hf():
  torch = pytest.importorskip('torch')
  from transformers.models.t5.modeling_t5 import T5Attention
  rel = np.arange(-300, 300, dtype=np.int32)
  for bidirectional in (True, False):
    for buckets, max_distance in ((32, 128), (8, 20), (4, 8)):
      ours = t5.relative_position_bucket(rel, bidirectional, buckets, max_distance)
      ref = T5Attention._relative_position_bucket(torch.tensor(rel), bidirectional, buckets,
                                                  max_distance).numpy()
      np.testing.assert_array_equal(ours, ref)


def test_presets_have_expected_shapes():
  abstract = t5.abstract_params(t5_preset('t5_1_1_small'))
  assert abstract['encoder']['layers_0']['attention']['query']['kernel'].value.shape == (512, 384)
  assert 'logits_dense' in abstract['decoder']
  assert 'wi' in t5.abstract_params(t5_preset('t5_small'))['encoder']['layers_5']['mlp']
  with pytest.raises(ValueError, match='unknown T5 preset'):
    t5_preset('t5_huge')


def test_shift_right():
  np.testing.assert_array_equal(t5.shift_right(jnp.array([[5, 6, 1]])), [[0, 5, 6]])
