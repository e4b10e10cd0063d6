"""Our jitted prompt-tuning train step vs Hugging Face PEFT prompt tuning, on one T5 shape.

Both train a P-token encoder prompt on the same frozen, random-weight T5 (default: T5 1.1 small
shapes, batch 32, inputs 256, targets 8, P = 100; AdamW, per-token mean loss).

By default each implementation runs in its OWN process (XLA's and PyTorch's thread pools in one
process disturb each other, so an in-process comparison measures interference): rounds of one
`ours` process then one `peft` process (A B A B ...), each process warming up, then timing
`--worker_steps` steps and its own framework's large matmul; the figures are medians over
rounds of the per-round ratios. `--in_process` keeps the older comparison: steps of the two
interleaved in one process, together with large-matmul timings. Printed:

* tokens/s (input + target tokens per second) of each, and their ratio;
* our achieved model FLOP/s (forward + activation-gradient matmul FLOPs, `trainer/flops.py`)
  divided by the large-matmul FLOP/s of the same framework on this machine (its practical peak);
* with `--profile`, where the time of our step goes (XLA ops by kind, phase and model part).

On CPU, `--cpu_devices=N` also times the step data parallel over N JAX CPU devices. The matmul
peak is the better of one n^3 matmul on one device and one per device at once. The process
keeps freed host memory (`trainer/host_memory.py`, as `ptj train` does); PEFT runs under the
same settings (the `speedup_vs_peft` figure) and, for reference, under glibc's defaults, as it
runs on its own.

On an accelerator the frozen weights and activations are bf16 (`--dtype`), the matmul peak is
measured in that dtype, and PEFT (PyTorch, CPU) is skipped unless `--peft` is given.
The last line is machine-readable: `speedup_vs_peft=<x> fraction_of_matmul_peak=<y>`.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import glob
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.models.t5_backbone import T5Backbone
from prompt_transfer_jax.trainer import flops as flops_lib
from prompt_transfer_jax.trainer import host_memory
from prompt_transfer_jax.trainer import step as step_lib
from prompt_transfer_jax.trainer.frozen_model import random_t5_params
from prompt_transfer_jax.partitioning import host, place


def _args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--size', default='t5_1_1_small', help='T5 preset (config.T5_PRESETS)')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--inputs', type=int, default=256)
  p.add_argument('--targets', type=int, default=8)
  p.add_argument('--prompt', type=int, default=100)
  p.add_argument('--steps', type=int, help='timed rounds: one step of each implementation per '
                 'round, after warm-up (default: 5 on CPU, 20 on an accelerator)')
  p.add_argument('--dtype', help='frozen weights and activations of our step (default: float32 '
                 'on CPU, bfloat16 on an accelerator)')
  p.add_argument('--matmul', type=int, help='size n of the n x n x n matmul that measures the '
                 'peak (default: 2048 on CPU, 8192 on an accelerator)')
  p.add_argument('--cpu_devices', type=int, default=1,
                 help='CPU only: number of JAX devices; above 1 our step runs data parallel over '
                 'them, and is also timed on one device with multi-threaded ops')
  p.add_argument('--peft', action=argparse.BooleanOptionalAction,
                 help='also run HF PEFT (PyTorch, CPU); default: on CPU only')
  p.add_argument('--profile', action='store_true', help='print where the time of our step goes')
  p.add_argument('--profile_only', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--json', help='also write the results to this file')
  p.add_argument('--in_process', action='store_true',
                 help='run both implementations in this process, steps interleaved')
  p.add_argument('--rounds', type=int, default=3,
                 help='separate processes: number of (ours, peft) process pairs')
  p.add_argument('--worker_steps', type=int, default=3,
                 help='separate processes: timed steps per process, after one warm-up step')
  p.add_argument('--worker', choices=('ours', 'peft'), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.cpu_devices and args.cpu_devices > 1 and not args.profile_only:
    jax.config.update('jax_num_cpu_devices', args.cpu_devices)  # before the backend starts
  accelerator = jax.default_backend() != 'cpu'
  defaults = {'steps': 20 if accelerator else 5, 'dtype': 'bfloat16' if accelerator else 'float32',
              'matmul': 8192 if accelerator else 2048, 'peft': not accelerator}
  for name, value in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  return args


def _batch(args, vocab):
  rng = np.random.default_rng(0)
  targets = rng.integers(2, min(vocab, 32000), (args.batch, args.targets)).astype(np.int32)
  return {'encoder_input_tokens': rng.integers(2, min(vocab, 32000),
                                               (args.batch, args.inputs)).astype(np.int32),
          'decoder_target_tokens': targets,
          'decoder_input_tokens': np.asarray(t5_lib.shift_right(targets)),
          'decoder_loss_weights': np.ones_like(targets)}


class OurStep:
  """Our jitted train step (AdamW, mean loss) with the frozen weights on the mesh."""

  def __init__(self, args, config, params, batch, devices=None):
    mesh = partitioning.make_mesh(devices=devices)
    shardings = partitioning.logical_shardings(t5_lib.abstract_params(config), mesh,
                                               partitioning.standard_logical_axis_rules())
    self.params = place(jax.tree.map(lambda x: np.asarray(x, config.param_dtype), params), shardings)
    tx = step_lib.make_optimizer('adamw', learning_rate=1e-3)
    prompt = np.random.default_rng(1).normal(size=(args.prompt, config.emb_dim)).astype(np.float32)
    state = step_lib.init_state(prompt, tx)
    self.state = place(jax.device_get(state), step_lib.state_shardings(state, mesh))
    self.batch = place(batch, jax.tree.map(lambda _: partitioning.data_sharding(mesh), batch))
    self.fn = step_lib.jit_train_step(
        step_lib.make_train_step(T5Backbone(config), tx,
                                 step_lib.LossConfig(z_loss=0.0, normalization='mean')),
        self.state, mesh, shardings, partitioning.data_sharding(mesh))

  def __call__(self) -> float:
    start = time.perf_counter()
    self.state, metrics = self.fn(self.state, self.params, self.batch)
    loss = float(host(metrics['loss']))
    if not np.isfinite(loss):
      raise FloatingPointError(f'our step: loss {loss}')
    return time.perf_counter() - start


class PeftStep:
  """HF PEFT prompt tuning (PyTorch, CPU, fp32) of the same T5 shape."""

  def __init__(self, args, config, batch):
    import peft
    import torch
    import transformers
    from prompt_transfer_jax.checkpoints.hf_t5 import hf_config
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    self.torch = torch
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf_config(config)))
    self.model = peft.get_peft_model(model, peft.PromptTuningConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=args.prompt))
    self.model.train()
    self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                       lr=1e-3)
    self.inputs = torch.tensor(batch['encoder_input_tokens'], dtype=torch.long)
    self.labels = torch.tensor(batch['decoder_target_tokens'], dtype=torch.long)

  def __call__(self) -> float:
    start = time.perf_counter()
    loss = self.model(input_ids=self.inputs, attention_mask=self.inputs > 0,
                      labels=self.labels).loss
    loss.backward()
    self.optimizer.step()
    self.optimizer.zero_grad(set_to_none=True)
    value = float(loss.detach())
    if not np.isfinite(value):
      raise FloatingPointError(f'PEFT step: loss {value}')
    return time.perf_counter() - start


class GlibcDefaults:
  """Within: glibc's default large-block behaviour (mmap, trimming), as PEFT runs on its own."""

  def __enter__(self):
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    libc.mallopt(-4, 65536)          # M_MMAP_MAX: glibc's default
    libc.mallopt(-1, 128 * 1024)     # M_TRIM_THRESHOLD: glibc's default
    return self

  def __exit__(self, *exc):
    host_memory.keep_freed_memory()


