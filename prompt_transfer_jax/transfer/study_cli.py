"""`ptj study --gin_file=studies/NAME.gin [--gin.X=...]`: the paper's cross-task study, resumable.

    ptj study --gin_file=studies/synth.gin --gin.STUDY_DIR="'study_out'"
    ptj study --gin_file=studies/roberta_large_paper.gin --gin.STUDY_DIR="'gs://b/study'" \
      --gin.INITIAL_CHECKPOINT_PATH="'/ckpt/roberta-large'" --multiprocess

Every stage whose artifact exists is skipped: run the same command again after an interruption.
On a pod, run it on every host (process 0 writes). See `transfer/study.py` for the stages.
"""
from __future__ import annotations

from typing import Sequence

from prompt_transfer_jax import command
from prompt_transfer_jax.command import UsageError
from prompt_transfer_jax.trainer import runs


def main(argv: Sequence[str]) -> int:
  """`ptj study`: PT per task, zero-shot matrix, TPT, activations, indicators, tables."""

  def body(fv):
    runs.setup_flags(fv)
    import gin
    import jax
    from prompt_transfer_jax.transfer import study
    try:
      config = runs.gin_call(study.study)
    except ValueError as e:   # a study config that cannot be built is bad input
      raise UsageError(str(e)) from None
    gin.clear_config()   # every run parses its own recipe
    results = study.run(config)
    if jax.process_index() == 0:
      for name, record in results.items():
        print(f'\n== {name} ==\n{study.summary(record)}')
        print(f'tables: {config.out_dir}/{name}/tables/README.md, report: '
              f'{config.out_dir}/{name}/report/report.md')
      print(f'\nsummary of every backbone: {config.out_dir}/summary.md')
    return 0

  return command.run('ptj study', argv, __doc__, command.gin_flags, body)
