"""`RobertaBackbone`: label-word loss and scores at the `<mask>` slot, activations, prompt tuning."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special

from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone

CONFIG = roberta_lib.RobertaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32,
                                   max_position_embeddings=32)
LABEL_WORDS = (20, 21)
A, B = 5, 6  # the class-0 / class-1 marker tokens of the synthetic task


def _scaled_random_params(seed: int, stddev: float):
  """Random weights at `stddev` instead of HF's 0.02.

  With 0.02 the tiny network is nearly degenerate (the text moves the `<mask>` slot's logits by
  ~1e-4 relative), and prompt tuning stays at chance; at 0.5 a frozen random network is
  expressive enough for a prompt alone to solve the task, so no pre-training step is needed.
  """
  params = roberta_lib.init_params(CONFIG, jax.random.PRNGKey(seed))
  return jax.tree_util.tree_map(lambda x: x * (stddev / 0.02) if x.ndim == 2 else x, params)


def _marker_task(rng, n: int, length: int = 3):
  """`<s> w w w </s>` with one w replaced by A (label 0) or B (label 1); others from 10..49."""
  tokens = rng.integers(10, 50, size=(n, length))
  labels = rng.integers(0, 2, size=n)
  tokens[np.arange(n), rng.integers(0, length, size=n)] = np.where(labels == 0, A, B)
  tokens = np.concatenate([np.zeros((n, 1), int), tokens, np.full((n, 1), 2)], axis=1)
  return {'encoder_input_tokens': jnp.asarray(tokens, jnp.int32),
          'label': jnp.asarray(labels, jnp.int32)}


def test_loss_scores_and_activations_agree_with_the_full_logits():
  params = _scaled_random_params(0, 0.3)
  backbone = RobertaBackbone(CONFIG, label_token_ids=LABEL_WORDS)
  batch = _marker_task(np.random.default_rng(0), 4)
  batch['encoder_input_tokens'] = batch['encoder_input_tokens'].at[0, 3:].set(CONFIG.pad_token_id)
  prompt = jax.random.normal(jax.random.PRNGKey(1), (6, 16))
  targets = jnp.array([[20, 0], [21, 0]])

  @jax.jit
  def run(prompt):
    logits = backbone.model.apply({'params': params}, batch['encoder_input_tokens'], prompt)
    return (logits, backbone.token_loss(params, prompt, batch),
            backbone.score_labels(params, prompt, batch, targets),
            backbone.score_labels(params, None, batch, targets),
            backbone.score_labels(params, prompt[:1] + 1.0, batch, targets))

  logits, (loss, weights), scores, no_prompt, slot_only = jax.device_get(run(prompt))
  restricted = scipy.special.log_softmax(logits[:, 0, list(LABEL_WORDS)], axis=-1)
  np.testing.assert_allclose(scores, restricted, atol=1e-6)
  np.testing.assert_allclose(loss, -restricted[np.arange(4), np.asarray(batch['label'])], atol=1e-6)
  np.testing.assert_array_equal(weights, np.ones(4))
  # prompt=None is the `<mask>` slot alone, whatever a one-row prompt's row 0 holds.
  np.testing.assert_allclose(no_prompt, slot_only, atol=1e-6)
  assert backbone.embedding_table(params).shape == (64, 16)
  assert (backbone.embed_dim, backbone.ffn_dim) == (16, 32)


def test_backbone_errors():
  with pytest.raises(ValueError, match=r'label token id 64 is outside the vocabulary \[0, 64\)'):
    RobertaBackbone(CONFIG, label_token_ids=(3, 64))
  backbone = RobertaBackbone(CONFIG)
  batch = _marker_task(np.random.default_rng(0), 2)
  params = _scaled_random_params(0, 0.02)
  with pytest.raises(ValueError, match='label_token_ids is empty'):
    backbone.token_loss(params, None, batch)
  with pytest.raises(ValueError, match="only an 'encoder' stack"):
    backbone.ffn_activations(params, None, batch, 'decoder')


def test_prompt_tuning_learns_while_frozen_weights_stay_bit_identical():
  params = _scaled_random_params(0, 0.5)
  frozen = jax.tree_util.tree_map(np.array, params)
  backbone = RobertaBackbone(CONFIG, label_token_ids=LABEL_WORDS)
  rng = np.random.default_rng(0)
  test = _marker_task(rng, 256)
  # The paper's optimizer (AdamW, eps 1e-6, no weight decay, constant LR) on the prompt only.
  optimizer = optax.adamw(3e-2, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0)
  prompt = 0.02 * jax.random.normal(jax.random.PRNGKey(1), (8, 16))  # the paper's N(0, 0.02)
  state = optimizer.init(prompt)

  @jax.jit
  def step(params, prompt, state, batch):
    def loss_fn(prompt):
      loss, weights = backbone.token_loss(params, prompt, batch)
      return loss.sum() / weights.sum()
    loss, grad = jax.value_and_grad(loss_fn)(prompt)
    updates, state = optimizer.update(grad, state, prompt)
    return optax.apply_updates(prompt, updates), state, loss

  @jax.jit
  def accuracy(params, prompt):
    scores = backbone.score_labels(params, prompt, test, jnp.array(LABEL_WORDS)[:, None])
    return jnp.mean(jnp.argmax(scores, axis=-1) == test['label'])

  before = float(accuracy(params, prompt))
  for _ in range(200):
    prompt, state, _ = step(params, prompt, state, _marker_task(rng, 32))
  after = float(accuracy(params, prompt))
  assert before < 0.7 and after >= 0.9, (before, after)  # measured 0.50 -> 0.99
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(params), frozen)
