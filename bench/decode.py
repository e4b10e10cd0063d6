"""Cached (incremental) greedy decoding vs re-running the decoder over every position per step.

Both decode the same random-weight T5 (default: T5 1.1 small shapes, batch 32, inputs 256,
P = 100 prompt, 128 new tokens) with EOS forbidden for the whole length (`min_length`), so that
both run every step. The cached decoder (`T5Backbone.greedy_decode`) projects the encoder output
once and runs one position per step against the key/value cache; the reference
(`T5Backbone.greedy_decode_uncached`, the evaluator's decoder before the cache) re-runs the
whole decoder over all positions at every step. Each is jitted, warmed up once, then timed
(median of `--repeats`). The last line is machine-readable:
`decode_speedup=<x> identical=<True|False>`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import numpy as np

from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models.t5_backbone import T5Backbone
from prompt_transfer_jax.trainer.frozen_model import random_t5_params


def _args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--size', default='t5_1_1_small', help='T5 preset (config.T5_PRESETS)')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--inputs', type=int, default=256)
  p.add_argument('--prompt_length', type=int, default=100)
  p.add_argument('--new_tokens', type=int, default=128)
  p.add_argument('--repeats', type=int, default=3)
  return p.parse_args(argv)


def _time(fn, repeats: int):
  out = jax.block_until_ready(fn())                       # compile + warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times), np.asarray(out)


def main(argv=None) -> int:
  args = _args(argv)
  config = t5_preset(args.size)
  backbone = T5Backbone(config)
  params = jax.device_put(random_t5_params(config, seed=0))
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, config.vocab_size, (args.batch, args.inputs)).astype(np.int32)
  tokens[:, -args.inputs // 4:] = 0                       # some padding
  prompt = (0.5 * rng.standard_normal((args.prompt_length, config.emb_dim))).astype(np.float32)
  n = args.new_tokens
  cached = jax.jit(lambda p, q, t: backbone.greedy_decode(p, q, t, n, 1, n))
  full = jax.jit(lambda p, q, t: backbone.greedy_decode_uncached(p, q, t, n, 1, n))
  print(f'{args.size}: batch {args.batch}, inputs {args.inputs}, prompt {args.prompt_length}, '
        f'{n} new tokens, {jax.devices()[0].platform}', flush=True)
  t_cached, out_cached = _time(lambda: cached(params, prompt, tokens), args.repeats)
  print(f'cached:         {t_cached:8.3f} s  ({args.batch * n / t_cached:9.1f} tokens/s)', flush=True)
  t_full, out_full = _time(lambda: full(params, prompt, tokens), args.repeats)
  print(f'full recompute: {t_full:8.3f} s  ({args.batch * n / t_full:9.1f} tokens/s)', flush=True)
  identical = bool(np.array_equal(out_cached, out_full))
  print(f'decode_speedup={t_full / t_cached:.2f} identical={identical}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
