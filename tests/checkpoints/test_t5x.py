"""T5X checkpoint reader against the real fixtures, Flax's own msgpack codec and tensorstore."""
import os
import shutil

import flax.serialization
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
import zstandard

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.checkpoints import t5x
from prompt_transfer_jax.config import T5Config, t5_preset
from prompt_transfer_jax.models import t5 as t5_lib

TINY_DIR = ('t5x', 'test_t5_1_1_tiny')
SINGLE_FILE = ('t5x', 'test_t5_tiny.checkpoint_0')
SMALL = T5Config(vocab_size=64, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=16,
                 num_encoder_layers=2, num_decoder_layers=1, mlp_activations=('gelu', 'linear'),
                 logits_via_embedding=False, relative_attention_num_buckets=8,
                 relative_attention_max_distance=16)


def _fixture(shared_fixtures, parts):
  path = shared_fixtures.joinpath(*parts)
  if not path.exists():
    pytest.skip(f'optional fixture {path} is absent')
  return path


def _reference_leaves(index_file):
  """The `target` leaves as Flax's own msgpack reader decodes them (tensorstore specs kept)."""
  raw = flax.serialization.msgpack_restore(index_file.read_bytes())

  def walk(node, prefix):
    if isinstance(node, dict) and 'driver' not in node:
      for key, value in node.items():
        yield from walk(value, prefix + (key,))
    else:
      yield prefix, node
  return dict(walk(raw['optimizer']['target'], ()))


def _read_spec_directly(step_dir, spec):
  name = spec['kvstore']['path'].rstrip('/')
  store = ts.open({'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': str(step_dir / name)}},
                  open=True).result()
  return store.read().result()


def _forward_is_finite(config, params):
  ids = np.array([[5, 6, 7, 1, 0], [8, 9, 1, 0, 0]], np.int32)
  logits = jax.jit(t5_lib.T5(config).apply)({'params': params}, ids, ids[:, :3])
  assert logits.shape == (2, 3, config.vocab_size)
  assert np.isfinite(np.asarray(logits)).all()


def test_prompt_tuning_fixture_equals_tensorstore_and_msgpack(shared_fixtures):
  step_dir = _fixture(shared_fixtures, TINY_DIR) / 'checkpoint_3'
  config, params = checkpoints.load_t5(step_dir, 't5_1_1_tiny')
  assert config == t5_preset('t5_1_1_tiny')
  ours = t5x.flatten(params)
  reference = _reference_leaves(step_dir / 'checkpoint')
  assert set(ours) == set(reference)
  kinds = {'tensorstore': 0, 'inline': 0}
  for path, ref in reference.items():
    if isinstance(ref, dict):
      kinds['tensorstore'] += 1
      ref = _read_spec_directly(step_dir, ref)
    else:
      kinds['inline'] += 1
    assert ours[path].dtype == np.float32 and ours[path].shape == ref.shape, path
    np.testing.assert_array_equal(ours[path], ref, err_msg=str(path))
  assert kinds == {'tensorstore': 38, 'inline': 14}
  _forward_is_finite(config, params)
  assert checkpoints.read_t5x_checkpoint(step_dir)[1] == 3


def test_single_file_fixture_equals_msgpack(shared_fixtures):
  path = _fixture(shared_fixtures, SINGLE_FILE)
  config, params = checkpoints.load_t5(path, 't5x_tiny')
  reference = _reference_leaves(path)
  ours = t5x.flatten(params)
  assert set(ours) == set(reference) and len(ours) == 52
  for key, ref in reference.items():
    np.testing.assert_array_equal(ours[key], ref, err_msg=str(key))
  _forward_is_finite(config, params)
  assert checkpoints.read_t5x_checkpoint(path)[1] == 0


@pytest.mark.parametrize('parts,preset', [(TINY_DIR, 't5_1_1_tiny'), (SINGLE_FILE, 't5x_tiny')])
def test_config_inference_reproduces_presets(shared_fixtures, parts, preset):
  path = _fixture(shared_fixtures, parts)
  leaves = t5x.open_checkpoint(path).target
  assert checkpoints.infer_t5_config(leaves) == t5_preset(preset)
  config, _ = checkpoints.load_t5(path)
  assert config == t5_preset(preset)


