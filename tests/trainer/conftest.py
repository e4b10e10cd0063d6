"""Helpers for the trainer tests: small synthetic runs, as Python calls (`runs.train_run`) or as
`ptj train` argument lists (the tests of the command line itself)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from prompt_transfer_jax.trainer import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A very small random T5 over the synthetic vocabulary: cheap to compile, enough to test plumbing.
TINY_MODEL = ("{'vocab_size': %ptj.SYNTH_VOCAB_SIZE, 'emb_dim': 32, 'num_heads': 2, "
              "'head_dim': 16, 'mlp_dim': 64, 'dropout_rate': %DROPOUT_RATE}")


def synth_gin(model_dir, steps, task='synth_sentiment_a', tiny=True, eval_period=None,
              batch_size=8, extra=()):
  """(gin files, gin bindings) of a short run on a synthetic task; `extra` are more bindings."""
  files = ['models/t5_synth_prompt.gin', 'runs/prompt_train.gin']
  bindings = [f"MODEL_DIR = '{model_dir}'", f"MIXTURE_OR_TASK_NAME = '{task}'",
              "TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 2}",
              f'TRAIN_STEPS = {steps}', f'BATCH_SIZE = {batch_size}',
              f'EVAL_PERIOD = {eval_period or steps}']
  if tiny:
    bindings += [f'ptj.t5_model.config_overrides = {TINY_MODEL}', 'PROMPT_LENGTH = 4',
                 'ptj.train.max_eval_examples = 16']
  return files, bindings + list(extra)


def synth_train(model_dir, steps, **kwargs) -> dict:
  """Trains a short synthetic run in this process; returns its summary."""
  from prompt_transfer_jax.trainer import runs
  return runs.train_run(*synth_gin(model_dir, steps, **kwargs))


def synth_args(model_dir, steps, task='synth_sentiment_a', tiny=True, eval_period=None,
               batch_size=8, extra=()):
  """`ptj train` flags for the same run as `synth_gin`; `extra` are more flags."""
  files, bindings = synth_gin(model_dir, steps, task, tiny, eval_period, batch_size)
  args = [f'--gin_file={f}' for f in files]
  args += ['--gin.' + b.replace(' = ', '=', 1) for b in bindings]
  return args + ['--noprogress'] + list(extra)


def final_prompt(model_dir, step):
  return np.load(checkpointing.numpy_prompt_path(str(model_dir), step), allow_pickle=False)


def ptj_subprocess(args, devices: int = 1, module: str = 'prompt_transfer_jax.cli', env=None,
                   **kwargs):
  """Starts `python -m prompt_transfer_jax.cli ARGS` (or another `module`) in the repository root,
  on `devices` CPU devices, with XLA's backend optimisations off (a tiny model compiles 3x faster;
  results stay deterministic, and every process of a test gets the same flags); `env`: more
  environment variables."""
  flags = '--xla_backend_optimization_level=0'
  if devices > 1:
    flags += f' --xla_force_host_platform_device_count={devices}'
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='3', HF_HUB_OFFLINE='1',
             XLA_FLAGS=flags, JAX_PLATFORMS='cpu', **(env or {}))
  return subprocess.Popen([sys.executable, '-m', module] + list(args),
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kwargs)


@pytest.fixture
def run_train(capsys):
  """Runs `ptj train` in this process; returns (exit code, stdout, stderr)."""
  from prompt_transfer_jax.trainer import cli

  def run(args):
    code = cli.train_main(args)
    out, err = capsys.readouterr()
    return code, out, err
  return run
