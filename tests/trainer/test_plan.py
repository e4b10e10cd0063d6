"""`ptj plan` / `ptj train --dry_run`: the real train and eval steps compiled from shapes alone.

The paper's PT setting (global batch 32, inputs 512 + 100 prompt tokens, targets 8, bf16
weights and activations) for T5 1.1 XXL on 16 fake CPU devices (model parallel 8) and
RoBERTa-Large on 4 devices fits in 12 GiB per device, and the processes never hold the weights
(their peak resident memory is a fraction of the bf16 parameter bytes).
"""
import os
import re
import resource
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.trainer.conftest import REPO, synth_args

PLAN_LINE = re.compile(r'^plan: devices=(\d+) mesh=(\d+)x(\d+) per_device_peak_gib=([\d.]+) '
                       r'params_gib_per_device=([\d.]+) tflops_per_step=([\d.e+-]+)$')
PAPER_PT = ["--gin.MODEL_DIR='/tmp/unused'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, "
            "'targets': 8}", '--gin.BATCH_SIZE=32', '--gin.PROMPT_LENGTH=100',
            "--gin.FROZEN_DTYPE='bfloat16'", "--gin.ACTIVATION_DTYPE='bfloat16'"]


def _plan_subprocess(args, timeout=600):
  """`ptj plan ARGS` in a fresh process (the fake device count is set before JAX starts); returns
  (exit code, stdout, stderr, the child's peak resident memory in bytes)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO)
  env.pop('XLA_FLAGS', None)
  before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  proc = subprocess.run([sys.executable, '-m', 'prompt_transfer_jax.cli', 'plan'] + list(args),
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
  return proc.returncode, proc.stdout, proc.stderr, peak if peak > before * 1024 else None


def _plan_line(stdout):
  last = stdout.strip().splitlines()[-1]
  match = PLAN_LINE.match(last)
  assert match, last
  devices, data, model, peak, params, tflops = match.groups()
  return int(devices), int(data), int(model), float(peak), float(params), float(tflops)


@pytest.fixture(scope='module')
def xxl_plan():
  """T5 1.1 XXL, PT step, 16 fake devices, model parallel 8, full remat, no dropout (minutes)."""
  code, out, err, rss = _plan_subprocess(
      ['--gin_file=models/t5_1_1_xxl_prompt.gin', '--gin_file=runs/prompt_train.gin',
       "--gin.MIXTURE_OR_TASK_NAME='t5_sst2'", '--gin.INITIAL_CHECKPOINT_PATH=None',
       "--gin.REMAT='full'", '--gin.DROPOUT_RATE=0.0', '--devices=16', '--model_parallel=8']
      + PAPER_PT, timeout=1200)
  assert code == 0, err[-3000:]
  return out, rss


def test_t5_1_1_xxl_plan_compiles_from_shapes_alone(xxl_plan):
  out, rss = xxl_plan
  devices, data, model, _, params, tflops = _plan_line(out)
  assert (devices, data, model) == (16, 2, 8)
  # 11.1e9 bf16 parameters over 8 model shards (1-D partitioning: replicated over data)
  assert 2.4 < params < 2.8, out
  assert 'token_embedder/embedding (32128, 4096) bfloat16' in out
  # XLA's FLOP count: the matmul accounting of trainer/flops.py (forward + activation gradients)
  # plus the forward that full remat recomputes (at most half as much again)
  model_flops = float(re.search(r'model matmul FLOPs ([\d.]+) T', out).group(1))
  assert model_flops < tflops < 1.5 * model_flops, out
  # no weights were materialised: 22 GB of bf16 parameters never came near this process
  if rss is not None:
    assert rss < 8 * 2**30, rss


def test_t5_1_1_xxl_paper_pt_fits_12_gib_per_device(xxl_plan):
  """11.8 GiB: 2.6 of bf16 parameters, 9.2 of train-step temporaries (full remat, CSE and the
  CPU all-reduce combiner off: `plan.CPU_PLAN_FLAGS`; with them on, 29.5)."""
  out, _ = xxl_plan
  assert _plan_line(out)[3] <= 12.0, out


def test_roberta_large_paper_pt_fits_4_devices():
  """Data parallel (its 50265-word vocabulary does not split over a model axis), full remat:
  1.6 GiB per device (16.5 GiB without remat); inputs 412 + 100 prompt rows = 512 positions."""
  code, out, err, _ = _plan_subprocess(
      ['--gin_file=models/roberta_large.gin', '--gin_file=runs/prompt_train.gin',
       "--gin.MIXTURE_OR_TASK_NAME='roberta_sst2'", '--devices=4', '--model_parallel=1',
       "--gin.MODEL_DIR='/tmp/unused'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 412, 'targets': 1}",
       '--gin.BATCH_SIZE=32', "--gin.FROZEN_DTYPE='bfloat16'", "--gin.ACTIVATION_DTYPE='bfloat16'",
       "--gin.REMAT='full'"])
  assert code == 0, err[-3000:]
  devices, data, model, peak, params, _ = _plan_line(out)
  assert (devices, data, model) == (4, 4, 1)
  assert peak <= 12.0 and 0.6 < params < 0.75, out


def test_hbm_limit_is_a_one_line_usage_error():
  code, out, err, _ = _plan_subprocess(synth_args('/tmp/unused', 1) + ['--hbm_gib=0.0001'])
  assert code == 2, err[-3000:]
  assert PLAN_LINE.match(out.strip().splitlines()[-1])
  assert err.count('\n') == 1 and err.startswith('ptj plan: error: the plan needs '), err
  assert 'more than --hbm_gib=0.0001' in err


def test_train_dry_run_prints_the_plan_and_trains_nothing(run_train, tmp_path):
  code, out, err = run_train(synth_args(tmp_path / 'run', 1) + ['--dry_run'])
  assert code == 0, err
  devices, data, model, _, _, tflops = _plan_line(out)
  assert (devices, data, model) == (1, 1, 1) and tflops > 0 and 'eval step: arguments' in out
  assert not (tmp_path / 'run').exists()


def _temp_gib(out, step='train step'):
  return float(re.search(step + r': .* peak temporary ([\d.]+) GiB', out).group(1))


def test_remat_policies_lower_the_planned_memory():
  """8 encoder layers of width 256 over 256 tokens: activations dominate the step's memory."""
  temps = {}
  for remat in ('none', 'dots_saveable', 'full'):
    model = ("{'vocab_size': 512, 'emb_dim': 256, 'num_heads': 4, 'head_dim': 64, 'mlp_dim': 512, "
             f"'num_encoder_layers': 8, 'num_decoder_layers': 1, 'remat': '{remat}'}}")
    code, out, err, _ = _plan_subprocess(synth_args(
        '/tmp/unused', 1, tiny=False, batch_size=16,
        extra=[f'--gin.ptj.t5_model.config_overrides={model}',
               "--gin.TASK_FEATURE_LENGTHS={'inputs': 256, 'targets': 4}"]))
    assert code == 0, err[-3000:]
    temps[remat] = _temp_gib(out)
  assert temps['full'] < 0.6 * temps['none'] and temps['dots_saveable'] <= temps['none'], temps