def test_model_dir_takes_latest_step_and_ignores_tmp(shared_fixtures, tmp_path):
  tiny = _fixture(shared_fixtures, TINY_DIR) / 'checkpoint_3'
  single = _fixture(shared_fixtures, SINGLE_FILE)
  model = tmp_path / 'model'
  (model / 'checkpoint_2').mkdir(parents=True)
  os.symlink(single, model / 'checkpoint_2' / 'checkpoint')
  os.symlink(tiny, model / 'checkpoint_3')
  (model / 'checkpoint_10.tmp-1700000000').mkdir()
  (model / 'checkpoint_10.tmp-1700000000' / 'checkpoint').write_bytes(b'partial')
  config, _ = checkpoints.load_t5(model)
  assert config == t5_preset('t5_1_1_tiny')
  assert checkpoints.read_t5x_checkpoint(model)[1] == 3
  assert checkpoints.load_t5(model / 'checkpoint_2')[0] == t5_preset('t5x_tiny')


def test_url_paths_go_through_tensorstore(shared_fixtures):
  model = _fixture(shared_fixtures, TINY_DIR)
  _, local = checkpoints.load_t5(model / 'checkpoint_3', 't5_1_1_tiny')
  _, remote = checkpoints.load_t5(f'file://{model}', 't5_1_1_tiny')
  for key, value in t5x.flatten(local).items():
    np.testing.assert_array_equal(t5x.flatten(remote)[key], value)


def test_read_one_variable(shared_fixtures):
  step_dir = _fixture(shared_fixtures, TINY_DIR) / 'checkpoint_3'
  table = checkpoints.read_t5x_variable(step_dir, 'token_embedder/embedding')
  spec = _reference_leaves(step_dir / 'checkpoint')[('token_embedder', 'embedding')]
  np.testing.assert_array_equal(table, _read_spec_directly(step_dir, spec))
  rel = checkpoints.read_t5x_variable(step_dir, 'target.encoder.relpos_bias.rel_embedding')
  assert rel.shape == (2, 4)
  v = checkpoints.read_t5x_variable(step_dir, 'state/param_states/encoder/encoder_norm/scale/v')
  assert v.shape == (4,)
  with pytest.raises(ValueError, match=r"variable 'encoder/nope' not found in .*checkpoint"):
    checkpoints.read_t5x_variable(step_dir, 'encoder/nope')


def test_truncated_gzip_chunk_names_array_and_chunk(shared_fixtures, tmp_path):
  step_dir = shutil.copytree(_fixture(shared_fixtures, TINY_DIR) / 'checkpoint_3',
                             tmp_path / 'checkpoint_3')
  for path in step_dir.rglob('*'):
    path.chmod(0o755 if path.is_dir() else 0o644)
  chunk = step_dir / 'target.token_embedder.embedding' / '3.0'
  data = chunk.read_bytes()
  chunk.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError) as err:
    checkpoints.load_t5(step_dir, 't5_1_1_tiny')
  message = str(err.value)
  assert '\n' not in message
  assert 'target.token_embedder.embedding' in message and str(chunk) in message


def test_shape_mismatch_names_parameter_and_both_shapes(shared_fixtures):
  step_dir = _fixture(shared_fixtures, TINY_DIR) / 'checkpoint_3'
  wrong = t5_preset('t5_1_1_tiny').replace(mlp_dim=6)
  with pytest.raises(ValueError, match=r'checkpoint_3/checkpoint: parameter '
                     r'decoder/layers_0/mlp/wi_0/kernel has shape \(4, 8\) but the given config '
                     r'expects \(4, 6\)'):
    checkpoints.load_t5(step_dir, wrong)
  with pytest.raises(ValueError, match=r'missing parameters decoder/layers_2/.* expected by'):
    checkpoints.load_t5(step_dir, t5_preset('t5_1_1_tiny').replace(num_decoder_layers=3))
  with pytest.raises(ValueError, match=r'unexpected parameters encoder/layers_1/.*\(4, 4\).* '
                     r'not in the given config'):
    checkpoints.load_t5(step_dir, t5_preset('t5_1_1_tiny').replace(num_encoder_layers=1))
  with pytest.raises(ValueError, match=r'decoder/decoder_norm/scale has shape \(4,\) but '
                     r'preset t5x_tiny expects \(8,\) \(51 more mismatched\)'):
    checkpoints.load_t5(step_dir, 't5x_tiny')


