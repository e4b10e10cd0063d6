"""`ptj study --gin_file=studies/NAME.gin [--gin.X=...]`: the paper's study, resumable.

    ptj study --gin_file=studies/synth.gin --gin.STUDY_DIR="'study_out'"
    ptj study --gin_file=studies/roberta_large_paper.gin --gin.STUDY_DIR="'gs://b/study'" \
      --gin.INITIAL_CHECKPOINT_PATH="'/ckpt/roberta-large'" --multiprocess

Every stage whose artifact exists is skipped: run the same command again after an interruption.
On a pod, run it on every host (process 0 writes). See `study/stages.py` for the stages.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

from absl import flags

from prompt_transfer_jax import command
from prompt_transfer_jax.command import UsageError
from prompt_transfer_jax.trainer import runs

DEMO_GIN = 'studies/synth.gin'
JAX_CACHE = '.jax_cache'


def _compilation_cache(out_dir: str) -> None:
  """Compiled steps persist in `OUT/.jax_cache` (unless JAX_COMPILATION_CACHE_DIR says where):
  every run of a study re-jits the same shapes, and a resumed study compiles nothing again."""
  import jax
  if jax.config.jax_compilation_cache_dir or '://' in out_dir:
    return
  jax.config.update('jax_compilation_cache_dir', os.path.join(out_dir, JAX_CACHE))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def _study(fv) -> int:
  start = time.perf_counter()
  runs.setup_flags(fv)
  import gin
  import jax
  from prompt_transfer_jax.trainer.progress import format_seconds
  from prompt_transfer_jax.study import stages as study
  try:
    config = runs.gin_call(study.study)
  except ValueError as e:   # a study config that cannot be built is bad input
    raise UsageError(str(e)) from None
  gin.clear_config()   # every run parses its own recipe
  _compilation_cache(config.out_dir)
  results = study.run(config)
  if jax.process_index() == 0:
    for title, text, where in study.summaries(config, results):
      print(f'\n== {title} ==\n{text}\n' + ', '.join(
          f'{what}: {os.path.join(config.out_dir, path)}' for what, path in where.items()))
    print(f'\nsummary of every stage: {config.out_dir}/summary.md (done in '
          f'{format_seconds(time.perf_counter() - start)})')
  return 0


def main(argv: Sequence[str]) -> int:
  """`ptj study`: PT per task, zero-shot matrix, TPT, activations, indicators, tables, and the
  cross-model stages."""
  return command.run('ptj study', argv, __doc__, command.gin_flags, _study)


def _demo_flags(fv: flags.FlagValues) -> None:
  command.gin_flags(fv)
  flags.DEFINE_string('out', 'demo_out', 'output directory of the study', flag_values=fv)


def demo_main(argv: Sequence[str]) -> int:
  """`ptj demo [--out=DIR]`: the synthetic study of `make demo` (`ptj study` with
  `studies/synth.gin`: a tiny T5 and a tiny RoBERTa, a few minutes on a CPU); further
  `--gin_file` / `--gin.X=...` flags apply after that file."""

  def body(fv):
    fv.gin_file = [DEMO_GIN] + list(fv.gin_file)
    fv.gin_bindings = [f'STUDY_DIR = {os.path.abspath(fv.out)!r}'] + list(fv.gin_bindings)
    return _study(fv)

  return command.run('ptj demo', argv, demo_main.__doc__, _demo_flags, body)
