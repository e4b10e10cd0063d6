"""Incremental decoding: the cache gives full recomputation's tokens; beam search is T5X's."""
import itertools
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import decoding, t5
from prompt_transfer_jax.models.t5_backbone import T5Backbone
from tests.fake_devices import run_script

VOCAB = 64
PRESETS = {
    't5_1_0': t5_preset('t5_small').replace(vocab_size=VOCAB, emb_dim=16, num_heads=2, head_dim=8,
                                            mlp_dim=24, num_encoder_layers=2,
                                            num_decoder_layers=2,
                                            relative_attention_num_buckets=8,
                                            relative_attention_max_distance=16),
    't5_1_1': t5_preset('t5_1_1_tiny').replace(vocab_size=VOCAB),
}


def _params(config):
  params = jax.tree.map(np.array, t5.init_params(config, jax.random.PRNGKey(3)))
  if config.logits_via_embedding:
    # A random N(0, 1) tied embedding dominates the residual stream (the decoder copies its
    # input); shrink it, and zero pad's row, so that greedy outputs vary.
    params['token_embedder']['embedding'] *= 0.1
    params['token_embedder']['embedding'][0] = 0.0
  return params


@pytest.fixture(scope='module', params=sorted(PRESETS))
def model(request):
  config = PRESETS[request.param]
  rng = np.random.RandomState(0)
  enc = rng.randint(2, VOCAB, (4, 10)).astype(np.int32)
  enc[1, 6:] = 0                 # padded rows
  enc[3, 3:] = 0
  prompts = rng.randn(4, 5, config.emb_dim).astype(np.float32)   # one prompt per example
  return T5Backbone(config), _params(config), enc, prompts


def test_decode_step_logits_equal_the_full_decoder(model):
  backbone, params, enc, prompts = model
  encoded, mask = backbone.encode(params, prompts, enc)
  targets = np.random.RandomState(1).randint(2, VOCAB, (4, 7)).astype(np.int32)
  full = backbone.decode(params, encoded, mask, t5.shift_right(targets))
  cache, step = backbone._decoder_fn(params, encoded, mask, 7)
  tokens = np.asarray(t5.shift_right(targets))
  for i in range(7):
    logits, cache = step(tokens[:, i:i + 1], cache)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-4, rtol=1e-4)
  assert int(cache['decoder']['layers_0']['self_attention']['cache_index']) == 7
  key = cache['decoder']['layers_1']['self_attention']['cached_key']
  assert key.shape == (4, backbone.config.num_heads, backbone.config.head_dim, 7)


def test_cached_greedy_equals_full_recomputation(model):
  backbone, params, enc, prompts = model
  for prompt, min_length in ((prompts, 0), (prompts[0], 3)):   # per-example / shared prompt
    cached = jax.jit(lambda p, q, e: backbone.greedy_decode(p, q, e, 12, 1, min_length))(
        params, prompt, enc)
    full = jax.jit(lambda p, q, e: backbone.greedy_decode_uncached(p, q, e, 12, 1, min_length))(
        params, prompt, enc)
    np.testing.assert_array_equal(cached, full)
    assert len(np.unique(np.asarray(cached))) >= 3         # not a degenerate constant output
    if min_length:
      assert not np.any(np.asarray(cached)[:, :min_length] == 1)


def _eos_heavy(params):
  """Raises EOS's logit so that greedy decoding ends inside the length (beam 1 then = greedy)."""
  params = jax.tree.map(np.array, params)
  if 'logits_dense' in params['decoder']:
    params['decoder']['logits_dense']['kernel'][:, 1] *= 4.0
  else:
    params['token_embedder']['embedding'][1] *= 4.0
  return params


def _beam_one_reference(greedy, log_probs, alpha, eos=1):
  """What T5X's beam search with one beam returns, from greedy's path: each step keeps the 2
  best continuations, so greedy's prefix + EOS joins the finished set wherever EOS is the
  runner-up; the best finished (length-normalized) wins, greedy itself if nothing finished.
  `greedy` `[T]`, `log_probs` `[T, V]` along greedy's path."""
  finished, total = [], 0.0
  for t, tok in enumerate(greedy):
    order = np.argsort(-log_probs[t])
    if order[0] == eos or order[1] == eos:
      finished.append(((total + log_probs[t, eos]) / ((5.0 + t + 1) / 6.0) ** alpha,
                       list(greedy[:t]) + [eos] + [0] * (len(greedy) - t - 1)))
    if tok == eos:
      break
    total += log_probs[t, tok]
  return max(finished)[1] if finished else list(greedy)


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_beam_one_is_greedy(model, alpha):
  """Beam 1 follows greedy's path; it returns greedy's sequence, or a prefix + EOS that scored
  better when EOS was the runner-up (T5X keeps 2K candidates per step)."""
  backbone, params, enc, prompts = model
  params = _eos_heavy(params)
  greedy = np.asarray(backbone.greedy_decode(params, prompts, enc, 12))
  beam = np.asarray(backbone.beam_search(params, prompts, enc, 12, beam_size=1, alpha=alpha))
  batch = {'encoder_input_tokens': enc, 'decoder_input_tokens': t5.shift_right(greedy)}
  log_probs = np.asarray(jax.nn.log_softmax(backbone.logits(params, prompts, batch), axis=-1))
  for row in range(len(enc)):
    assert list(beam[row]) == _beam_one_reference(greedy[row], log_probs[row], alpha)
  assert np.any(np.all(beam == greedy, axis=1)) and np.any(greedy == 1)