def _write_zarr(directory, array, compressor):
  store = ts.open({'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': str(directory)},
                   'metadata': {'shape': list(array.shape), 'chunks': [max(1, s // 2) for s in
                                                                       array.shape],
                                'dtype': '<f4', 'compressor': compressor}},
                  create=True).result()
  store.write(array).result()


def test_written_checkpoint_with_every_leaf_kind(tmp_path, monkeypatch):
  """zstd/gzip tensorstore leaves, inline bf16, chunked msgpack arrays, None / {} / scalars."""
  rng = np.random.default_rng(0)
  params = {path: rng.standard_normal(shape).astype(np.float32)
            for path, shape in checkpoints.expected_shapes(SMALL).items()}
  prompt = np.arange(3 * SMALL.emb_dim, dtype=np.float32).reshape(3, SMALL.emb_dim)
  step_dir = tmp_path / 'model' / 'checkpoint_12'
  target = {}
  for i, (path, value) in enumerate(sorted(params.items())):
    name = 'target.' + '.'.join(path)
    if path[-1] == 'kernel':
      compressor = {'id': 'zstd', 'level': 3} if i % 2 else {'id': 'gzip', 'level': 1}
      _write_zarr(step_dir / name, value, compressor)
      target[path] = {'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': name + '/'},
                      'metadata': {'shape': list(value.shape), 'dtype': '<f4'}}
    elif path[-1] == 'scale':
      target[path] = value.astype(jnp.bfloat16)
    else:
      target[path] = value
  target[('encoder', 'prompt', 'prompt', 'prompt')] = prompt
  state = {'step': np.int32(12), 'param_states': {'encoder': {'frozen': None, 'empty': {},
                                                              'c': 1 + 2j, 's': np.float32(0.5)}}}
  tree = {'version': 3, 'optimizer': {'target': t5x.unflatten(target), 'state': state}}
  monkeypatch.setattr(flax.serialization, 'MAX_CHUNK_SIZE', 256)
  (step_dir / 'checkpoint').write_bytes(flax.serialization.msgpack_serialize(tree))
  assert b'__msgpack_chunked_array__' in (step_dir / 'checkpoint').read_bytes()

  config, loaded = checkpoints.load_t5(tmp_path / 'model', SMALL)
  assert config == SMALL
  loaded = t5x.flatten(loaded)
  assert set(loaded) == set(params)
  for path, value in params.items():
    expected = value.astype(jnp.bfloat16).astype(np.float32) if path[-1] == 'scale' else value
    np.testing.assert_array_equal(loaded[path], expected, err_msg=str(path))
  inferred = SMALL.replace(relative_attention_max_distance=128)  # not stored; no preset matches
  assert checkpoints.load_t5(tmp_path / 'model')[0] == inferred
  np.testing.assert_array_equal(
      checkpoints.read_t5x_variable(tmp_path / 'model', 'encoder/prompt/prompt/prompt'), prompt)
  ckpt = checkpoints.open_checkpoint(step_dir)
  assert ckpt.step == 12
  encoder_state = ckpt.tree['optimizer']['state']['param_states']['encoder']
  assert encoder_state == {'frozen': None, 'empty': {}, 'c': 1 + 2j, 's': np.float32(0.5)}
  scale = ckpt.target['encoder']['encoder_norm']['scale']
  assert scale.dtype == ml_dtypes.bfloat16
  bf16_config, bf16 = checkpoints.load_t5(step_dir, SMALL, dtype='bfloat16')
  assert bf16_config.param_dtype == 'bfloat16'
  assert bf16['token_embedder']['embedding'].dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize('version', [0, 1, 4])