class JaxMatmul:
  """n x n x n matmuls: on one device, or one per device of a multi-device mesh at once."""

  def __init__(self, n: int, dtype, devices=None):
    devices = list(devices or jax.devices()[:1])
    mesh = partitioning.make_mesh(devices=devices)
    self.flops = 2.0 * n ** 3 * len(devices)
    keys = jax.random.split(jax.random.PRNGKey(0))
    self.a = place(np.asarray(jax.random.normal(keys[0], (n * len(devices), n), dtype)),
                   partitioning.data_sharding(mesh))
    self.b = place(np.asarray(jax.random.normal(keys[1], (n, n), dtype)),
                   partitioning.replicated(mesh))
    self.fn = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=dtype),
                      out_shardings=partitioning.data_sharding(mesh))
    self.fn(self.a, self.b).block_until_ready()

  def __call__(self) -> float:
    start = time.perf_counter()
    self.fn(self.a, self.b).block_until_ready()
    return self.flops / (time.perf_counter() - start)


class TorchMatmul:
  def __init__(self, n: int):
    import torch
    self.flops = 2.0 * n ** 3
    self.a, self.b = torch.randn(n, n), torch.randn(n, n)
    self.mm = torch.mm
    self.mm(self.a, self.b)

  def __call__(self) -> float:
    start = time.perf_counter()
    self.mm(self.a, self.b)
    return self.flops / (time.perf_counter() - start)


