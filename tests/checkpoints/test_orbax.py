"""Orbax OCDBT checkpoints (the layout of T5X's Orbax checkpointer) written by orbax itself."""
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.checkpoints import t5x
from prompt_transfer_jax.config import T5Config

SMALL = T5Config(vocab_size=48, emb_dim=6, num_heads=2, head_dim=3, mlp_dim=10,
                 num_encoder_layers=1, num_decoder_layers=2, mlp_activations=('relu',),
                 logits_via_embedding=True, relative_attention_num_buckets=6)


def _save(model_dir, step, tree):
  manager = ocp.CheckpointManager(
      model_dir, options=ocp.CheckpointManagerOptions(step_prefix='checkpoint', create=True))
  manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(tree)))
  manager.wait_until_finished()
  manager.close()


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  rng = np.random.default_rng(1)
  params = {path: rng.standard_normal(shape).astype(np.float32)
            for path, shape in checkpoints.expected_shapes(SMALL).items()}
  prompt = rng.standard_normal((4, SMALL.emb_dim)).astype(np.float32)
  target = t5x.unflatten({**params, ('encoder', 'prompt', 'prompt', 'prompt'): prompt})
  model_dir = tmp_path_factory.mktemp('orbax') / 'model'
  _save(model_dir, 7, {'target': target, 'state': {'step': np.int32(7), 'note': 'x'}})
  return model_dir, params, prompt


def test_ocdbt_layout_round_trips(saved):
  model_dir, params, _ = saved
  step_dir = model_dir / 'checkpoint_7'
  assert (step_dir / 'state' / '_METADATA').is_file()
  assert (step_dir / 'state' / 'manifest.ocdbt').is_file()
  for path in (model_dir, step_dir, step_dir / 'state'):
    config, loaded = checkpoints.load_t5(path, SMALL)
    assert config == SMALL
    loaded = t5x.flatten(loaded)
    assert set(loaded) == set(params)
    for key, value in params.items():
      np.testing.assert_array_equal(loaded[key], value, err_msg=str(key))
  assert checkpoints.read_t5x_checkpoint(model_dir)[1] == 7
  assert checkpoints.load_t5(model_dir)[0] == SMALL  # inferred from the shapes


def test_ocdbt_single_variable(saved):
  model_dir, params, prompt = saved
  np.testing.assert_array_equal(
      checkpoints.read_t5x_variable(model_dir, 'encoder.prompt.prompt.prompt'), prompt)
  np.testing.assert_array_equal(
      checkpoints.read_t5x_variable(model_dir, 'target/token_embedder/embedding'),
      params[('token_embedder', 'embedding')])
  assert checkpoints.open_checkpoint(model_dir).tree['state']['note'] == 'x'


def test_ocdbt_bfloat16_and_wrong_config(tmp_path):
  rng = np.random.default_rng(2)
  params = {path: rng.standard_normal(shape).astype(ml_dtypes.bfloat16)
            for path, shape in checkpoints.expected_shapes(SMALL).items()}
  _save(tmp_path, 3, {'target': t5x.unflatten(params)})
  _, loaded = checkpoints.load_t5(tmp_path, SMALL)
  for key, value in params.items():
    assert t5x.flatten(loaded)[key].dtype == np.float32
    np.testing.assert_array_equal(t5x.flatten(loaded)[key], value.astype(np.float32))
  with pytest.raises(ValueError, match=r'_METADATA: parameter decoder/layers_0/mlp/wi/kernel has '
                     r'shape \(6, 10\) but the given config expects \(6, 12\)'):
    checkpoints.load_t5(tmp_path, SMALL.replace(mlp_dim=12))
