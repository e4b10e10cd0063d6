"""The extractor against the model's FFN projections captured directly, one prompt at a time,
and on a mesh against one device."""
import textwrap

import jax
import numpy as np
import pytest
from flax import linen as nn

from prompt_transfer_jax.analysis import activations as act
from prompt_transfer_jax.analysis.activation_store import load_activations
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import t5 as t5_lib
from tests.fake_devices import run_script

CONFIG = t5_preset('t5x_tiny')


@pytest.fixture
def prompts():
  return np.random.default_rng(0).normal(size=(5, 4, CONFIG.emb_dim)).astype(np.float32)


@jax.jit
def _capture(params, prompt, enc, dec):
  is_wi = lambda mdl, method: isinstance(mdl, t5_lib.Dense) and mdl.name in ('wi_0', 'wi_1')
  return t5_lib.T5(CONFIG).apply({'params': params}, enc, dec, prompt=prompt,
                                 capture_intermediates=is_wi)[1]


def captured_ffn(params, prompt, enc, dec):
  """Outputs of every `wi_0` / `wi_1` Dense, captured by flax (not through the model's `sow`)."""
  state = _capture(params, prompt, enc, dec)
  out = {}
  for stack in ('encoder', 'decoder'):
    layers = state['intermediates'][stack]
    wi0 = np.stack([layers[f'layers_{i}']['mlp']['wi_0']['__call__'][0] for i in range(2)], 1)
    wi1 = np.stack([layers[f'layers_{i}']['mlp']['wi_1']['__call__'][0] for i in range(2)], 1)
    out[stack] = wi0, np.asarray(nn.gelu(wi0, approximate=True)) * wi1  # [B, layers, len, d_ff]
  return out


def test_default_matches_decoder_wi0_first_step(prompts, tiny_model):
  backbone, params = tiny_model
  got = act.extract_activations(backbone, params, prompts, chunk_size=2)  # 3 chunks, last padded
  inputs = act.t5_sentinel_inputs()
  want = np.stack([captured_ffn(params, p, inputs['encoder_input_tokens'],
                                inputs['decoder_input_tokens'])['decoder'][0][0, :, 0] for p in prompts])
  assert got.shape == (5, CONFIG.num_decoder_layers, CONFIG.mlp_dim)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert 0.1 < (got > 0).mean() < 0.9


@pytest.mark.parametrize('position', ['after_prompt', 'prompt_mean', 'mask_slot', 5])
def test_encoder_positions_with_task_inputs(prompts, position, tiny_model):
  """Two input examples (one padded) per prompt, averaged; encoder hidden FFN of layer 1 only."""
  backbone, params = tiny_model
  enc = np.array([[37, 8, 1], [52, 1, 0]], np.int32)
  dec = np.zeros((2, 1), np.int32)
  spec = act.ExtractionSpec('encoder', position, t5_lib.FFN_HIDDEN, layers=(1,))
  got = act.extract_activations(backbone, params, prompts, {'encoder_input_tokens': enc,
                                                            'decoder_input_tokens': dec}, spec, 3)
  want = []
  for p in prompts:
    hidden = captured_ffn(params, p, enc, dec)['encoder'][1][:, 1:2]  # [M, 1, len, d_ff]
    if position == 'prompt_mean':
      sel = hidden[:, :, :4].mean(axis=2)
    else:
      sel = hidden[:, :, {'after_prompt': 4, 'mask_slot': 0}.get(position, position)]
    want.append(sel.mean(axis=0))
  np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5)


def test_streamed_file_round_trip(tmp_path, prompts, tiny_model):
  backbone, params = tiny_model
  path = str(tmp_path / 'acts.npz')
  names = [f'task{i}' for i in range(5)]
  act.extract_to_file(path, backbone, params, names, prompts, chunk_size=2, meta={'preset': 't5x_tiny'},
                      progress=False)
  store = load_activations(path)
  assert store.names == names
  np.testing.assert_array_equal(store.layers, [0, 1])
  assert store.meta['spec']['position'] == 'first_step' and store.meta['preset'] == 't5x_tiny'
  np.testing.assert_allclose(store.activations,
                             act.extract_activations(backbone, params, prompts, chunk_size=2), atol=0)
  with np.load(path, allow_pickle=False) as plain:  # an ordinary npz
    assert plain['activations'].shape == (5, 2, CONFIG.mlp_dim)
  np.testing.assert_array_equal(store.select(['task3', 'task1']), store.activations[[3, 1]])
  with pytest.raises(KeyError, match='no entry for nope'):
    store.select(['nope'])


