"""`ptj plan`: memory and FLOPs per device of a prompt-tuning run, before launching it.

With the same gin files and flags as `ptj train`, the frozen model is built abstractly (shapes
and shardings only: `frozen_model.abstract_weights`, no weight is read or drawn), and the real
train step (`step.make_train_step` + `step.jit_train_step`) and the evaluator's rank-
classification step are lowered and compiled ahead of time for a `--devices N
--model_parallel M` mesh. On CPU the devices are fake host devices
(`--xla_force_host_platform_device_count`, set before JAX starts). The report gives per device:
frozen parameter bytes, prompt + optimizer state bytes, the compiled step's peak temporary bytes
(`compiled.memory_analysis()`), the total, the step's FLOPs (`compiled.cost_analysis()`), and the
shardings of the largest arrays. Its last line is machine-readable:

    plan: devices=16 mesh=2x8 per_device_peak_gib=X params_gib_per_device=Y tflops_per_step=Z

Numbers come from the XLA backend the plan is compiled for (XLA:CPU for fake devices): its
fusion and buffer assignment differ from the TPU compiler's, so treat temporary bytes as an
estimate with headroom, and compile on the target platform when one is at hand.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import sys
from typing import Optional, Sequence

from prompt_transfer_jax import command

GIB = 2**30
# XLA:CPU flags of a plan on fake devices, set by `ptj plan` before JAX starts. XLA:CPU's default
# scheduler optimises for concurrency and keeps buffers alive far longer than a TPU's
# memory-aware scheduler (remat then saves almost nothing: T5 1.1 XXL with full remat plans 44 GiB
# per device); the plan uses the memory-minimising one. The plan never runs the machine code, so
# LLVM optimisation is off: the memory and FLOP numbers are the same (checked on a small model),
# and compiling T5 1.1 XXL takes minutes less. XLA:CPU expands away the optimization barriers
# that keep `jax.checkpoint`'s recomputation apart from the forward pass before it runs common
# subexpression elimination, which then merges the two: remat silently becomes no remat. TPU and
# GPU keep the barriers; the plan turns CSE off so what it compiles is the remat the accelerator
# runs. XLA:CPU's all-reduce combiner merges independent all-reduces into one: in the backward
# pass, the model-axis all-reduces of every decoder layer's cross-attention input gradient (two
# float32 [B, P+L, E] per layer) became one, all live together (the T5 1.1 XXL PT plan: 29.5 GiB
# per device, 11.8 without); the plan keeps them separate, as a memory-aware compiler schedules
# them.
# Process-wide debug options (per-jit compiler options are ignored for these), hence XLA_FLAGS.
CPU_PLAN_FLAGS = ('--xla_cpu_enable_concurrency_optimized_scheduler=false '
                  '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true '
                  '--xla_disable_hlo_passes=cse,cpu-all-reduce-combiner')



@dataclasses.dataclass
class CompiledStats:
  """Per-device memory and FLOPs of one compiled step."""
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  flops: float           # per device, from XLA's cost analysis

  @property
  def peak_bytes(self) -> int:
    """Arguments + outputs (less donated aliases) + temporaries live at once at worst."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


@dataclasses.dataclass
class Plan:
  devices: int
  mesh_shape: tuple[int, int]
  param_bytes: int        # frozen parameters, per device
  state_bytes: int        # prompt + optimizer state + rng, per device
  batch_bytes: int        # one train batch, per device
  train: CompiledStats
  eval: CompiledStats
  model_flops: Optional[float]    # analytic matmul FLOPs of the whole train step (T5)
  largest: list           # (name, shape, dtype, spec, bytes per device) of the largest params

  @property
  def peak_bytes(self) -> int:
    return max(self.train.peak_bytes, self.eval.peak_bytes)

  @property
  def tflops_per_step(self) -> float:
    """XLA's count of the whole train step (per-device count x devices), in TFLOPs."""
    return self.train.flops * self.devices / 1e12

  def lines(self) -> list[str]:
    gib = lambda b: f'{b / GIB:.3f} GiB'
    data, model = self.mesh_shape
    out = [f'mesh: {self.devices} devices, data={data} x model={model}',
           f'per device: frozen parameters {gib(self.param_bytes)}, prompt + optimizer state '
           f'{gib(self.state_bytes)}, train batch {gib(self.batch_bytes)}']
    for name, stats in (('train step', self.train), ('eval step', self.eval)):
      out.append(f'{name}: arguments {gib(stats.argument_bytes)}, outputs '
                 f'{gib(stats.output_bytes)} (donated {gib(stats.alias_bytes)}), peak temporary '
                 f'{gib(stats.temp_bytes)}, total {gib(stats.peak_bytes)}, '
                 f'{stats.flops / 1e12:.3f} TFLOPs per device')
    flops = f'train step: {self.tflops_per_step:.2f} TFLOPs (XLA count, all devices)'
    if self.model_flops:
      flops += f'; model matmul FLOPs {self.model_flops / 1e12:.2f} T (trainer/flops.py)'
    out.append(flops)
    out.append('largest frozen arrays (per-device bytes):')
    for name, shape, dtype, spec, nbytes in self.largest:
      out.append(f'  {name} {shape} {dtype} {spec} -> {gib(nbytes)}')
    out.append(f'plan: devices={self.devices} mesh={data}x{model} '
               f'per_device_peak_gib={self.peak_bytes / GIB:.2f} '
               f'params_gib_per_device={self.param_bytes / GIB:.2f} '
               f'tflops_per_step={self.tflops_per_step:.4g}')
    return out


