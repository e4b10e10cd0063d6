"""`ptj data prepare --tasks=t5_sst2,glue_mixture --data_dir=DIR`: download and prepare datasets.

    ptj data prepare --tasks=t5_sst2,t5_mnli --tfds_data_dir=~/tensorflow_datasets
    ptj data prepare --tasks=laptop,ethics_justice --data_dir=data   # checks the local files

Prints one line per task key (ready / prepared / missing / failed); exits 1 if any is missing
or failed, so a script can stop before training. `--module` imports the user's own SeqIO task
modules first (their tasks can then be named).
"""
from __future__ import annotations

from typing import Sequence

from absl import flags

from prompt_transfer_jax import command


def _flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_list('tasks', [], 'task names, task keys or mixtures', flag_values=fv)
  flags.DEFINE_string('data_dir', None, 'local data dir (else $PTJ_DATA_DIR, default ./data)',
                      flag_values=fv)
  flags.DEFINE_string('tfds_data_dir', None, 'TFDS data dir (else TFDS default)', flag_values=fv)
  flags.DEFINE_bool('hf_fallback', True, 'read absent local files from the Hugging Face hub '
                    '(needs `datasets`)', flag_values=fv)
  flags.DEFINE_multi_string('module', [], 'a SeqIO task module to import (name or .py path)',
                            flag_values=fv)


def _prepare(fv) -> int:
  if not fv.tasks:
    raise command.UsageError('--tasks is required (comma-separated task names, keys or mixtures)')
  from prompt_transfer_jax import tasks  # noqa: F401  (registers the tasks)
  from prompt_transfer_jax.tasks import prepare
  prepare.import_task_modules(fv.module)
  keys = prepare.task_keys(fv.tasks)
  results = prepare.prepare(keys, fv.data_dir, fv.tfds_data_dir, fv.hf_fallback)
  for result in results:
    print(result.line())
  return 0 if all(r.status in ('ready', 'prepared') for r in results) else 1


def main(argv: Sequence[str]) -> int:
  """`ptj data prepare`: download / check the data of tasks before training."""
  return command.run_group('ptj data', argv, __doc__, [
      command.Command('prepare', 'download / prepare TFDS data, check local files', _flags,
                      _prepare)])