def test_roberta_mask_slot_matches_captured_wi(tiny_roberta_model):
  """RoBERTa default: encoder FFN `wi` output at the `<mask>` slot for input prompt + `<s>`."""
  from prompt_transfer_jax.models import roberta as roberta_lib
  backbone, params = tiny_roberta_model
  prompts = np.random.default_rng(1).normal(size=(3, 5, backbone.embed_dim)).astype(np.float32)
  tokens = act.roberta_bos_inputs()['encoder_input_tokens']
  got = act.extract_activations(backbone, params, prompts, act.roberta_bos_inputs(), act.ROBERTA_SPEC)
  is_wi = lambda mdl, method: mdl.name == 'wi' and method == '__call__'
  capture = jax.jit(lambda p: roberta_lib.RoBERTa(backbone.config).apply(
      {'params': params}, tokens, p, capture_intermediates=is_wi, mutable=['intermediates'],
      method=roberta_lib.RoBERTa.encode)[1]['intermediates']['encoder'])
  want = []
  for p in prompts:
    layers = capture(p)
    want.append(np.stack([layers[f'layers_{i}']['mlp']['wi']['__call__'][0][0, 0]
                          for i in range(backbone.config.num_hidden_layers)]))
  np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5)
  # Row 0 of the prompt is the <mask> slot (overwritten): it does not change the activations.
  changed = prompts.copy()
  changed[:, 0] += 5.0
  np.testing.assert_allclose(act.extract_activations(backbone, params, changed, act.roberta_bos_inputs(),
                                                     act.ROBERTA_SPEC), got, atol=1e-6)


def test_spec_errors(prompts, tiny_model):
  with pytest.raises(ValueError, match="'first_step' is a decoder position"):
    act.ExtractionSpec('encoder', 'first_step')
  with pytest.raises(ValueError, match='position must be'):
    act.ExtractionSpec('decoder', 'middle')
  backbone, params = tiny_model
  with pytest.raises(ValueError, match=r'prompts must be \[N, P, 8\]'):
    act.extract_activations(backbone, params, prompts[..., :3])


_MESH_SCRIPT = textwrap.dedent('''
    import jax
    import numpy as np
    from prompt_transfer_jax import tasks
    from prompt_transfer_jax.analysis import activations as act
    from prompt_transfer_jax.trainer import frozen_model
    t5 = frozen_model.t5_model(preset='t5_demo', config_overrides=dict(
        vocab_size=tasks.SYNTH_VOCAB_SIZE, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64))
    roberta = frozen_model.roberta_model(preset='roberta_tiny',
                                         config_overrides={'vocab_size': 1024})
    rng = np.random.default_rng(0)
    for model, spec, inputs in ((t5, act.T5_SPEC, act.t5_sentinel_inputs(5)),
                                (roberta, act.ROBERTA_SPEC, act.roberta_bos_inputs())):
      prompts = rng.normal(size=(5, 4, model.embed_dim)).astype(np.float32)
      one = act.extract_activations(model.backbone, model.params, prompts, inputs, spec, 2)
      placed = model.on_mesh(2)                        # a 4 x 2 (data, model) mesh
      sharded = [l for l in jax.tree.leaves(placed.params)
                 if not l.sharding.is_fully_replicated]
      assert sharded, 'nothing is sharded over the model axis'
      mesh = act.extract_activations(model.backbone, placed, prompts, inputs, spec, 2)
      assert mesh.shape == one.shape, (mesh.shape, one.shape)
      np.testing.assert_allclose(mesh, one, rtol=1e-5, atol=1e-5)
      print(model.family, 'OK', len(sharded))
''')


def test_sharded_parameters_give_the_same_activations_as_one_device():
  """`PlacedParams` on a 4 x 2 fake-device mesh (T5 and RoBERTa, 3 chunks, the last padded):
  the activations of one device, to 1e-5."""
  out = run_script(_MESH_SCRIPT)
  assert 't5 OK' in out and 'roberta OK' in out, out