def _profile(ours: OurStep, steps: int = 1) -> collections.Counter:
  """Seconds per step of our step's XLA ops by (model part, phase, kind), from a JAX trace.

  On CPU run it on one core with one Eigen thread (`_run_profile`): multi-threaded, XLA hands
  matmul work to a pool that the trace does not attribute to the op.
  """
  compiled = ours.fn.lower(ours.state, ours.params, ours.batch).compile().as_text()
  op_names = dict(re.findall(r'%([\w.\-]+) = .*?op_name="([^"]*)"', compiled))
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    for _ in range(steps):
      ours()
    jax.profiler.stop_trace()
    path = glob.glob(os.path.join(d, '**', '*.trace.json.gz'), recursive=True)[0]
    with gzip.open(path) as f:
      events = json.load(f)['traceEvents']
  totals = collections.Counter()
  for e in events:
    op = e.get('args', {}).get('hlo_op')
    if e.get('ph') != 'X' or not op or 'dur' not in e:
      continue
    source = op_names.get(op, '')
    phase = 'backward' if 'transpose(' in source else 'forward'
    totals[(_model_part(source), phase, _op_kind(op))] += e['dur'] / 1e6 / steps
  return totals


def _print_profile(totals: collections.Counter) -> None:
  total = sum(totals.values())
  print(f'where our step spends its time ({total:.1f} s of XLA ops per step on one thread):')
  for title, key in (('by kind', lambda k: (k[2], k[1])), ('by model part', lambda k: (k[0],))):
    grouped = collections.Counter()
    for k, v in totals.items():
      grouped[key(k)] += v
    print(f'  {title}:')
    for k, v in grouped.most_common():
      print(f'    {" / ".join(k):<44} {v:6.2f} s {v / total:6.1%}')


def _op_kind(op: str) -> str:
  """Groups XLA:CPU thunks: matmuls (dot / library fusions), loop fusions, data movement."""
  if op.startswith(('dot', 'ynn_fusion', 'xnn_fusion', 'onednn')):
    return 'matmul'
  if op.startswith(('copy', 'transpose', 'wrapped_broadcast', 'bitcast', 'concatenate', 'slice')):
    return 'data movement'
  return 'elementwise / reduction fusions'


def _model_part(source: str) -> str:
  """The model component an op comes from, by its JAX source path."""
  for part in ('attention', 'mlp', 'layer_norm', 'encoder_norm', 'decoder_norm', 'relpos_bias',
               'logits_dense', 'token_embedder', 'optimizer'):
    if part in source:
      return {'encoder_norm': 'layer_norm', 'decoder_norm': 'layer_norm'}.get(part, part)
  return 'loss, optimizer and other' if source else 'unattributed'


def _rate(measure, seconds: float = 1.0) -> float:
  """Median FLOP/s of repeated matmuls over a window of about `seconds`."""
  rates, start = [], time.perf_counter()
  while time.perf_counter() - start < seconds or len(rates) < 3:
    rates.append(measure())
  return statistics.median(rates)


