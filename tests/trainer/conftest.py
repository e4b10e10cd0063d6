"""Helpers for the trainer tests: `ptj train` argument lists for small synthetic runs."""
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


def synth_args(model_dir, steps, task='synth_sentiment_a', tiny=True, eval_period=None,
               batch_size=8, extra=()):
  """`ptj train` flags for a short run on a synthetic task."""
  args = ['--gin_file=models/t5_synth_prompt.gin', '--gin_file=runs/prompt_train.gin',
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.MIXTURE_OR_TASK_NAME='{task}'",
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 2}",
          f'--gin.TRAIN_STEPS={steps}', f'--gin.BATCH_SIZE={batch_size}',
          f'--gin.EVAL_PERIOD={eval_period or steps}', '--noprogress']
  if tiny:
    args += [f'--gin.ptj.t5_model.config_overrides={TINY_MODEL}', '--gin.PROMPT_LENGTH=4',
             '--gin.ptj.train.max_eval_examples=16']
  return args + list(extra)


def final_prompt(model_dir, step):
  return np.load(checkpointing.numpy_prompt_path(str(model_dir), step), allow_pickle=False)


def ptj_subprocess(args, devices: int = 1, **kwargs):
  """Starts `python -m prompt_transfer_jax.cli ARGS` in the repository root, on `devices` CPU
  devices, with XLA's backend optimisations off (a tiny model compiles 3x faster; results stay
  deterministic, and every process of a test gets the same flags)."""
  flags = '--xla_backend_optimization_level=0'
  if devices > 1:
    flags += f' --xla_force_host_platform_device_count={devices}'
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='3', HF_HUB_OFFLINE='1',
             XLA_FLAGS=flags, JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, '-m', 'prompt_transfer_jax.cli'] + list(args),
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
