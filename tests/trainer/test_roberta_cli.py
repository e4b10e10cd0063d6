"""RoBERTa end to end from the gin files: `ptj train`, `ptj eval`, `ptj transfer zero-shot` and
`ptj analyze activations` on a synthetic task, with a small random RoBERTa saved as an HF directory."""
import json
import shutil

import jax
import numpy as np
import pytest

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.tasks import settings, synth_roberta, synthetic

TASK = 'roberta_synth_sentiment_a'
LENGTHS = "{'inputs': 24, 'targets': 1}"
# The shapes and init of models/roberta_synth_prompt.gin.
CONFIG = roberta_lib.roberta_preset(
    'roberta_tiny', vocab_size=synthetic.SYNTH_VOCAB_SIZE, hidden_size=64, num_attention_heads=4,
    intermediate_size=128, initializer_range=0.3, prompt_layout='plain', hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0)


@pytest.fixture(scope='module')
def backbone(tmp_path_factory):
  """The synthetic tokenizer (configured for the module) and the backbone directory."""
  root = tmp_path_factory.mktemp('roberta_cli')
  synth_roberta.use(str(root / 'tokenizer'))
  path = checkpoints.save_roberta(str(root / 'backbone'), CONFIG,
                                  checkpoints.random_params(CONFIG))
  yield root, path
  settings.reset('roberta_tokenizer')


def _gin(path, *extra):
  return ['--gin_file=models/roberta_synth_prompt.gin', *extra,
          f"--gin.INITIAL_CHECKPOINT_PATH='{path}'", f"--gin.MIXTURE_OR_TASK_NAME='{TASK}'",
          f'--gin.TASK_FEATURE_LENGTHS={LENGTHS}']


def _json_out(capsys):
  out, err = capsys.readouterr()
  assert out.strip(), err
  return json.loads(out.strip().splitlines()[-1])


def test_saved_roberta_reads_back_bit_identical(backbone):
  _, path = backbone
  config, params = checkpoints.load_roberta(path, prompt_layout='plain')
  assert config == CONFIG
  jax.tree.map(np.testing.assert_array_equal, params, checkpoints.random_params(CONFIG))


def test_train_eval_transfer_analyze_from_the_command_line(backbone, capsys):
  from prompt_transfer_jax.analysis import cli as analysis_cli
  from prompt_transfer_jax.trainer import cli
  from prompt_transfer_jax.transfer import cli as transfer_cli
  root, path = backbone
  run = root / 'run'
  assert cli.train_main(_gin(path, '--gin_file=runs/prompt_train.gin') + [
      f"--gin.MODEL_DIR='{run}'", '--gin.TRAIN_STEPS=150', '--gin.EVAL_PERIOD=50',
      '--gin.BATCH_SIZE=32', '--noprogress']) == 0
  summary = _json_out(capsys)
  history = json.loads((run / 'metrics.json').read_text())['history']
  assert history[0]['score'] <= 55.0 < summary['best_score']   # the prompt learns (chance 50)

  best = run / 'best_prompt.npy'
  assert cli.eval_main(_gin(path, '--gin_file=runs/prompt_eval.gin') + [
      f"--gin.PROMPT_FILE='{best}'"]) == 0
  assert _json_out(capsys)['score'] == pytest.approx(summary['best_score'], abs=1e-6)

  prompts = root / 'prompts'
  prompts.mkdir()
  shutil.copy(best, prompts / f'{TASK}.npy')
  np.save(prompts / 'roberta_synth_sentiment_b.npy', np.load(best))
  out = root / 'transfer.json'
  assert transfer_cli.main([
      'zero-shot', '--prompts', str(prompts), '--model', path, '--family', 'roberta',
      '--config_overrides', '{"prompt_layout": "plain"}', '--inputs_length', '24',
      '--targets_length', '1', '--out', str(out)]) == 0
  result = json.loads(out.read_text())
  row = result['tasks'].index(TASK)
  assert result['matrix'][row][result['sources'].index(TASK)] == pytest.approx(
      summary['best_score'], abs=1e-6)

  acts = root / 'acts.npz'
  assert analysis_cli.analyze_main(['activations', '--prompts', str(prompts), '--model', path,
                                    '--family', 'roberta', '--out', str(acts)]) == 0
  with np.load(acts, allow_pickle=False) as stored:
    values = [stored[k] for k in stored.files if stored[k].dtype.kind == 'f']
  assert values and all(np.all(np.isfinite(v)) for v in values)
  assert any(v.shape[0] == 2 and CONFIG.intermediate_size in v.shape for v in values)


def test_training_leaves_the_frozen_weights_bit_identical(backbone, tmp_path):
  from prompt_transfer_jax.trainer import frozen_model, runs, train
  _, path = backbone

  def run():
    model = frozen_model.roberta_model()
    before = jax.tree.map(np.copy, model.params)
    summary = train.train(model=model, show_progress=False)
    return model, before, summary
  bindings = [f"INITIAL_CHECKPOINT_PATH = '{path}'", f"MIXTURE_OR_TASK_NAME = '{TASK}'",
              f'TASK_FEATURE_LENGTHS = {LENGTHS}', f"MODEL_DIR = '{tmp_path / 'run'}'",
              'TRAIN_STEPS = 3', 'EVAL_PERIOD = 3', 'BATCH_SIZE = 8',
              'ptj.train.max_eval_examples = 8']
  model, before, summary = runs.run_gin(
      run, ['models/roberta_synth_prompt.gin', 'runs/prompt_train.gin'], bindings)
  assert summary['final_step'] == 3
  jax.tree.map(np.testing.assert_array_equal, model.params, before)
  jax.tree.map(np.testing.assert_array_equal, model.params, checkpoints.random_params(CONFIG))
