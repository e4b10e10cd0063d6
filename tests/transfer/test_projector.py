"""The projector equals the paper's formula in numpy; it shards like the model; its files."""
import json
import os
import textwrap

import jax
import numpy as np
import pytest

from prompt_transfer_jax.transfer import projector as projector_lib
from tests.fake_devices import run_script


def numpy_projector(params, x, activation, layer_norm):
  """flatten -> x W1 + b1 -> LeakyReLU(0.01) | tanh -> h W2 + b2 -> [P, Et] -> LayerNorm(1e-5)."""
  x = np.asarray(x, np.float64)
  single = x.ndim == 2
  x = x[None] if single else x
  b, p, _ = x.shape
  h = x.reshape(b, -1) @ np.asarray(params['hidden']['kernel'], np.float64) + params['hidden']['bias']
  h = np.where(h >= 0, h, 0.01 * h) if activation == 'leaky_relu' else np.tanh(h)
  out = h @ np.asarray(params['output']['kernel'], np.float64) + params['output']['bias']
  out = out.reshape(b, p, -1)
  if layer_norm:
    mean = out.mean(-1, keepdims=True)
    var = out.var(-1, keepdims=True)
    out = (out - mean) / np.sqrt(var + 1e-5) * params['layer_norm']['scale'] \
        + params['layer_norm']['bias']
  return out[0] if single else out


@pytest.mark.parametrize('activation', ['leaky_relu', 'tanh'])
@pytest.mark.parametrize('layer_norm', [True, False])
def test_module_equals_numpy_formula(activation, layer_norm):
  spec = projector_lib.ProjectorSpec(5, 6, 7, hidden_dim=16, activation=activation,
                                     layer_norm=layer_norm)
  params = jax.device_get(projector_lib.init_params(spec, seed=1))
  rng = np.random.default_rng(0)
  # Non-trivial LayerNorm parameters and biases, so every term of the formula is exercised.
  params['hidden']['bias'] = rng.normal(size=16).astype(np.float32)
  params['output']['bias'] = rng.normal(size=35).astype(np.float32)
  if layer_norm:
    params['layer_norm'] = {'scale': rng.normal(size=7).astype(np.float32),
                            'bias': rng.normal(size=7).astype(np.float32)}
  else:
    assert 'layer_norm' not in params
  assert params['hidden']['kernel'].shape == (30, 16)
  assert params['output']['kernel'].shape == (16, 35)
  single = rng.normal(size=(5, 6)).astype(np.float32)
  batch = rng.normal(size=(3, 5, 6)).astype(np.float32)
  fn = projector_lib.apply_fn(spec)
  out1, outb = np.asarray(fn(params, single)), np.asarray(fn(params, batch))
  assert out1.shape == (5, 7) and outb.shape == (3, 5, 7)
  np.testing.assert_allclose(out1, numpy_projector(params, single, activation, layer_norm),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(outb, numpy_projector(params, batch, activation, layer_norm),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(outb[1], np.asarray(fn(params, batch[1])), atol=1e-5, rtol=1e-5)


def test_init_is_torch_linear_and_every_parameter_has_logical_axes():
  spec = projector_lib.ProjectorSpec(4, 50, 8, hidden_dim=32)
  boxed = projector_lib.abstract_params(spec)
  axes = jax.tree.map(lambda b: b.names, boxed,
                      is_leaf=lambda x: hasattr(x, 'names'))
  assert axes == {'hidden': {'kernel': ('embed', 'mlp'), 'bias': ('mlp',)},
                  'output': {'kernel': ('mlp', 'embed'), 'bias': ('embed',)},
                  'layer_norm': {'scale': ('embed',), 'bias': ('embed',)}}
  kernel = np.asarray(projector_lib.init_params(spec, seed=0)['hidden']['kernel'])
  bound = 1 / np.sqrt(200)
  assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
  with pytest.raises(ValueError, match="unknown projector activation 'relu'"):
    projector_lib.ProjectorSpec(4, 50, 8, activation='relu')


def test_normal_weight_init_is_the_original_t5_target_reinitialization(tmp_path):
  """`weight_init='normal'`: N(0, 1) kernels (both layers), zero biases; saved with the spec, and
  a projector.json written before the option existed still loads as 'torch'."""
  spec = projector_lib.ProjectorSpec(4, 50, 8, hidden_dim=64, weight_init='normal')
  params = projector_lib.init_params(spec, seed=0)
  for name in ('hidden', 'output'):
    kernel = np.asarray(params[name]['kernel'])
    n = kernel.size                                   # within 5 standard errors of N(0, 1)
    assert abs(kernel.std() - 1) < 5 / np.sqrt(2 * n) and abs(kernel.mean()) < 5 / np.sqrt(n)
    assert not np.asarray(params[name]['bias']).any()
  out = projector_lib.save(tmp_path / 'proj', spec, params)
  assert projector_lib.load(out)[0] == spec
  old = projector_lib.ProjectorSpec(4, 50, 8).to_json()
  del old['weight_init']
  assert projector_lib.ProjectorSpec.from_json(old, 'old.json').weight_init == 'torch'
  with pytest.raises(ValueError, match="unknown projector weight_init 'xavier'"):
    projector_lib.ProjectorSpec(4, 50, 8, weight_init='xavier')


def test_save_load_round_trip_and_errors(tmp_path):
  spec = projector_lib.ProjectorSpec(3, 4, 5, hidden_dim=8, activation='tanh', layer_norm=False)
  params = projector_lib.init_params(spec, seed=3)
  out = projector_lib.save(tmp_path / 'proj', spec, params, {'method': 'distance'})
  assert sorted(os.listdir(out)) == ['params', 'projector.json']
  assert [f for f in os.listdir(tmp_path) if f != 'proj'] == []        # no temporary left
  spec2, params2, config = projector_lib.load(out)
  assert spec2 == spec and config['method'] == 'distance'
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params2), jax.device_get(params))
  x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
  np.testing.assert_array_equal(projector_lib.project(spec2, params2, x),
                                projector_lib.project(spec, params, x))
  # overwriting keeps one complete projector
  projector_lib.save(out, spec, jax.tree.map(lambda a: a + 1, params))
  assert np.allclose(jax.device_get(projector_lib.load(out)[1]['hidden']['bias']), 1.0)

  os.remove(os.path.join(out, 'projector.json'))
  with pytest.raises(ValueError, match=r'has no projector\.json') as e:
    projector_lib.load(out)
  assert '\n' not in str(e.value)
  with pytest.raises(FileNotFoundError, match='projector directory not found'):
    projector_lib.load(tmp_path / 'missing')
  with pytest.raises(ValueError, match=r'has shape \(2, 3, 6\), but the projector takes'):
    projector_lib.project(spec, params, np.zeros((2, 3, 6), np.float32))
  with pytest.raises(ValueError, match=r'has shape \(4, 4\)'):
    projector_lib.project(spec, params, np.zeros((4, 4), np.float32))