def _stats(compiled) -> CompiledStats:
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return CompiledStats(int(memory.argument_size_in_bytes), int(memory.output_size_in_bytes),
                       int(memory.alias_size_in_bytes), int(memory.temp_size_in_bytes),
                       float((cost or {}).get('flops', 0.0)))


def _per_device_bytes(shapes, shardings) -> int:
  import jax
  import numpy as np
  return sum(int(np.prod(s.shard_shape(x.shape), dtype=np.int64)) * np.dtype(x.dtype).itemsize
             for x, s in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings)))


def _largest(shapes, shardings, count: int = 5) -> list:
  import jax
  import numpy as np
  rows = []
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  for (path, x), s in zip(flat, jax.tree.leaves(shardings)):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    nbytes = int(np.prod(s.shard_shape(x.shape), dtype=np.int64)) * np.dtype(x.dtype).itemsize
    rows.append((name, tuple(x.shape), np.dtype(x.dtype).name, s.spec, nbytes))
  return sorted(rows, key=lambda r: -r[-1])[:count]


def _label_targets(model, task_name: str, target_length: int):
  """The task's label targets for the RoBERTa loss and rank classification (two placeholder
  labels when the task's vocabulary is not available here: the cost hardly depends on them)."""
  import numpy as np
  from prompt_transfer_jax import tasks
  from prompt_transfer_jax.trainer import data as data_lib
  try:
    return np.asarray(tasks.label_targets(data_lib.task_names_of(task_name)[0]), np.int32)
  except Exception:  # noqa: BLE001  (no tokenizer / not a classification task: placeholder labels)
    targets = np.zeros((2, target_length), np.int32)
    targets[:, 0] = (5, 6) if model.family == 't5' else (model.pad_id + 3, model.pad_id + 4)
    return targets


