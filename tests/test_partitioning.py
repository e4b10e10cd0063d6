"""Sharded execution on a 2x4 fake-CPU-device mesh equals single-device execution."""
import textwrap

from prompt_transfer_jax import partitioning
from tests.fake_devices import run_script

_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from flax import linen as nn
    from prompt_transfer_jax import partitioning
    from prompt_transfer_jax.config import T5Config
    from prompt_transfer_jax.models import t5
    jax.config.update('jax_default_matmul_precision', 'highest')
    assert jax.device_count() == 8, jax.devices()
    cfg = T5Config(vocab_size=256, emb_dim=16, num_heads=4, head_dim=4, mlp_dim=32,
                   num_encoder_layers=2, num_decoder_layers=2,
                   mlp_activations=('gelu', 'linear'), logits_via_embedding=False)
    params = t5.init_params(cfg, jax.random.PRNGKey(1))
    rng = np.random.RandomState(0)
    enc = rng.randint(2, 256, (8, 12)).astype(np.int32); enc[:, 9:] = 0
    dec = rng.randint(2, 256, (8, 5)).astype(np.int32)
    prompt = rng.randn(3, 16).astype(np.float32)
    model = t5.T5(cfg)
    single = np.asarray(model.apply({'params': params}, enc, dec, prompt=prompt))
    for act_dims, param_dims in [(1, 1), (2, 2)]:
      rules = partitioning.standard_logical_axis_rules(act_dims, param_dims)
      mesh = partitioning.make_mesh(model_parallel=4)
      sharded = partitioning.place(
          params, partitioning.logical_shardings(t5.abstract_params(cfg), mesh, rules))
      assert dict(mesh.shape) == {'data': 2, 'model': 4}
      on_mesh = partitioning.place(prompt, partitioning.replicated(mesh))
      assert len(on_mesh.sharding.device_set) == 8
      np.testing.assert_array_equal(partitioning.host(on_mesh), prompt)
      kernel = sharded['encoder']['layers_0']['mlp']['wi_0']['kernel']
      assert len(kernel.sharding.device_set) == 8
      assert kernel.addressable_shards[0].data.shape[1] == 32 // 4, kernel.addressable_shards[0].data.shape
      batch = jax.device_put((enc, dec), partitioning.data_sharding(mesh))
      with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        out = jax.jit(lambda p, e, d, q: model.apply({'params': p}, e, d, prompt=q))(
            sharded, batch[0], batch[1], prompt)
      diff = float(np.abs(np.asarray(out) - single).max())
      assert diff <= 1e-5, (act_dims, param_dims, diff)
      print('OK', act_dims, param_dims, diff)
''')


def test_sharded_forward_matches_single_device():
  assert run_script(_SCRIPT).count('OK') == 2


def test_rules_follow_t5x_priorities():
  rules = dict()
  for name, axis in partitioning.standard_logical_axis_rules(1, 1):
    rules.setdefault(name, axis)
  assert rules['batch'] == 'data' and rules['mlp'] == 'model' and rules['embed'] is None
  assert rules['prompt'] is None and rules['prompt_embed'] is None
  two_d = partitioning.standard_logical_axis_rules(1, 2)
  assert ('embed', 'data') in two_d


def test_bad_partitioning_arguments():
  import pytest
  with pytest.raises(ValueError, match='partitioning dims'):
    partitioning.standard_logical_axis_rules(3, 1)
  with pytest.raises(ValueError, match='does not divide'):
    partitioning.make_mesh(model_parallel=3, devices=[object()] * 4)