def _run_profile(args) -> None:
  """The profile of our step; on CPU in a child process with single-threaded XLA matmuls."""
  if jax.default_backend() != 'cpu':
    _print_profile(_profile(_make_ours(args)))
    return
  argv = [sys.executable, os.path.abspath(__file__), '--profile_only', '--cpu_devices=1',
          f'--size={args.size}',
          f'--batch={args.batch}', f'--inputs={args.inputs}', f'--targets={args.targets}',
          f'--prompt={args.prompt}', f'--dtype={args.dtype}']
  flags = os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen=false'
  sys.stdout.flush()
  subprocess.run(argv, env=dict(os.environ, XLA_FLAGS=flags.strip()), check=True)


def _config(args):
  dtype = jnp.dtype(args.dtype)
  return t5_preset(args.size).replace(dropout_rate=0.0, dtype=dtype.name, param_dtype=dtype.name)


def _make_ours(args) -> OurStep:
  config = _config(args)
  params = random_t5_params(config.replace(dtype='float32', param_dtype='float32'))
  ours = OurStep(args, config, params, _batch(args, config.vocab_size))
  ours()
  return ours


def _worker(args) -> dict:
  """One implementation in this process: warm-up, then `worker_steps` steps, each followed by
  a window of this framework's large matmul. Returns median seconds per step and FLOP/s."""
  if args.worker == 'ours':
    step = _make_ours(args)
    peak = JaxMatmul(args.matmul, jnp.dtype(args.dtype))
  else:
    step = PeftStep(args, _config(args), _batch(args, _config(args).vocab_size))
    step()
    peak = TorchMatmul(args.matmul)
  times, rates = [], []
  for _ in range(args.worker_steps):
    times.append(step())
    rates.append(_rate(peak))
  return {'s_per_step': statistics.median(times), 'matmul_flops': statistics.median(rates)}