def test_remat_policies_keep_prompt_gradients():
  import jax.numpy as jnp
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.models import t5 as t5_lib
  config = t5_preset('t5_1_1_tiny')
  params = t5_lib.init_params(config)
  tokens = jnp.arange(12, dtype=jnp.int32).reshape(2, 6) % 30 + 2
  prompt = jnp.ones((3, config.emb_dim)) * 0.1

  def grad(remat):
    model = t5_lib.T5(config.replace(remat=remat))
    return jax.grad(lambda q: jnp.sum(model.apply({'params': params}, tokens, tokens[:, :4],
                                                  prompt=q) ** 2))(prompt)

  reference = grad('none')
  for remat in ('full', 'dots_saveable'):
    np.testing.assert_allclose(grad(remat), reference, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='remat must be one of none, full, dots_saveable'):
    config.replace(remat='sometimes')


def test_train_step_constrains_activations_with_the_logical_rules():
  """The models' `nn.with_logical_constraint` calls act only under the rules and a mesh: the
  jitted step lowers with attention activations split as T5X does (heads over 'model')."""
  import jax.numpy as jnp
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.models import t5 as t5_lib
  from prompt_transfer_jax.models.t5_backbone import T5Backbone
  from prompt_transfer_jax.trainer import step as step_lib
  config = t5_preset('t5_1_1_tiny')
  mesh = partitioning.make_mesh()
  shardings = partitioning.logical_shardings(t5_lib.abstract_params(config), mesh,
                                             partitioning.standard_logical_axis_rules())
  params = jax.eval_shape(lambda: t5_lib.init_params(config))
  optimizer = step_lib.make_optimizer()
  state = jax.eval_shape(lambda: step_lib.init_state(jnp.zeros((3, config.emb_dim)), optimizer))
  batch = {k: jax.ShapeDtypeStruct((2, n), jnp.int32) for k, n in
           (('encoder_input_tokens', 6), ('decoder_target_tokens', 3),
            ('decoder_input_tokens', 3), ('decoder_loss_weights', 3))}
  step = step_lib.make_train_step(T5Backbone(config), optimizer, step_lib.LossConfig())
  text = step_lib.jit_train_step(step, state, mesh, shardings, partitioning.data_sharding(mesh)
                                 ).lower(state, params, batch).as_text()
  constraints = [l for l in text.splitlines() if 'sharding_constraint' in l]
  assert any('[{"data"}, {}, {"model"}, {}]' in l for l in constraints), constraints[:5]
