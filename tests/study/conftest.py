"""The study tests' shared run: a tiny two-backbone study of studies/synth.gin (a T5 and a
RoBERTa, three tasks each, TPT_TASK on, the cross-model stage with TPT_MODEL) in a `ptj study`
subprocess, finished once per session; tests that change it work on a copy."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
T5_TASKS = ['synth_sentiment_a', 'synth_sentiment_b', 'synth_paraphrase_a']
ROBERTA_TASKS = ['roberta_synth_sentiment_a', 'roberta_synth_paraphrase_a',
                 'roberta_synth_paraphrase_b']
CROSS_MODEL = 'roberta_to_t5'
CROSS_TARGETS = ['synth_sentiment_a', 'synth_paraphrase_a']   # the T5 tasks with a RoBERTa key
TINY_T5 = ("ptj.t5_model.config_overrides = {'vocab_size': %ptj.SYNTH_VOCAB_SIZE, 'emb_dim': 32, "
           "'num_heads': 2, 'head_dim': 16, 'mlp_dim': 64, 'dropout_rate': 0.0}")
BINDINGS = [
    f't5/ptj.study_backbone.tasks = {T5_TASKS}',
    f'roberta/ptj.study_backbone.tasks = {ROBERTA_TASKS}',
    f't5/ptj.study_backbone.bindings = [{TINY_T5!r}, "PROMPT_LENGTH = 4"]',
    # RoBERTa prompts that cannot move (a learning rate far below float32 resolution) from one
    # shared start: the study warnings' identical and untrained prompts.
    'roberta/ptj.study_backbone.bindings = ["PROMPT_LENGTH = 4", '
    '"ptj.make_optimizer.learning_rate = 1e-30"]',
    "roberta/ptj.study_backbone.prompt_seeds = 'shared'",
    "roberta/ptj.study_backbone.tpt_gin_files = ['prompts/from_file.gin']",   # TPT at that rate
    'roberta/ptj.study_backbone.tpt_bindings = []',
    'STEPS = 4', 'EVAL_PERIOD = 2', 'ptj.study.bootstrap = 20', 'ptj.study.max_examples = 20',
    'ptj.study.tpt = True',
    'ptj.study_cross_model.steps = 2', 'ptj.study_cross_model.eval_period = 1',
    'ptj.study_cross_model.hidden_dim = 8', 'ptj.study_cross_model.tpt = True']
# PT + TPT per task and 4 more per backbone; projector, zero-shot, table and a TPT_MODEL per target.
STAGES = 2 * (2 * 3 + 4) + 3 + len(CROSS_TARGETS)


def start(out, bindings=BINDINGS):
  """`ptj study --gin_file=studies/synth.gin` + `bindings` into `out`, in a new process group."""
  # One compilation cache for the studies of a session: same shapes, nothing compiled twice.
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_backend_optimization_level=0', PYTHONPATH=str(REPO),
             JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(out).parent / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  flags = ['study', '--gin_file=studies/synth.gin', f"--gin.STUDY_DIR='{out}'"] + [
      f'--gin_bindings={b}' for b in bindings]
  return subprocess.Popen([sys.executable, '-m', 'prompt_transfer_jax.cli'] + flags, cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)


def finish(out, bindings=BINDINGS):
  proc = start(out, bindings)
  log, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, log[-3000:]
  return log


@pytest.fixture(scope='session')
def reference(tmp_path_factory):
  """(study directory, its log): the finished two-backbone study with the cross-model stage."""
  out = tmp_path_factory.mktemp('study_runs') / 'reference'
  return out, finish(out)
