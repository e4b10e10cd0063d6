"""Token ids vs the model's vocabulary: a task whose pad / EOS / decoder start / label ids or
vocabulary do not fit the model's embedding table is refused with one line, before anything is
written (JAX would clamp the lookups and train on nonsense)."""
import numpy as np
import pytest

from prompt_transfer_jax import tasks
from prompt_transfer_jax.tasks import token_ids
from prompt_transfer_jax.trainer import cli
from tests.trainer.conftest import synth_args

SYNTH = str(tasks.get_vocabulary('synth'))   # 'WordVocabulary(... words, size=256)'



def _model(vocab_size):
  return (f"--gin.ptj.t5_model.config_overrides={{'vocab_size': {vocab_size}, 'emb_dim': 32, "
          "'num_heads': 2, 'head_dim': 16, 'mlp_dim': 64, 'dropout_rate': 0.0}")


def _error(err, prog):
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), err
  return lines[0]


@pytest.mark.parametrize('vocab_size, named', [
    (1, f"task 'synth_nli_a': EOS id 1 (vocabulary {SYNTH}) is outside the model's vocabulary "
        '(vocab_size 1)'),
    (100, f"task 'synth_nli_a': vocabulary {SYNTH} has 256 ids, more than the model's "
          'vocab_size 100')])
def test_train_refuses_a_model_smaller_than_the_vocabulary(tmp_path, run_train, vocab_size, named):
  model_dir = tmp_path / 'run'
  code, out, err = run_train(synth_args(model_dir, 2, task='synth_nli_a',
                                        extra=[_model(vocab_size)]))
  assert code == 2 and _error(err, 'ptj train').startswith(f'ptj train: error: {named}')
  assert out == '' and not model_dir.exists() and list(tmp_path.iterdir()) == []


def test_eval_refuses_it_too(tmp_path, capsys):
  prompt_file = tmp_path / 'prompt.npy'
  np.save(prompt_file, np.zeros((4, 32), np.float32))
  code = cli.eval_main(['--gin_file=models/t5_synth_prompt.gin', '--gin_file=runs/prompt_eval.gin',
                        _model(1), '--gin.PROMPT_LENGTH=4', f"--gin.PROMPT_FILE='{prompt_file}'",
                        "--gin.MIXTURE_OR_TASK_NAME='synth_sentiment_a'",
                        f"--gin.EVAL_OUTPUT_FILE='{tmp_path / 'eval.json'}'",
                        f"--gin.EVAL_PREDICTIONS_DIR='{tmp_path / 'preds'}'", '--noprogress'])
  out, err = capsys.readouterr()
  assert code == 2 and "task 'synth_sentiment_a': EOS id 1" in _error(err, 'ptj eval')
  assert out == '' and list(tmp_path.iterdir()) == [prompt_file]


@pytest.mark.parametrize('kwargs, named', [
    (dict(pad_id=300), 'pad id 300'),
    (dict(pad_id=0, decoder_start_id=-1), 'decoder start id -1'),
    (dict(pad_id=0, decoder_start_id=0, label_targets=np.array([[3, 1], [300, 0]])),
     'label id 300'),
])
def test_each_id_is_named(kwargs, named):
  with pytest.raises(ValueError) as e:
    token_ids.check_fits('synth_nli_a', 256, **kwargs)
  assert str(e.value).startswith(f"task 'synth_nli_a': {named} (vocabulary {SYNTH}) is outside "
                                 "the model's vocabulary (vocab_size 256)")


def test_ids_that_fit_pass():
  token_ids.check_fits('synth_nli_a', 256, 0, 0, np.array([[3, 1], [255, 0]]))