def _markov(vocab, length, seed):
  """A toy decoder: logits depend on the step and the previous token (cache = the step)."""
  table = jax.random.normal(jax.random.PRNGKey(seed), (length, vocab, vocab)) * 2.0

  def tokens_to_logits(tokens, cache):
    return table[cache['cache_index'], tokens[:, 0]], {'cache_index': cache['cache_index'] + 1}

  def log_prob(seq):
    lp, prev = 0.0, 0
    for i, tok in enumerate(seq):
      lp += float(jax.nn.log_softmax(table[i, prev])[tok])
      prev = tok
    return lp

  return tokens_to_logits, log_prob


@pytest.mark.parametrize('alpha,min_length', [(0.0, 0), (0.6, 0), (1.0, 2)])
def test_beam_search_equals_brute_force(alpha, min_length):
  """V=4 (EOS=1), 3 steps: with 2K >= every candidate the search is exhaustive."""
  vocab, length, beams = 4, 3, 18
  step, log_prob = _markov(vocab, length, seed=7)
  finished = []
  for n in range(max(min_length, 0) + 1, length + 1):
    for body in itertools.product([t for t in range(vocab) if t != 1], repeat=n - 1):
      seq = list(body) + [1]
      score = log_prob(seq) / ((5.0 + n) / 6.0) ** alpha
      finished.append((score, seq + [0] * (length - n)))
  finished.sort(key=lambda x: -x[0])
  seqs, scores = decoding.beam_search({'cache_index': jnp.array(0)}, step, 1, beams, length,
                                      eos_id=1, alpha=alpha, min_length=min_length)
  for i in range(5):
    assert list(np.asarray(seqs[0, i])) == finished[i][1]
    assert float(scores[0, i]) == pytest.approx(finished[i][0], abs=1e-4)


def test_generic_beam_one_and_sampling_follow_greedy():
  vocab, length = 6, 8
  cache = {'cache_index': jnp.array(0)}
  for seed in range(2):
    step, _ = _markov(vocab, length, seed=seed)
    greedy = np.asarray(decoding.temperature_sample(cache, step, 1, length, eos_id=1))[0]
    beam, _ = decoding.beam_search(cache, step, 1, 1, length, eos_id=1, alpha=0.6)
    prev = np.concatenate([[0], greedy[:-1]])
    log_probs = np.asarray(jax.nn.log_softmax(
        step(prev[:, None], {'cache_index': jnp.arange(length)})[0], axis=-1))
    assert list(np.asarray(beam[0, 0])) == _beam_one_reference(greedy, log_probs, 0.6)
  sample = lambda rows, t: np.asarray(decoding.temperature_sample(
      cache, step, rows, length, 1, temperature=t, rng=jax.random.PRNGKey(0)))
  np.testing.assert_array_equal(sample(1, 1e-3)[0], greedy)
  assert len({tuple(row) for row in sample(8, 2.0)}) > 1     # rows draw independently
  with pytest.raises(ValueError, match='needs an rng'):
    decoding.temperature_sample(cache, step, 1, length, 1, temperature=1.0)


_MESH_SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from flax import linen as nn
    from prompt_transfer_jax import partitioning
    from prompt_transfer_jax.config import t5_preset
    from prompt_transfer_jax.models import t5
    from prompt_transfer_jax.models.t5_backbone import T5Backbone
    assert jax.device_count() == 8
    cfg = t5_preset('t5x_tiny').replace(vocab_size=64)
    params = jax.tree.map(np.array, t5.init_params(cfg, jax.random.PRNGKey(1)))
    params['decoder']['logits_dense']['kernel'][:, 1] *= 3.0
    bb = T5Backbone(cfg)
    rng = np.random.RandomState(0)
    enc = rng.randint(2, 64, (8, 12)).astype(np.int32); enc[:, 9:] = 0
    prompt = rng.randn(3, cfg.emb_dim).astype(np.float32)
    greedy = lambda p, e, q: bb.greedy_decode(p, q, e, 10, 1, 2)
    beam = lambda p, e, q: bb.beam_search(p, q, e, 10, 1, beam_size=3, alpha=0.6)
    single = [np.asarray(jax.jit(f)(params, enc, prompt)) for f in (greedy, beam)]
    rules = partitioning.standard_logical_axis_rules()
    mesh = partitioning.make_mesh(model_parallel=4)
    shardings = partitioning.logical_shardings(t5.abstract_params(cfg), mesh, rules)
    sharded = partitioning.place(params, shardings)
    batch = jax.device_put(enc, partitioning.data_sharding(mesh))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      for f, ref in zip((greedy, beam), single):
        out = np.asarray(jax.jit(f)(sharded, batch, prompt))
        assert (out == ref).all(), (out, ref)
        print('OK', len(np.unique(out)))
''')


def test_cached_decoding_on_a_2x4_mesh_equals_one_device():
  assert run_script(_MESH_SCRIPT).count('OK') == 2
