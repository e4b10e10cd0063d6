"""The 17 x 17 zero-shot transfer matrix on a tiny T5: batched prompts vs one evaluation per pair.

Three ways to fill the same matrix (17 source prompts x 17 target tasks, every target's
validation examples up to `--examples`):

* batched (ours): what `transfer.zero_shot.zero_shot_matrix` does, the `Evaluator` scoring all 17
  prompts of a target in one vmapped call per batch of examples;
* pairwise, one process: the same `Evaluator` called on one prompt at a time (289 evaluations,
  as training-time evaluation does).
  These two share one `Evaluator` (data read once) and are timed after both call shapes are
  compiled: `matrix_speedup_vs_pairwise` compares scoring time only.
  The matrix of `zero_shot_matrix` is checked to equal the batched one.
* one process per pair (the original code's workflow): a fresh Python process per pair imports,
  builds the model, reads the target's data, compiles and evaluates. Only `--process_pairs`
  pairs are run and the time is extrapolated to 289 (each pair's process does the same work);
  `matrix_speedup_vs_processes` compares it with ours end to end (setup + one compile +
  batched scoring).

Targets: the 7 synthetic tasks plus 10 more built from the same generators under other seeds
(registered by this script). The last line is machine-readable:
`matrix_speedup_vs_pairwise=<x> matrix_speedup_vs_processes=<y>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time

import numpy as np

N = 17
TINY = {'emb_dim': 32, 'num_heads': 2, 'head_dim': 16, 'mlp_dim': 64, 'dropout_rate': 0.0}
LENGTHS = {'inputs': 32, 'targets': 2}


def _args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--examples', type=int, default=200,
                 help='validation examples per target (200: all of a synthetic split)')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--prompt_length', type=int, default=20)
  p.add_argument('--process_pairs', type=int, default=3, help='pairs run as processes')
  p.add_argument('--child', nargs=2, metavar=('SOURCE', 'TARGET'), help=argparse.SUPPRESS)
  return p.parse_args(argv)


def targets() -> list[str]:
  """17 synthetic target tasks: the 7 registered ones and 10 reseeded copies."""
  from prompt_transfer_jax import tasks
  from prompt_transfer_jax.tasks import registry, synthetic
  names = list(synthetic.SYNTH_KEYS)
  for i in range(N - len(names)):
    base = synthetic.SYNTH_KEYS[i % len(synthetic.SYNTH_KEYS)]
    key = f'{base}_bench{i}'
    synthetic.SYNTH_SPECS[key] = dataclasses.replace(synthetic.SYNTH_SPECS[base], key=key)
    registry._register('synth', registry._synth_template(key), 'clean', synth=True)
    names.append(key)
  tasks.get_task_info(names[-1])
  return names


def model():
  from prompt_transfer_jax import tasks
  from prompt_transfer_jax.trainer import frozen_model
  return frozen_model.t5_model(preset='t5_demo',
                               config_overrides=dict(TINY, vocab_size=tasks.SYNTH_VOCAB_SIZE))


def prompts(length: int) -> np.ndarray:
  return np.random.default_rng(0).normal(size=(N, length, TINY['emb_dim'])).astype(np.float32)


def _evaluator(frozen, names, args):
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.trainer import evaluator as evaluator_lib
  mesh = partitioning.make_mesh()
  return evaluator_lib.Evaluator(frozen, names, LENGTHS, args.batch, mesh, frozen.shardings(mesh),
                                 max_examples=args.examples,
                                 options=evaluator_lib.EvalOptions())


def _params(frozen, ev):
  from prompt_transfer_jax.partitioning import place
  return place(frozen.params, frozen.shardings(ev.mesh))


def child(args) -> float:
  """One pair in this process: what the original's per-pair run does. Prints the score."""
  names = targets()
  frozen = model()
  ev = _evaluator(frozen, [args.child[1]], args)
  result = ev.evaluate(_params(frozen, ev), prompts(args.prompt_length)[int(args.child[0])])
  print(f"score={result['score']}")
  return result['score']


def main(argv=None) -> int:
  args = _args(argv)
  if args.child:
    child(args)
    return 0
  from prompt_transfer_jax.transfer import zero_shot
  names = targets()
  frozen = model()
  p = prompts(args.prompt_length)
  print(f'{N} x {N} matrix, tiny T5 ({TINY}), {args.examples} examples per target, batch '
        f'{args.batch}', flush=True)

  start = time.perf_counter()
  ev = _evaluator(frozen, names, args)          # reads every target's examples
  params = _params(frozen, ev)
  t_setup = time.perf_counter() - start
  start = time.perf_counter()
  for chunk in (p, p[:1]):                       # compile both prompt-chunk shapes
    ev.task_results(ev.tasks[0], params, chunk)
  t_compile = time.perf_counter() - start
  print(f'setup (data, params): {t_setup:.1f} s; compile (17-prompt and 1-prompt calls): '
        f'{t_compile:.1f} s', flush=True)

  start = time.perf_counter()
  batched = np.array([[r[t.info.metric] for r in ev.task_results(t, params, p)]
                      for t in ev.tasks])
  t_batched = time.perf_counter() - start
  print(f'batched (ours):           {t_batched:8.1f} s', flush=True)
  start = time.perf_counter()
  pairwise = np.array([[ev.task_results(t, params, p[j:j + 1])[0][t.info.metric]
                        for j in range(N)] for t in ev.tasks])
  t_pairwise = time.perf_counter() - start
  print(f'pairwise, one process:    {t_pairwise:8.1f} s  (same matrix: '
        f'{np.array_equal(pairwise, batched)})', flush=True)
  result = zero_shot.zero_shot_matrix(frozen, p, [f'p{i}' for i in range(N)], names, LENGTHS,
                                      batch_size=args.batch, prompt_chunk=N,
                                      max_examples=args.examples)
  assert np.array_equal(result.matrix, batched), 'zero_shot_matrix differs from the Evaluator'
  t_ours_total = t_setup + t_compile / 2 + t_batched

  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
      + os.environ.get('PYTHONPATH', '').split(os.pathsep)))
  times = []
  rng = np.random.default_rng(1)
  for _ in range(args.process_pairs):
    s, t = int(rng.integers(N)), int(rng.integers(N))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', str(s), names[t],
                           '--examples', str(args.examples), '--batch', str(args.batch),
                           '--prompt_length', str(args.prompt_length)],
                          capture_output=True, text=True, env=env)
    times.append(time.perf_counter() - start)
    if proc.returncode != 0:
      raise SystemExit(f'per-pair process failed: {proc.stderr[-2000:]}')
    score = float(proc.stdout.strip().splitlines()[-1].split('=')[1])
    assert abs(score - result.matrix[t, s]) < 1e-9, (score, result.matrix[t, s])
  t_processes = statistics.median(times) * N * N
  print(f'one process per pair:     {t_processes:8.1f} s  (median {statistics.median(times):.1f} s '
        f'per pair over {len(times)} pairs, x {N * N})', flush=True)
  print(f'ours end to end (setup + compile + batched): ~{t_ours_total:.1f} s')
  print(f'matrix_speedup_vs_pairwise={t_pairwise / t_batched:.2f} '
        f'matrix_speedup_vs_processes={t_processes / t_ours_total:.2f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