def plan_step(model, batch_size: int, lengths, prompt_length: int, optimizer, loss_cfg,
              mesh, eval_batch_size: int, label_targets, seed: int = 0) -> Plan:
  """Lowers and compiles the train and eval steps for `mesh` from shapes alone."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.trainer import data as data_lib
  from prompt_transfer_jax.trainer import flops as flops_lib
  from prompt_transfer_jax.trainer import step as step_lib
  data_lib.check_batch_size(batch_size, mesh)
  data_lib.check_batch_size(eval_batch_size, mesh, 'the evaluation batch size')
  param_shardings = model.shardings(mesh)
  params = model.params
  batch_sharding = partitioning.data_sharding(mesh)
  replicated = NamedSharding(mesh, PartitionSpec())
  backbone = model.for_task(label_targets)
  prompt = jax.ShapeDtypeStruct((prompt_length, model.embed_dim), jnp.float32)
  state = jax.eval_shape(lambda p: step_lib.init_state(p, optimizer, seed), prompt)

  def batch(rows):
    b = {'encoder_input_tokens': (rows, lengths['inputs']),
         'decoder_target_tokens': (rows, lengths['targets']),
         'decoder_input_tokens': (rows, lengths['targets']),
         'decoder_loss_weights': (rows, lengths['targets']), 'label': (rows,)}
    return {k: jax.ShapeDtypeStruct(v, jnp.int32) for k, v in b.items()}

  dropout = any(getattr(model.config, n, 0.0) > 0 for n in
                ('dropout_rate', 'hidden_dropout_prob', 'attention_probs_dropout_prob'))
  train_fn = step_lib.jit_train_step(
      step_lib.make_train_step(backbone, optimizer, loss_cfg, dropout=dropout), state, mesh,
      param_shardings, batch_sharding)
  train = _stats(train_fn.lower(state, params, batch(batch_size)).compile())
  labels = jax.ShapeDtypeStruct(label_targets.shape, jnp.int32)
  eval_fn = jax.jit(partitioning.constrain_activations(backbone.score_labels, mesh),
                    in_shardings=(param_shardings, replicated, batch_sharding, replicated),
                    out_shardings=replicated, compiler_options=step_lib.compiler_options(mesh))
  evaluate = _stats(eval_fn.lower(params, prompt, batch(eval_batch_size), labels).compile())
  state_sh = step_lib.state_shardings(state, mesh)
  model_flops = None
  if model.family == 't5':
    model_flops = flops_lib.train_step_flops(model.config, batch_size, lengths['inputs'],
                                             lengths['targets'], prompt_length)
  return Plan(devices=mesh.size, mesh_shape=(mesh.shape['data'], mesh.shape['model']),
              param_bytes=_per_device_bytes(params, param_shardings),
              state_bytes=_per_device_bytes(state, state_sh),
              batch_bytes=_per_device_bytes(batch(batch_size),
                                            {k: batch_sharding for k in batch(batch_size)}),
              train=train, eval=evaluate, model_flops=model_flops,
              largest=_largest(params, param_shardings))


def _train_setting(name: str):
  """`ptj.train.<name>` as gin binds it (references and macros evaluated), else its default."""
  import gin
  from prompt_transfer_jax.trainer import train
  try:
    value = gin.query_parameter(f'ptj.train.{name}')
  except ValueError:
    default = inspect.signature(train.train).parameters[name].default
    if default is inspect.Parameter.empty or default is gin.REQUIRED:
      raise ValueError(f'missing gin setting ptj.train.{name}') from None
    return default
  return copy.deepcopy(value)   # evaluates @configurable() references and %MACROS


def plan_from_gin(devices: Optional[int] = None, model_parallel: Optional[int] = None) -> Plan:
  """The plan of the `ptj.train` run the parsed gin configuration describes."""
  import jax
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.trainer import frozen_model
  from prompt_transfer_jax.trainer import step as step_lib
  from prompt_transfer_jax.trainer import train
  available = jax.devices()
  devices = devices or len(available)
  if devices > len(available):
    raise ValueError(f'--devices={devices} but only {len(available)} {available[0].platform} '
                     'devices exist (on CPU, set --devices before JAX starts: run `ptj plan` in a '
                     'fresh process)')
  model_parallel = model_parallel or _train_setting('model_parallel')
  mesh = partitioning.make_mesh(model_parallel, available[:devices])
  with frozen_model.abstract_weights():
    model = _train_setting('model')
  # pylint: disable-next=protected-access
  lengths = train._check_lengths(_train_setting('task_feature_lengths'))
  batch_size = int(_train_setting('batch_size'))
  optimizer = _train_setting('optimizer') or step_lib.make_optimizer()
  loss_cfg = step_lib.LossConfig(_train_setting('z_loss'), _train_setting('label_smoothing'),
                                 _train_setting('loss_normalization'))
  eval_batch_size = int(_train_setting('eval_batch_size') or batch_size)
  label_targets = _label_targets(model, _train_setting('mixture_or_task_name'),
                                 lengths['targets'])
  return plan_step(model, batch_size, lengths, int(_train_setting('prompt_length')), optimizer,
                   loss_cfg, mesh, eval_batch_size, label_targets, int(_train_setting('seed')))


def set_cpu_flags(devices: Optional[int]) -> None:
  """XLA:CPU flags for planning (`CPU_PLAN_FLAGS`, `devices` fake devices); effective only
  before JAX initialises its CPU backend."""
  flags = os.environ.get('XLA_FLAGS', '')
  if devices and 'xla_force_host_platform_device_count' not in flags:
    flags += f' --xla_force_host_platform_device_count={devices}'
  if 'xla_cpu_enable_concurrency_optimized_scheduler' not in flags:
    flags += ' ' + CPU_PLAN_FLAGS
  os.environ['XLA_FLAGS'] = flags.strip()


def _plan_flags(fv) -> None:
  from absl import flags
  command.gin_flags(fv)
  flags.DEFINE_integer('devices', None, 'number of devices (default: all local devices; on CPU, '
                       'fake host devices)', flag_values=fv)
  flags.DEFINE_integer('model_parallel', None, 'model-parallel mesh axis (default: '
                       'ptj.train.model_parallel)', flag_values=fv)
  flags.DEFINE_float('hbm_gib', None, 'per-device memory limit in GiB: exit 2 when the plan '
                     'exceeds it', flag_values=fv)


def run_plan(fv) -> int:
  """`ptj plan`: prints the plan of the parsed flags; exit 2 when it exceeds `--hbm_gib`."""
  if fv.devices is not None and fv.devices < 1:
    raise command.UsageError(f'--devices must be positive, got {fv.devices}')
  if 'jax' not in sys.modules:
    set_cpu_flags(fv.devices)
  return print_plan(fv, fv.devices, fv.model_parallel, fv.hbm_gib)


def print_plan(fv, devices: Optional[int] = None, model_parallel: Optional[int] = None,
               hbm_gib: Optional[float] = None) -> int:
  """Sets up gin from the flags (as `ptj train`) and prints the plan (`ptj train --dry_run`)."""
  from prompt_transfer_jax.trainer import runs
  runs.setup_flags(fv)
  try:
    plan = runs.gin_call(lambda: plan_from_gin(devices, model_parallel))
  except ValueError as e:
    raise command.UsageError(command.one_line(e)) from None
  for line in plan.lines():
    print(line)
  if hbm_gib is not None and plan.peak_bytes > hbm_gib * GIB:
    raise command.UsageError(f'the plan needs {plan.peak_bytes / GIB:.2f} GiB per device, more than '
                         f'--hbm_gib={hbm_gib:g} (try a larger --model_parallel, REMAT, '
                         'FROZEN_DTYPE/ACTIVATION_DTYPE bfloat16 or a smaller batch)')
  return 0


def main(argv: Sequence[str]) -> int:
  """`ptj plan`: per-device memory and FLOPs of a `ptj train` configuration, from shapes only."""
  return command.run('ptj plan', argv, main.__doc__, _plan_flags, run_plan)


