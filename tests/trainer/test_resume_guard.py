"""The resume guard refuses a run that would mix with the one in MODEL_DIR, before writing."""
import pytest

from prompt_transfer_jax.trainer import resume_guard

SAVED = """# Macros:
# ==============================================================================
BATCH_SIZE = 4
MIXTURE_OR_TASK_NAME = 'synth_sentiment_a'
MODEL = @ptj.t5_model()
MODEL_PRESET = 't5_demo'
PROMPT_LENGTH = 20

# Parameters for MODEL/ptj.t5_model:
# ==============================================================================
MODEL/ptj.t5_model.checkpoint = None
MODEL/ptj.t5_model.config_overrides = \\
    {'dropout_rate': 0.0,
     'emb_dim': 256}
MODEL/ptj.t5_model.preset = %MODEL_PRESET

# Parameters for ptj.train:
# ==============================================================================
ptj.train.batch_size = %BATCH_SIZE
ptj.train.eval_period = 10
ptj.train.mixture_or_task_name = %MIXTURE_OR_TASK_NAME
ptj.train.prompt_length = %PROMPT_LENGTH
"""


@pytest.fixture
def model_dir(tmp_path):
  (tmp_path / 'config.gin').write_text(SAVED)
  return str(tmp_path)


def test_parse_follows_macros_and_continuations():
  values = resume_guard.guarded_values(SAVED)
  assert values['task'] == {'train.mixture_or_task_name': 'synth_sentiment_a'}
  assert values['model']['t5_model.config_overrides'] == {'dropout_rate': 0.0, 'emb_dim': 256}
  assert values['model']['t5_model.preset'] == 't5_demo'
  assert values['batch size'] == {'train.batch_size': 4}


@pytest.mark.parametrize('old, new, label', [
    ("MIXTURE_OR_TASK_NAME = 'synth_sentiment_a'", "MIXTURE_OR_TASK_NAME = 'synth_nli_a'", 'task'),
    ("MODEL_PRESET = 't5_demo'", "MODEL_PRESET = 't5_small'", 'model'),
    ("'emb_dim': 256}", "'emb_dim': 128}", 'model'),
    ('PROMPT_LENGTH = 20', 'PROMPT_LENGTH = 7', 'prompt length'),
    ('BATCH_SIZE = 4', 'BATCH_SIZE = 8', 'batch size')])
def test_changes_are_refused_unless_forced(model_dir, old, new, label, tmp_path):
  changed = SAVED.replace(old, new)
  assert changed != SAVED
  with pytest.raises(resume_guard.ResumeRefused, match=f'{label} .*--force_resume') as e:
    resume_guard.check_resume(model_dir, changed, latest_step=5, train_steps=10)
  assert '\n' not in str(e.value)
  resume_guard.check_resume(model_dir, changed, latest_step=5, train_steps=10, force=True)
  assert (tmp_path / 'config.gin').read_text() == SAVED       # nothing written


def test_same_config_other_settings_and_fresh_dirs_pass(model_dir, tmp_path):
  resume_guard.check_resume(model_dir, SAVED.replace('eval_period = 10', 'eval_period = 5'),
                            latest_step=5, train_steps=10)
  reformatted = SAVED.replace("{'dropout_rate': 0.0,\n     'emb_dim': 256}",
                              "{'emb_dim': 256, 'dropout_rate': 0.0}")
  resume_guard.check_resume(model_dir, reformatted, latest_step=5, train_steps=10)
  # No checkpoint yet: a config.gin alone (a run killed before its first save) may be replaced.
  resume_guard.check_resume(model_dir, SAVED.replace('BATCH_SIZE = 4', 'BATCH_SIZE = 8'),
                            latest_step=None, train_steps=10)
  resume_guard.check_resume(str(tmp_path / 'new'), SAVED, latest_step=None, train_steps=1)


def test_train_steps_below_the_latest_step_is_refused_even_forced(model_dir):
  with pytest.raises(resume_guard.ResumeRefused, match='step 5, beyond TRAIN_STEPS=3'):
    resume_guard.check_resume(model_dir, SAVED, latest_step=5, train_steps=3, force=True)
  resume_guard.check_resume(model_dir, SAVED, latest_step=5, train_steps=5)
