"""`ptj train`, `ptj eval` and `ptj export`: absl flags + gin, in the T5X style.

    ptj train --gin_file=models/t5_1_1_base_prompt.gin --gin_file=runs/prompt_train.gin \
      --gin.MODEL_DIR="'/tmp/sst2'" --gin.MIXTURE_OR_TASK_NAME="'t5_sst2'" \
      --gin.INITIAL_CHECKPOINT_PATH="'/ckpt/t5_1_1_lm100k_base/checkpoint_1100000'"
    ptj eval --gin_file=models/t5_1_1_base_prompt.gin --gin_file=runs/prompt_eval.gin \
      --gin.PROMPT_FILE="'/tmp/sst2/best_prompt.npy'" --gin.MIXTURE_OR_TASK_NAME="'t5_sst2'" ...
    ptj export --prompt=/tmp/sst2 --format=peft --out=/tmp/sst2_peft

`--gin_file` repeats (later files override earlier ones; relative paths are looked up in
`--gin_search_paths`, then in the repository's `gin_configs/`), `--gin.NAME=VALUE` is short for
`--gin_bindings='NAME = VALUE'`. `--module` (repeated) imports the user's own SeqIO task modules
(a module name or a .py file), like T5X's MIXTURE_OR_TASK_MODULE. `ptj train --force_resume`
continues a MODEL_DIR although its task, model, prompt length or batch size changed.
`--multiprocess` calls `jax.distributed.initialize()` (with
`--coordinator_address`, `--num_processes`, `--process_id` when given; none on Cloud TPU).
Errors and exit codes follow `prompt_transfer_jax.command` (2 bad input, 1 failure).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Sequence

from absl import flags

from prompt_transfer_jax import command
from prompt_transfer_jax.command import UsageError


def _setup(fv: flags.FlagValues) -> None:
  """Host memory settings, logging, multi-host initialisation, gin registration and parsing."""
  from prompt_transfer_jax.trainer import host_memory
  host_memory.keep_freed_memory()
  import jax
  from prompt_transfer_jax.trainer import progress
  progress.mark_phase()
  from absl import logging as absl_logging
  absl_logging.set_verbosity(fv.log_level)
  logging.getLogger().setLevel(fv.log_level.upper())
  if fv.multiprocess:
    kwargs = {k: v for k, v in (('coordinator_address', fv.coordinator_address),
                                ('num_processes', fv.num_processes),
                                ('process_id', fv.process_id)) if v is not None}
    jax.distributed.initialize(**kwargs)
  with command.quiet_stderr():
    import seqio
    from prompt_transfer_jax.trainer import runs
    runs.register_configurables()
    from prompt_transfer_jax.tasks import prepare
    prepare.import_task_modules(fv.module)
  if fv.tfds_data_dir:
    seqio.set_tfds_data_dir_override(fv.tfds_data_dir)
  try:
    runs.parse_gin(fv.gin_file, fv.gin_bindings, fv.gin_search_paths)
  except FileNotFoundError:
    raise
  except Exception as e:  # noqa: BLE001  (gin raises SyntaxError, ValueError, TokenError, ...)
    raise UsageError(f'bad gin configuration: {command.one_line(e)}') from None
  progress.phase('config', f'{len(fv.gin_file)} gin file(s), {len(fv.gin_bindings)} binding(s)',
                 fv.progress)


def _run_flags(fv: flags.FlagValues) -> None:
  """The gin-run flags of `ptj train` / `ptj eval`, and `--module`."""
  command.gin_flags(fv)
  flags.DEFINE_multi_string('module', [], "the user's SeqIO task module(s) to import (a module "
                            'name or a .py file); same as MIXTURE_OR_TASK_MODULE', flag_values=fv)


def _train_flags(fv: flags.FlagValues) -> None:
  _run_flags(fv)
  flags.DEFINE_bool('force_resume', False, 'continue the run in MODEL_DIR even though its task, '
                    'model, prompt length or batch size changed (ptj.train.force_resume)',
                    flag_values=fv)


def _gin_call(fn):
  """Calls a gin configurable, turning gin's missing-value errors into one-line usage errors."""
  try:
    return fn()
  except TypeError as e:
    if 'No values supplied by Gin' in str(e) or 'Required bindings' in str(e):
      raise UsageError(f'missing gin setting: {command.one_line(e)}') from None
    raise


def train_main(argv: Sequence[str]) -> int:
  """`ptj train`: prompt-tune a frozen model; resumes when MODEL_DIR holds a checkpoint."""

  def body(fv):
    _setup(fv)
    import jax
    from prompt_transfer_jax.trainer import run_lock
    from prompt_transfer_jax.trainer import train
    kwargs = {'show_progress': fv.progress}
    if fv.force_resume:
      kwargs['force_resume'] = True      # else ptj.train.force_resume from gin applies
    try:
      summary = _gin_call(lambda: train.train(**kwargs))
    except run_lock.LockedError as e:
      raise UsageError(str(e)) from None
    if jax.process_index() == 0:
      print(json.dumps({k: summary[k] for k in ('model_dir', 'final_step', 'metric', 'best_step',
                                                'best_score')}))
    return 0

  return command.run('ptj train', argv, train_main.__doc__, _train_flags, body)


def eval_main(argv: Sequence[str]) -> int:
  """`ptj eval`: evaluate a prompt file on a task (or mixture) with its metric; prints JSON."""

  def body(fv):
    _setup(fv)
    import jax
    from prompt_transfer_jax.trainer import evaluator
    result = _gin_call(evaluator.evaluate)
    if jax.process_index() == 0:
      print(json.dumps(result))
    return 0

  return command.run('ptj eval', argv, eval_main.__doc__, _run_flags, body)


def _export_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('prompt', None, 'a prompt .npy file, a MODEL_DIR (its best_prompt.npy) or '
                      'a PEFT adapter directory',
                      flag_values=fv)
  flags.DEFINE_enum('format', 'peft', ['peft', 'numpy'], 'peft: PEFT adapter directory; numpy: '
                    'prompt-tuning encoder.prompt.prompt.prompt', flag_values=fv)
  flags.DEFINE_string('out', None, 'output directory: new, empty, or a previous export',
                      flag_values=fv)
  flags.DEFINE_string('base_model_name_or_path', None, 'PEFT: the base model it applies to',
                      flag_values=fv)
  flags.DEFINE_string('task_type', 'SEQ_2_SEQ_LM', 'PEFT task_type', flag_values=fv)
  flags.DEFINE_integer('num_layers', None, 'PEFT: number of layers of the base model (metadata)',
                       flag_values=fv)
  flags.DEFINE_integer('num_attention_heads', None, 'PEFT: attention heads (metadata)',
                       flag_values=fv)
  command.require(fv, 'prompt', 'out')


def export_main(argv: Sequence[str]) -> int:
  """`ptj export`: write a prompt as a PEFT adapter directory or a prompt-tuning numpy file."""

  def body(fv):
    from prompt_transfer_jax.trainer import export
    export.check_out_dir(fv.out)
    prompt = export.import_prompt(fv.prompt)
    if fv.format == 'peft':
      out = export.export_peft(prompt, fv.out, fv.task_type, fv.base_model_name_or_path,
                               fv.num_layers, fv.num_attention_heads)
    else:
      out = export.export_numpy(prompt, fv.out)
    print(out)
    return 0

  return command.run('ptj export', argv, export_main.__doc__, _export_flags, body)