def test_unsupported_versions_are_rejected(tmp_path, version):
  path = tmp_path / 'checkpoint'
  path.write_bytes(flax.serialization.msgpack_serialize(
      {'version': version, 'optimizer': {'target': {}}}))
  with pytest.raises(ValueError, match=f'has version {version}; only versions 2-3'):
    checkpoints.load_t5(path, SMALL)


def test_not_a_checkpoint(tmp_path):
  (tmp_path / 'checkpoint').write_bytes(b'\xc1 not msgpack')
  with pytest.raises(ValueError, match='is not a msgpack T5X checkpoint'):
    checkpoints.load_t5(tmp_path, SMALL)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=f'no T5X checkpoint in {empty}'):
    checkpoints.load_t5(empty, SMALL)


def test_orbax_aggregate_fixture_reads_values_as_stored(shared_fixtures):
  step_dir = _fixture(shared_fixtures, ('t5x', 'tiny_orbax', '1'))
  ckpt = checkpoints.open_checkpoint(step_dir)
  assert ckpt.tree['flax_mutables'] is None and ckpt.tree['_optimizer']['target'] == {}
  assert ckpt.step == 1  # the step leaf has no .zarray: taken from the directory name
  state = ckpt.tree['_optimizer']['state']
  with pytest.raises(ValueError, match=r'_optimizer.state.step .* has no .zarray'):
    state['step'].read()
  layouts = {'_optimizer.state.param_states.bias': ((5,), np.float32, '0'),
             '_optimizer.state.param_states.kernel': ((10, 5), np.float64, '0.0'),
             '_optimizer.state.param_states.step': ((), np.int32, '0'),
             '_optimizer.state.step': ((), np.int32, '0')}
  leaves = {'.'.join(('_optimizer',) + k): v for k, v in t5x.flatten(
      {'state': state}).items()}
  for name, (shape, dtype, chunk) in layouts.items():
    leaves[name].assume(shape, dtype)
    raw = (step_dir / name / chunk).read_bytes()
    manual = np.frombuffer(zstandard.ZstdDecompressor().decompressobj().decompress(raw),
                           dtype).reshape(shape)
    value = leaves[name].read()
    assert value.dtype == dtype and value.shape == shape
    np.testing.assert_array_equal(value, manual)
  np.testing.assert_array_equal(state['param_states']['bias'].read(), np.ones(5, np.float32))
  assert int(state['step'].read()) == 1


def test_orbax_aggregate_t5_without_zarray_needs_config(tmp_path):
  """`PLACEHOLDER://` leaves whose zarr dirs lack `.zarray`: shapes come from the config."""
  rng = np.random.default_rng(3)
  params = {path: rng.standard_normal(shape).astype(np.float32)
            for path, shape in checkpoints.expected_shapes(SMALL).items()}
  step_dir = tmp_path / 'checkpoint_4'
  target = {}
  for path, value in params.items():
    name = 'params.' + '.'.join(path)
    chunks = [max(1, value.shape[0] // 3)] + list(value.shape[1:])
    store = ts.open({'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': str(step_dir / name)},
                     'metadata': {'shape': list(value.shape), 'chunks': chunks, 'dtype': '<f4',
                                  'compressor': {'id': 'zstd', 'level': 1}}},
                    create=True).result()
    store.write(value).result()
    (step_dir / name / '.zarray').unlink()
    target[path] = t5x.PLACEHOLDER + name
  tree = {'params': t5x.unflatten(target), 'step': np.int32(4)}
  (step_dir / 'checkpoint').write_bytes(flax.serialization.msgpack_serialize(tree))
  with pytest.raises(ValueError, match=r'stored without shapes .* pass config='):
    checkpoints.load_t5(step_dir)
  _, loaded = checkpoints.load_t5(step_dir, SMALL)
  for path, value in params.items():
    np.testing.assert_array_equal(t5x.flatten(loaded)[path], value, err_msg=str(path))
