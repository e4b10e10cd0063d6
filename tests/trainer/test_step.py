"""The jitted train step: only the prompt moves, no weight gradients, loss normalisation."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.models.t5_backbone import T5Backbone
from prompt_transfer_jax.trainer import step as step_lib
from prompt_transfer_jax.trainer.frozen_model import random_t5_params
from prompt_transfer_jax.partitioning import host, place

CONFIG = t5_preset('t5x_tiny').replace(vocab_size=64)


@pytest.fixture(scope='module')
def params():
  return random_t5_params(CONFIG)


def _batch(rng, batch=4, inputs=6, targets=3):
  tokens = rng.integers(2, CONFIG.vocab_size, (batch, inputs)).astype(np.int32)
  tokens[:, -2:] = 0                                   # padding
  tgt = rng.integers(2, CONFIG.vocab_size, (batch, targets)).astype(np.int32)
  tgt[0, -1] = 0
  return {'encoder_input_tokens': tokens, 'decoder_target_tokens': tgt,
          'decoder_input_tokens': np.asarray(t5_lib.shift_right(tgt)),
          'decoder_loss_weights': (tgt > 0).astype(np.int32)}


@pytest.mark.parametrize('name', ['adafactor', 'adamw'])
def test_only_the_prompt_changes(name, params):
  rng = np.random.default_rng(0)
  frozen_before = jax.tree.map(np.copy, params)
  mesh = partitioning.make_mesh()
  shardings = partitioning.logical_shardings(t5_lib.abstract_params(CONFIG), mesh,
                                             partitioning.standard_logical_axis_rules())
  tx = step_lib.make_optimizer(name, learning_rate=0.1, clip_norm=1.0)
  prompt0 = rng.normal(size=(3, CONFIG.emb_dim)).astype(np.float32)
  state = step_lib.init_state(prompt0, tx, seed=1)
  state = place(jax.device_get(state), step_lib.state_shardings(state, mesh))
  placed = place(params, shardings)
  fn = step_lib.jit_train_step(
      step_lib.make_train_step(T5Backbone(CONFIG), tx, step_lib.LossConfig(), dropout=False),
      state, mesh, shardings, partitioning.data_sharding(mesh))
  for _ in range(3):
    state, metrics = fn(state, placed, _batch(rng))
    assert np.isfinite(float(host(metrics['loss'])))
  assert int(host(state.step)) == 3
  assert not np.allclose(host(state.prompt), prompt0)
  after = jax.tree.map(host, placed)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), frozen_before, after)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), frozen_before, params)


def _count(jaxpr, prim: str) -> int:
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name == prim
    for sub in jax.core.jaxprs_in_params(eqn.params):
      n += _count(sub, prim)
  return n


def test_no_weight_gradients_are_computed(params):
  """Differentiating the prompt alone leaves out every dW matmul of the frozen weights."""
  backbone = T5Backbone(CONFIG)
  batch = jax.tree.map(jnp.asarray, _batch(np.random.default_rng(1)))
  prompt = jnp.ones((3, CONFIG.emb_dim))
  loss = lambda p, w: step_lib.batch_loss(backbone, w, p, batch, step_lib.LossConfig())[0]  # noqa: E731
  forward = _count(jax.make_jaxpr(loss)(prompt, params).jaxpr, 'dot_general')
  prompt_only = _count(jax.make_jaxpr(jax.grad(loss))(prompt, params).jaxpr, 'dot_general')
  full = _count(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(prompt, params).jaxpr,
                'dot_general')
  assert prompt_only < full
  assert full - prompt_only >= forward // 2   # every weight matmul loses its dW


def test_loss_normalisation_sum_and_mean(params):
  backbone = T5Backbone(CONFIG)
  batch = jax.tree.map(jnp.asarray, _batch(np.random.default_rng(2)))
  prompt = jnp.ones((3, CONFIG.emb_dim))
  loss = jax.jit(lambda cfg: step_lib.batch_loss(backbone, params, prompt, batch, cfg),
                 static_argnums=0)
  total, (summed, count) = loss(step_lib.LossConfig(z_loss=0.0))
  mean, _ = loss(step_lib.LossConfig(z_loss=0.0, normalization='mean'))
  assert float(count) == float(np.sum(batch['decoder_loss_weights']))
  np.testing.assert_allclose(float(total), float(summed), rtol=1e-6)
  np.testing.assert_allclose(float(mean) * float(count), float(total), rtol=1e-5)
  # reference: summed token cross-entropy by hand
  logits = jax.jit(backbone.logits)(params, prompt, batch)
  logp = jax.nn.log_softmax(logits, axis=-1)
  tgt = batch['decoder_target_tokens']
  ce = -np.take_along_axis(np.asarray(logp), np.asarray(tgt)[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(total), float(np.sum(ce * np.asarray(tgt > 0))), rtol=1e-5)


def test_optimizer_and_loss_options_are_checked():
  with pytest.raises(ValueError, match='unknown optimizer'):
    step_lib.make_optimizer('sgd')
  with pytest.raises(ValueError, match='learning_rate'):
    step_lib.make_optimizer('adamw', learning_rate=0.0)
  with pytest.raises(ValueError, match='loss_normalization'):
    step_lib.LossConfig(normalization='token')
  tx = step_lib.make_optimizer('adamw', learning_rate=1e-2)
  p = jnp.ones((2, 2))
  updates, _ = tx.update(jnp.full((2, 2), 3.0), tx.init(p), p)
  np.testing.assert_allclose(np.asarray(updates), -1e-2, rtol=1e-3)  # Adam's first step: -lr*sign
  assert isinstance(step_lib.make_optimizer('adafactor', clip_norm=1.0), optax.GradientTransformation)


def test_roberta_backbone_trains_its_prompt_only():
  """The same step drives RoBERTa (label-word loss at the <mask> slot) through the protocol."""
  from prompt_transfer_jax.trainer import frozen_model
  model = frozen_model.roberta_model(preset='roberta_tiny',
                                     config_overrides={'hidden_dropout_prob': 0.0,
                                                       'attention_probs_dropout_prob': 0.0})
  backbone = model.for_task(np.array([[100, 0], [200, 0]], np.int32))   # label words 100, 200
  assert backbone.label_token_ids == (100, 200)
  mesh = partitioning.make_mesh()
  shardings = model.shardings(mesh)
  tx = step_lib.make_optimizer('adamw', learning_rate=0.05)
  prompt0 = np.random.default_rng(0).normal(0, 0.02, (4, model.embed_dim)).astype(np.float32)
  state = step_lib.init_state(prompt0, tx)
  state = place(jax.device_get(state), step_lib.state_shardings(state, mesh))
  fn = step_lib.jit_train_step(step_lib.make_train_step(backbone, tx, step_lib.LossConfig()),
                               state, mesh, shardings, partitioning.data_sharding(mesh))
  tokens = np.full((4, 8), model.pad_id, np.int32)
  tokens[:, :5] = [[0, 31, 32, 33, 2]] * 4
  batch = {'encoder_input_tokens': tokens, 'label': np.array([0, 1, 0, 1], np.int32)}
  params = place(model.params, shardings)
  losses = []
  for _ in range(5):
    state, metrics = fn(state, params, batch)
    losses.append(float(host(metrics['loss'])))
  assert np.all(np.isfinite(losses)) and not np.allclose(host(state.prompt), prompt0)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(host(a), b), params, model.params)