PARTITIONED = textwrap.dedent('''
  import jax, numpy as np
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.transfer import projector as P
  assert len(jax.devices()) == 8
  spec = P.ProjectorSpec(4, 8, 12, hidden_dim=16)
  x = np.random.default_rng(0).normal(size=(3, 4, 8)).astype(np.float32)
  ref_params = P.init_params(spec, seed=5)
  ref = np.asarray(P.apply_fn(spec)(ref_params, x))
  mesh = partitioning.make_mesh(4)                                   # 2 data x 4 model
  for dims in (1, 2):
    rules = partitioning.standard_logical_axis_rules(parameter_partitioning_dims=dims)
    sh = P.shardings(spec, mesh, rules)
    params = P.init_params(spec, seed=5, param_shardings=sh)
    k1, k2 = params['hidden']['kernel'], params['output']['kernel']
    assert k1.sharding.spec == sh['hidden']['kernel'].spec
    # the big kernels are split over 'model' along the hidden axis (4 ways), not replicated
    assert k1.addressable_shards[0].data.shape[1] == 4, k1.addressable_shards[0].data.shape
    assert k2.addressable_shards[0].data.shape[0] == 4, k2.addressable_shards[0].data.shape
    if dims == 2:
      assert k2.addressable_shards[0].data.shape[1] == 48 // 2
    out = np.asarray(P.apply_fn(spec)(params, x))
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
  # a distance-minimizing step on the mesh: optimizer moments sharded like the parameters,
  # updates equal to the single-device ones
  from prompt_transfer_jax.transfer import cross_model as C
  tx = C.projector_optimizer('distance', learning_rate=1e-2)
  tgt = np.random.default_rng(1).normal(size=(3, 4, 12)).astype(np.float32)

  def train(params, mesh):
    state = C.init_state(params, tx)
    fn = C.jit_distance_step(C.make_distance_step(spec, tx), state, mesh)
    for _ in range(3):
      state, _ = fn(state, x, tgt)
    return state

  one = train(P.init_params(spec, seed=5), partitioning.make_mesh(1, jax.devices()[:1]))
  sh = P.shardings(spec, mesh)
  big = train(P.init_params(spec, seed=5, param_shardings=sh), mesh)
  mu = big.opt_state[0].mu['output']['kernel']
  assert mu.sharding.is_equivalent_to(sh['output']['kernel'], 2), mu.sharding
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5,
                                                       rtol=1e-5), big.params, one.params)
  print('OK')
''')


def test_partitioned_projector_equals_unpartitioned():
  """A 2x4 fake-device mesh (own process: the device count is fixed at JAX start-up)."""
  assert run_script(PARTITIONED).strip().endswith('OK')
