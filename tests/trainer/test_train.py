"""End to end on a synthetic task: learning, run artifacts, `ptj eval` and `ptj export`."""
import json
import os

import numpy as np
import pytest

from prompt_transfer_jax.trainer import cli, export, run_record
from tests.trainer.conftest import final_prompt, synth_train


def test_train_eval_export_end_to_end(tmp_path, capsys):
  """150 steps (d_model 256 random T5, Adafactor lr 1.0) on synth_sentiment_a, then the run's
  files, `ptj eval` of the best prompt and `ptj export`. One test, so that the training run is
  shared without being repeated on every pytest-xdist worker."""
  model_dir = tmp_path / 'run'
  summary = synth_train(model_dir, 150, tiny=False, eval_period=50, batch_size=32,
                        extra=['ptj.make_optimizer.learning_rate = 1.0', 'ptj.train.log_period = 25'])
  record = json.loads((model_dir / run_record.METRICS_FILE).read_text())
  assert (summary['final_step'], summary['best_step'], summary['best_score']) == (
      150, record['best_step'], record['best_score'])
  np.testing.assert_array_equal(summary['final_prompt'], final_prompt(model_dir, 150))
  _check_learning(record)
  _check_run_files(model_dir, record)
  _check_eval_cli(model_dir, record, tmp_path, capsys)
  _check_export_cli(model_dir, tmp_path, capsys)


def _check_learning(record):
  """The loss falls and accuracy rises well above chance; the history is complete."""
  history = record['history']
  assert [h['step'] for h in history] == [0, 50, 100, 150]
  assert history[0]['score'] == pytest.approx(50.0, abs=10)          # two balanced classes
  assert history[3]['train_loss'] < 0.6 * history[1]['train_loss']
  assert record['best_score'] >= 80.0
  assert record['metric'] == 'accuracy'
  assert record['best_step'] == max(history, key=lambda h: h['score'])['step']
  elapsed = [h['elapsed_s'] for h in history]
  assert elapsed == sorted(elapsed) and all(h['train_s'] <= h['elapsed_s'] for h in history)


def _check_run_files(model_dir, record):
  config = (model_dir / 'config.gin').read_text()
  assert 'TRAIN_STEPS = 150' in config and "MIXTURE_OR_TASK_NAME = 'synth_sentiment_a'" in config
  for step in (50, 100, 150):
    prompt = final_prompt(model_dir, step)
    assert prompt.shape == (20, 256) and prompt.dtype == np.float32
  best = np.load(model_dir / run_record.BEST_PROMPT_FILE)
  np.testing.assert_array_equal(best, final_prompt(model_dir, record['best_step']))
  assert sorted(p.name for p in model_dir.glob('checkpoint_*')) == ['checkpoint_150']  # keep=1
  from tensorboard.backend.event_processing import event_accumulator
  tags = {}
  for sub in ('train', 'training_eval'):
    acc = event_accumulator.EventAccumulator(str(model_dir / sub))
    acc.Reload()
    tags[sub] = set(acc.Tags()['tensors']) | set(acc.Tags()['scalars'])
  assert {'loss', 'timing/steps_per_second', 'timing/seqs_per_second',
          'timing/compilation_seconds'} <= tags['train']
  assert {'score', 'synth_sentiment_a/accuracy', 'timing/evaluate_seconds'} <= tags['training_eval']


def _check_eval_cli(model_dir, record, tmp_path, capsys):
  """`ptj eval` of the best prompt reproduces the best score of the run."""
  out_file = tmp_path / 'eval.json'
  code = cli.eval_main(['--gin_file=models/t5_synth_prompt.gin', '--gin_file=runs/prompt_eval.gin',
                        f"--gin.PROMPT_FILE='{model_dir / run_record.BEST_PROMPT_FILE}'",
                        "--gin.MIXTURE_OR_TASK_NAME='synth_sentiment_a'",
                        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 2}",
                        f"--gin.EVAL_OUTPUT_FILE='{out_file}'"])
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert code == 0
  assert printed['score'] == pytest.approx(record['best_score'])
  assert printed['num_examples'] == {'synth_sentiment_a': 200}
  assert json.loads(out_file.read_text())['score'] == printed['score']


def _check_export_cli(model_dir, tmp_path, capsys):
  assert cli.export_main([f'--prompt={model_dir}', '--format=peft', f'--out={tmp_path / "peft"}']) == 0
  assert cli.export_main([f'--prompt={model_dir}', '--format=numpy', f'--out={tmp_path / "np"}']) == 0
  best = np.load(model_dir / run_record.BEST_PROMPT_FILE)
  np.testing.assert_array_equal(export.read_peft(str(tmp_path / 'peft')), best)
  config = json.loads((tmp_path / 'peft' / export.PEFT_CONFIG_FILE).read_text())
  assert (config['peft_type'], config['num_virtual_tokens'], config['token_dim'],
          config['num_transformer_submodules']) == ('PROMPT_TUNING', 20, 256, 1)
  np.testing.assert_array_equal(np.load(tmp_path / 'np' / 'encoder.prompt.prompt.prompt'), best)
  assert not [p for p in os.listdir(tmp_path) if '.tmp-' in p]
  capsys.readouterr()
  assert cli.export_main(['--prompt=/nonexistent.npy', f'--out={tmp_path / "x"}']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('ptj export: error:') and 'not found' in err and '\n' not in err


def test_trains_from_a_real_t5x_checkpoint(shared_fixtures, spm_model_path, tmp_path, capsys):
  """google-research/prompt-tuning's tiny T5X checkpoint as the frozen model, T5 vocabulary."""
  from prompt_transfer_jax import tasks
  tasks.configure(t5_vocab=str(spm_model_path))
  try:
    checkpoint = shared_fixtures / 't5x' / 'test_t5_1_1_tiny' / 'checkpoint_3'
    code = cli.train_main([
        '--gin_file=models/t5_1_1_tiny_prompt.gin', '--gin_file=runs/prompt_train.gin',
        f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.MIXTURE_OR_TASK_NAME='t5_synth_nli_a'",
        f"--gin.INITIAL_CHECKPOINT_PATH='{checkpoint}'", '--gin.TRAIN_STEPS=3',
        '--gin.EVAL_PERIOD=3', '--gin.BATCH_SIZE=4', '--gin.ptj.train.max_eval_examples=8',
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", '--gin.DROPOUT_RATE=0.0',
        '--noprogress'])
  finally:
    tasks.settings.reset('t5_vocab')
  assert code == 0, capsys.readouterr().err
  assert final_prompt(tmp_path / 'run', 3).shape == (5, 4)        # PROMPT_LENGTH 5, d_model 4
  operative = (tmp_path / 'run' / 'config.gin').read_text()
  assert 'INITIAL_CHECKPOINT_PATH' in operative and 'test_t5_1_1_tiny' in operative  # gin may wrap
