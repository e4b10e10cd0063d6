"""Every paper recipe (gin_configs/paper/*.gin) parses and builds its job at full size abstractly.

Shapes only: the frozen model is the preset's `jax.ShapeDtypeStruct` tree and the train step is
traced with `jax.eval_shape`, so RoBERTa-Large and T5 1.1 XXL cost no memory. `ptj.eval_options`
(the Evaluator's 1.0 scoring options, another branch) is skipped when not registered yet.
"""
import logging
import pathlib

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_transfer_jax.trainer import frozen_model, runs, step as step_lib

PAPER = pathlib.Path(runs.GIN_CONFIGS) / 'paper'
RECIPES = sorted(p.name for p in PAPER.glob('*.gin') if p.name != 't5_1_0_eval.gin')
# file -> (family, preset, d_model, learning rate, batch, loss normalization, z-loss)
EXPECTED = {
    'roberta_large_pt.gin': ('roberta', 'roberta_large', 1024, 1e-4, 128, 'mean', 0.0),
    'roberta_base_pt.gin': ('roberta', 'roberta_base', 768, 1e-3, 16, 'mean', 0.0),
    'roberta_large_tpt.gin': ('roberta', 'roberta_large', 1024, 1e-3, 128, 'mean', 0.0),
    't5_small_pt.gin': ('t5', 't5_small', 512, 5e-3, 16, 'mean', 0.0),
    't5_base_pt.gin': ('t5', 't5_base', 768, 5e-3, 16, 'mean', 0.0),
    't5_large_pt.gin': ('t5', 't5_large', 1024, 1e-3, 16, 'mean', 0.0),
    't5_base_tpt.gin': ('t5', 't5_base', 768, 5e-3, 16, 'mean', 0.0),
    't5_1_1_xxl_lester.gin': ('t5', 't5_1_1_lm100k_xxl', 4096, 0.3, 32, 'sum', 1e-4),
    't5_1_1_xxl_tpt.gin': ('t5', 't5_1_1_lm100k_xxl', 4096, 0.3, 32, 'sum', 1e-4),
}


def _query(name):
  """A bound value, following macros (`%TPT_LEARNING_RATE`) to their values."""
  value = gin.query_parameter(name)
  while str(value).startswith('%'):
    value = gin.query_parameter(str(value))
  return value


def _parse(name):
  runs.register_configurables()
  gin.clear_config()
  gin.add_config_file_search_path(str(runs.GIN_CONFIGS))
  bindings = ["MODEL_DIR = '/unused'", "MIXTURE_OR_TASK_NAME = 'unused'",
              'INITIAL_CHECKPOINT_PATH = None', "PROMPT_FILE = '/unused.npy'"]
  logging.disable(logging.CRITICAL)   # gin logs every search-path miss of an `include`
  try:
    gin.parse_config_files_and_bindings([str(PAPER / name)], bindings, finalize_config=False)
  finally:
    logging.disable(logging.NOTSET)


def test_every_recipe_is_listed():
  assert sorted(EXPECTED) == RECIPES


@pytest.mark.parametrize('name', RECIPES)
def test_paper_recipe_builds_abstractly_at_full_size(name):
  family, preset, d_model, lr, batch, norm, z = EXPECTED[name]
  try:
    _parse(name)
    q = _query
    configurable = f'ptj.{family}_model'
    gin.bind_parameter(f'{configurable}.abstract', True)
    model = frozen_model.t5_model() if family == 't5' else frozen_model.roberta_model()
    assert q('%MODEL_PRESET') == preset and model.embed_dim == d_model
    assert q('ptj.make_optimizer.learning_rate') == lr and q('%BATCH_SIZE') == batch
    assert q('%LOSS_NORMALIZATION') == norm and q('%Z_LOSS') == z and q('%PROMPT_SEED') == 0
    assert q('%PROMPT_LENGTH') == 100
    optimizer = step_lib.make_optimizer()
    loss = step_lib.LossConfig(z_loss=z, normalization=norm)
    lengths = q('%TASK_FEATURE_LENGTHS')
  finally:
    gin.clear_config()
  if family == 'roberta':
    assert q_adamw(name) and model.config.hidden_dropout_prob == 0.1
    assert model.config.prompt_layout == 'mask_slot'
    backbone = model.for_task(np.array([[100], [200]], np.int32))
    batch_spec = {'encoder_input_tokens': ((batch, lengths['inputs']), jnp.int32),
                  'label': ((batch,), jnp.int32)}
  else:
    backbone = model.for_task(None)
    shape = (batch, lengths['targets'])
    batch_spec = {'encoder_input_tokens': ((batch, lengths['inputs']), jnp.int32),
                  'decoder_input_tokens': (shape, jnp.int32),
                  'decoder_target_tokens': (shape, jnp.int32),
                  'decoder_loss_weights': (shape, jnp.int32)}
  batch_abs = {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in batch_spec.items()}
  prompt = jax.ShapeDtypeStruct((100, d_model), jnp.float32)
  state = jax.eval_shape(lambda p: step_lib.init_state(p, optimizer), prompt)
  step = step_lib.make_train_step(backbone, optimizer, loss, dropout=True)
  new_state, metrics = jax.eval_shape(step, state, model.params, batch_abs)
  assert new_state.prompt.shape == (100, d_model) and metrics['loss'].shape == ()
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model.params))
  assert n_params > {'roberta_large': 3e8, 'roberta_base': 1e8, 't5_small': 5e7, 't5_base': 2e8,
                     't5_large': 7e8, 't5_1_1_lm100k_xxl': 1e10}[preset]


def q_adamw(name):
  """The AdamW settings of the original code: eps 1e-6, no weight decay."""
  try:
    _parse(name)
    return (_query('ptj.make_optimizer.name') == 'adamw' and
            _query('ptj.make_optimizer.adamw_eps') == 1e-6 and
            _query('ptj.make_optimizer.weight_decay') == 0.0 and
            _query('ptj.normal_init.stddev') == 0.02)
  finally:
    gin.clear_config()