def _separate(args, model_flops: float, tokens_per_step: int) -> dict:
  """Rounds of one process per implementation, alternating; medians of per-round ratios."""
  names = ['ours'] + (['peft'] if args.peft else [])
  flags = [f'--size={args.size}', f'--batch={args.batch}', f'--inputs={args.inputs}',
           f'--targets={args.targets}', f'--prompt={args.prompt}', f'--dtype={args.dtype}',
           f'--matmul={args.matmul}', f'--worker_steps={args.worker_steps}']
  rounds = collections.defaultdict(list)
  for i in range(args.rounds):
    for name in names:
      proc = subprocess.run([sys.executable, os.path.abspath(__file__), f'--worker={name}']
                            + flags, capture_output=True, text=True)
      if proc.returncode != 0:
        raise SystemExit(f'{name} worker failed: {proc.stderr[-2000:]}')
      out = json.loads(proc.stdout.strip().splitlines()[-1])
      rounds[name].append(out['s_per_step'])
      rounds[f'{name}_matmul'].append(out['matmul_flops'])
    rounds['fraction'].append(model_flops / rounds['ours'][-1] / rounds['ours_matmul'][-1])
    line = (f'round {i + 1}/{args.rounds}: ours {rounds["ours"][-1]:.2f} s/step '
            f'({rounds["fraction"][-1]:.1%} of its matmul peak)')
    if args.peft:
      rounds['speedup'].append(rounds['peft'][-1] / rounds['ours'][-1])
      peft_fraction = model_flops / rounds['peft'][-1] / rounds['peft_matmul'][-1]
      line += (f', peft {rounds["peft"][-1]:.2f} s/step ({peft_fraction:.1%} of its matmul '
               f'peak), ratio {rounds["speedup"][-1]:.2f}')
    print(line, flush=True)
  med = {k: statistics.median(v) for k, v in rounds.items()}
  result = {'mode': 'separate processes', 'rounds': args.rounds,
            'worker_steps': args.worker_steps, 'ours_s_per_step': med['ours'],
            'ours_tokens_per_s': tokens_per_step / med['ours'],
            'ours_gflop_per_s': model_flops / med['ours'] / 1e9,
            'matmul_gflop_per_s': med['ours_matmul'] / 1e9,
            'fraction_of_matmul_peak': med['fraction']}
  print(f'ours: {med["ours"]:.2f} s/step, {tokens_per_step / med["ours"]:.0f} tokens/s, '
        f'{model_flops / med["ours"] / 1e9:.1f} GFLOP/s; its jax matmul '
        f'{med["ours_matmul"] / 1e9:.1f} GFLOP/s; {med["fraction"]:.1%} of it (median of rounds)')
  if args.peft:
    result.update(peft_s_per_step=med['peft'], peft_tokens_per_s=tokens_per_step / med['peft'],
                  torch_matmul_gflop_per_s=med['peft_matmul'] / 1e9,
                  speedup_vs_peft=med['speedup'])
    print(f'peft: {med["peft"]:.2f} s/step, {tokens_per_step / med["peft"]:.0f} tokens/s; its '
          f'torch matmul {med["peft_matmul"] / 1e9:.1f} GFLOP/s; ours / peft tokens/s (median '
          f'of per-round ratios): {med["speedup"]:.2f}x')
  return result


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if '--profile_only' in argv and hasattr(os, 'sched_setaffinity'):
    # one core, before XLA starts: it then runs every op on the thread the trace follows
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  kept = host_memory.keep_freed_memory()    # as `ptj train` does; applies to PEFT (torch) too
  args = _args(argv)
  if args.profile_only:
    _print_profile(_profile(_make_ours(args)))
    return 0
  if args.worker:
    print(json.dumps(_worker(args)))
    return 0
  dtype = jnp.dtype(args.dtype)
  config = _config(args)
  device = jax.devices()[0]
  print(f'device: {device.device_kind} x{jax.device_count()} ({jax.default_backend()}), '
        f'{os.cpu_count()} CPU cores; model {args.size} ({args.dtype}), batch {args.batch}, '
        f'inputs {args.inputs}, targets {args.targets}, prompt {args.prompt}; glibc keeps freed '
        f'memory: {kept}', flush=True)
  tokens_per_step = args.batch * (args.inputs + args.targets)
  model_flops = flops_lib.train_step_flops(config, args.batch, args.inputs, args.targets,
                                           args.prompt)

  if not args.in_process:
    result = _separate(args, model_flops, tokens_per_step)
    if args.profile:
      _run_profile(args)
    if args.json:
      with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'speedup_vs_peft={result.get("speedup_vs_peft", float("nan")):.3f} '
          f'fraction_of_matmul_peak={result["fraction_of_matmul_peak"]:.3f}')
    return 0
  params = random_t5_params(config.replace(dtype='float32', param_dtype='float32'))
  batch = _batch(args, config.vocab_size)
  t0 = time.perf_counter()
  ours = OurStep(args, config, params, batch)
  first = ours()
  print(f'ours: compile + first step {time.perf_counter() - t0:.1f} s ({first:.1f} s)', flush=True)
  steps = {'ours': ours}
  multi = jax.default_backend() == 'cpu' and jax.device_count() > 1
  if multi:       # the same step on one device, its ops multi-threaded instead
    steps['ours_one_device'] = OurStep(args, config, params, batch, devices=jax.devices()[:1])
    steps['ours_one_device']()
  if args.peft:
    peft_step = PeftStep(args, config, batch)
    steps['peft'] = peft_step

    def peft_glibc_default():
      with GlibcDefaults():
        return peft_step()
    steps['peft_glibc_default'] = peft_glibc_default
    print(f'peft: warm-up step {peft_step():.1f} s', flush=True)
  matmuls = [JaxMatmul(args.matmul, dtype)] + ([JaxMatmul(args.matmul, dtype, jax.devices())]
                                                if multi else [])

  def matmul() -> float:
    """The machine's large-matmul rate: the better of one device and all devices at once."""
    return max(m() for m in matmuls)
  torch_matmul = TorchMatmul(args.matmul) if args.peft else None

  # Rounds: a matmul window, every implementation once (the order rotates), a matmul window.
  times = collections.defaultdict(list)
  for i in range(args.steps):
    before = _rate(matmul)
    names = list(steps)[i % len(steps):] + list(steps)[:i % len(steps)]
    for name in names:
      times[name].append(steps[name]())
    peak = (before + _rate(matmul)) / 2
    times['matmul'].append(peak)
    times['fraction'].append(model_flops / times['ours'][-1] / peak)
    if multi:
      times['fraction_one_device'].append(model_flops / times['ours_one_device'][-1] / peak)
    if args.peft:
      times['torch_matmul'].append(_rate(torch_matmul))
      times['speedup'].append(times['peft'][-1] / times['ours'][-1])
      if multi:
        times['speedup_one_device'].append(times['peft'][-1] / times['ours_one_device'][-1])
      times['speedup_glibc_default'].append(times['peft_glibc_default'][-1] / times['ours'][-1])
    print(f'round {i + 1}/{args.steps}: ' + ', '.join(f'{n} {times[n][-1]:.2f} s' for n in steps)
          + f'; matmul {peak / 1e9:.1f} GFLOP/s', flush=True)

  med = {k: statistics.median(v) for k, v in times.items()}
  ours_tps = tokens_per_step / med['ours']
  achieved = model_flops / med['ours']
  result = {'device': device.device_kind, 'backend': jax.default_backend(),
            'model': args.size, 'dtype': args.dtype, 'batch': args.batch, 'inputs': args.inputs,
            'targets': args.targets, 'prompt': args.prompt, 'rounds': args.steps,
            'model_gflop_per_step': model_flops / 1e9, 'ours_s_per_step': med['ours'],
            'ours_tokens_per_s': ours_tps, 'ours_gflop_per_s': achieved / 1e9,
            'matmul_gflop_per_s': med['matmul'] / 1e9,
            'fraction_of_matmul_peak': med['fraction']}
  print(f'model FLOPs per step (forward + activation gradients): {model_flops / 1e9:.0f} GFLOP')
  layout = f' (data parallel over {jax.device_count()} devices)' if jax.device_count() > 1 else ''
  print(f'ours{layout}: {med["ours"]:.2f} s/step, {ours_tps:.0f} tokens/s, '
        f'{achieved / 1e9:.1f} GFLOP/s')
  if multi:
    one = med['ours_one_device']
    result.update(ours_one_device_s_per_step=one,
                  ours_one_device_tokens_per_s=tokens_per_step / one,
                  fraction_of_matmul_peak_one_device=med['fraction_one_device'])
    print(f'ours (one device, multi-threaded ops): {one:.2f} s/step, '
          f'{tokens_per_step / one:.0f} tokens/s, {model_flops / one / 1e9:.1f} GFLOP/s, '
          f'{med["fraction_one_device"]:.1%} of the matmul peak'
          + (f', {med["speedup_one_device"]:.2f}x PEFT' if args.peft else ''))
  print(f'large {args.dtype} matmul (jax, n={args.matmul}, best of one device / all devices): '
        f'{med["matmul"] / 1e9:.1f} GFLOP/s'
        + (f'; torch fp32: {med["torch_matmul"] / 1e9:.1f} GFLOP/s' if torch_matmul else ''))
  speedup = float('nan')
  if args.peft:
    speedup = med['speedup']
    result.update(peft_s_per_step=med['peft'], peft_tokens_per_s=tokens_per_step / med['peft'],
                  peft_gflop_per_s=model_flops / med['peft'] / 1e9,
                  peft_glibc_default_s_per_step=med['peft_glibc_default'],
                  peft_glibc_default_tokens_per_s=tokens_per_step / med['peft_glibc_default'],
                  torch_matmul_gflop_per_s=med['torch_matmul'] / 1e9, speedup_vs_peft=speedup,
                  speedup_vs_peft_glibc_default=med['speedup_glibc_default'])
    print(f'peft (same process and allocator settings as ours): {med["peft"]:.2f} s/step, '
          f'{tokens_per_step / med["peft"]:.0f} tokens/s, '
          f'{model_flops / med["peft"] / 1e9:.1f} GFLOP/s')
    print(f'peft (glibc default allocator, as PEFT runs on its own): '
          f'{med["peft_glibc_default"]:.2f} s/step, '
          f'{tokens_per_step / med["peft_glibc_default"]:.0f} tokens/s')
    print(f'ours / peft tokens/s (median of per-round ratios): {speedup:.2f}x; vs PEFT with glibc '
          f'defaults: {med["speedup_glibc_default"]:.2f}x')
  print(f'ours / matmul peak (median of per-round ratios): {med["fraction"]:.1%}')
  if args.profile:
    _run_profile(args)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)
  print(f'speedup_vs_peft={speedup:.3f} fraction_of_matmul_peak={med["fraction"]:.3f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
