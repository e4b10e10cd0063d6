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
from typing import Sequence

from absl import flags

from prompt_transfer_jax import command
from prompt_transfer_jax.command import UsageError
from prompt_transfer_jax.trainer import runs


def _train_flags(fv: flags.FlagValues) -> None:
  command.gin_flags(fv)
  flags.DEFINE_bool('force_resume', False, 'continue the run in MODEL_DIR even though its task, '
                    'model, prompt length or batch size changed (ptj.train.force_resume)',
                    flag_values=fv)
  flags.DEFINE_bool('dry_run', False, 'print the plan (memory and FLOPs per device, as `ptj '
                    'plan` on the local devices) instead of training', flag_values=fv)


def train_main(argv: Sequence[str]) -> int:
  """`ptj train`: prompt-tune a frozen model; resumes when MODEL_DIR holds a checkpoint."""

  def body(fv):
    if fv.dry_run:
      from prompt_transfer_jax.trainer import plan
      return plan.print_plan(fv)
    runs.setup_flags(fv)
    import jax
    from prompt_transfer_jax.trainer import run_lock
    from prompt_transfer_jax.trainer import train
    kwargs = {'show_progress': fv.progress}
    if fv.force_resume:
      kwargs['force_resume'] = True      # else ptj.train.force_resume from gin applies
    try:
      summary = runs.gin_call(lambda: train.train(**kwargs))
    except run_lock.LockedError as e:
      raise UsageError(str(e)) from None
    if jax.process_index() == 0:
      print(json.dumps({k: summary[k] for k in ('model_dir', 'final_step', 'metric', 'best_step',
                                                'best_score')}))
    return 0

  return command.run('ptj train', argv, train_main.__doc__, _train_flags, body)


def eval_main(argv: Sequence[str]) -> int:
  """`ptj eval`: evaluate a prompt file on a task (or mixture) with its metric; prints JSON.

  --gin.EVAL_OUTPUT_FILE="'eval.json'" also writes the result; --gin.EVAL_PREDICTIONS_DIR="'DIR'"
  writes DIR/<task>.jsonl per task, one row per example: input, target, prediction, gold
  (classification: the chosen label and every label word's score; generation: the decoded and
  the postprocessed text).
  """

  def body(fv):
    runs.setup_flags(fv)
    import jax
    from prompt_transfer_jax.trainer import evaluator
    result = runs.gin_call(evaluator.evaluate)
    if jax.process_index() == 0:
      print(json.dumps(result))
    return 0

  return command.run('ptj eval', argv, eval_main.__doc__, command.gin_flags, body)


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
