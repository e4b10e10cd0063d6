"""`ptj train`, `ptj eval` and `ptj export`: absl flags + gin, in the T5X style.

    ptj train --gin_file=models/t5_1_1_base_prompt.gin --gin_file=runs/prompt_train.gin \
      --gin.MODEL_DIR="'/tmp/sst2'" --gin.MIXTURE_OR_TASK_NAME="'t5_sst2'" \
      --gin.INITIAL_CHECKPOINT_PATH="'/ckpt/t5_1_1_lm100k_base/checkpoint_1100000'"
    ptj eval --gin_file=models/t5_1_1_base_prompt.gin --gin_file=runs/prompt_eval.gin \
      --gin.PROMPT_FILE="'/tmp/sst2/best_prompt.npy'" --gin.MIXTURE_OR_TASK_NAME="'t5_sst2'" ...
    ptj export --prompt=/tmp/sst2 --format=peft --out=/tmp/sst2_peft

`--gin_file` repeats (later files override earlier ones; relative paths are looked up in
`--gin_search_paths`, then in the repository's `gin_configs/`), `--gin.NAME=VALUE` is short for
`--gin_bindings='NAME = VALUE'`. `--multiprocess` calls `jax.distributed.initialize()` (with
`--coordinator_address`, `--num_processes`, `--process_id` when given; none on Cloud TPU).
Every failure prints one line `ptj <command>: error: ...` and returns a non-zero exit code.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from typing import Callable, Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import flags  # noqa: E402

EXIT_ERROR, EXIT_USAGE = 1, 2


class UsageError(ValueError):
  pass


def _one_line(error: BaseException) -> str:
  text = re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", '', str(error))
  return ' '.join(text.split()) or type(error).__name__


def _gin_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_multi_string('gin_file', [], 'gin file(s), applied in order', flag_values=fv)
  flags.DEFINE_multi_string('gin_bindings', [], "gin bindings, e.g. 'BATCH_SIZE = 16'",
                            flag_values=fv)
  flags.DEFINE_list('gin_search_paths', [], 'directories searched for relative --gin_file paths',
                    flag_values=fv)
  flags.DEFINE_string('tfds_data_dir', None, 'TFDS data directory override', flag_values=fv)
  flags.DEFINE_bool('multiprocess', False, 'call jax.distributed.initialize()', flag_values=fv)
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0', flag_values=fv)
  flags.DEFINE_integer('num_processes', None, 'number of processes', flag_values=fv)
  flags.DEFINE_integer('process_id', None, 'index of this process', flag_values=fv)
  flags.DEFINE_bool('progress', True, 'show the live progress line', flag_values=fv)
  flags.DEFINE_enum('log_level', 'error', ['debug', 'info', 'warning', 'error'],
                    'absl / Python logging level', flag_values=fv)


def _parse(fv: flags.FlagValues, prog: str, argv: Sequence[str]) -> None:
  """absl parsing with T5X's `--gin.NAME=VALUE` shorthand; unknown flags are usage errors."""
  args = []
  for arg in argv:
    if arg.startswith('--gin.'):
      name, sep, value = arg[len('--gin.'):].partition('=')
      if not sep or not name:
        raise UsageError(f'malformed gin flag {arg!r}; use --gin.NAME=VALUE')
      arg = f'--gin_bindings={name} = {value}'
    args.append(arg)
  try:
    rest = fv([prog] + args)
  except flags.Error as e:
    raise UsageError(_one_line(e)) from None
  if len(rest) > 1:
    raise UsageError(f'unexpected arguments: {" ".join(rest[1:])}')


@contextlib.contextmanager
def _quiet_stderr():
  """Silences C++ start-up chatter (TensorFlow, XLA) written to fd 2 while heavy modules import."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def _setup(fv: flags.FlagValues) -> None:
  """Host memory settings, multi-host initialisation, imports (gin registration), gin parsing."""
  from prompt_transfer_jax.trainer import host_memory
  host_memory.keep_freed_memory()
  import jax
  from absl import logging as absl_logging
  absl_logging.set_verbosity(fv.log_level)
  logging.getLogger().setLevel(fv.log_level.upper())
  if fv.multiprocess:
    kwargs = {k: v for k, v in (('coordinator_address', fv.coordinator_address),
                                ('num_processes', fv.num_processes),
                                ('process_id', fv.process_id)) if v is not None}
    jax.distributed.initialize(**kwargs)
  with _quiet_stderr():
    import seqio
    from prompt_transfer_jax.trainer import runs
    runs.register_configurables()
  if fv.tfds_data_dir:
    seqio.set_tfds_data_dir_override(fv.tfds_data_dir)
  try:
    runs.parse_gin(fv.gin_file, fv.gin_bindings, fv.gin_search_paths)
  except FileNotFoundError:
    raise
  except Exception as e:  # noqa: BLE001  (gin raises SyntaxError, ValueError, TokenError, ...)
    raise UsageError(f'bad gin configuration: {_one_line(e)}') from None


def _run(prog: str, argv: Sequence[str], doc: str, define: Callable[[flags.FlagValues], None],
         body: Callable[[flags.FlagValues], Optional[int]]) -> int:
  fv = flags.FlagValues()
  define(fv)
  if any(a in ('-h', '--help', '--helpfull') for a in argv):
    print(f'usage: {prog} [flags]\n\n{doc.strip()}\n\nflags:')
    for name in sorted(fv):
      print(f'  --{name}: {fv[name].help}')
    return 0
  try:
    _parse(fv, prog, argv)
    return int(body(fv) or 0)
  except UsageError as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    return EXIT_USAGE
  except KeyboardInterrupt:
    print(f'{prog}: interrupted', file=sys.stderr)
    return 130
  except Exception as e:  # noqa: BLE001  (one line for the user; the traceback is noise here)
    print(f'{prog}: error: {_one_line(e)}', file=sys.stderr)
    return EXIT_ERROR
  finally:
    if 'gin' in sys.modules:  # bindings of this run must not leak into a later in-process call
      sys.modules['gin'].clear_config()


def _gin_call(fn):
  """Calls a gin configurable, turning gin's missing-value errors into one-line usage errors."""
  try:
    return fn()
  except TypeError as e:
    if 'No values supplied by Gin' in str(e) or 'Required bindings' in str(e):
      raise UsageError(f'missing gin setting: {_one_line(e)}') from None
    raise


def train_main(argv: Sequence[str]) -> int:
  """`ptj train`: prompt-tune a frozen model; resumes when MODEL_DIR holds a checkpoint."""

  def body(fv):
    if fv.dry_run:
      from prompt_transfer_jax.trainer import plan
      return plan.print_plan(fv)
    _setup(fv)
    import jax
    from prompt_transfer_jax.trainer import train
    summary = _gin_call(lambda: train.train(show_progress=fv.progress))
    if jax.process_index() == 0:
      print(json.dumps({k: summary[k] for k in ('model_dir', 'final_step', 'metric', 'best_step',
                                                'best_score')}))
    return 0

  def define(fv):
    _gin_flags(fv)
    flags.DEFINE_bool('dry_run', False, 'print the plan (memory and FLOPs per device, as `ptj '
                      'plan` on the local devices) instead of training', flag_values=fv)

  return _run('ptj train', argv, train_main.__doc__, define, body)


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

  return _run('ptj eval', argv, eval_main.__doc__, _gin_flags, body)


def _export_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('prompt', None, 'a prompt .npy file, or a MODEL_DIR (its best_prompt.npy)',
                      flag_values=fv)
  flags.DEFINE_enum('format', 'peft', ['peft', 'numpy'], 'peft: PEFT adapter directory; numpy: '
                    'prompt-tuning encoder.prompt.prompt.prompt', flag_values=fv)
  flags.DEFINE_string('out', None, 'output directory', flag_values=fv)
  flags.DEFINE_string('base_model_name_or_path', None, 'PEFT: the base model it applies to',
                      flag_values=fv)
  flags.DEFINE_string('task_type', 'SEQ_2_SEQ_LM', 'PEFT task_type', flag_values=fv)
  flags.DEFINE_integer('num_layers', None, 'PEFT: number of layers of the base model (metadata)',
                       flag_values=fv)
  flags.DEFINE_integer('num_attention_heads', None, 'PEFT: attention heads (metadata)',
                       flag_values=fv)


def export_main(argv: Sequence[str]) -> int:
  """`ptj export`: write a prompt as a PEFT adapter directory or a prompt-tuning numpy file."""

  def body(fv):
    from prompt_transfer_jax.models import prompt as prompt_lib
    from prompt_transfer_jax.trainer import export, run_record
    if not fv.prompt or not fv.out:
      raise UsageError('--prompt and --out are required')
    path = fv.prompt
    if os.path.isdir(path):
      path = os.path.join(path, run_record.BEST_PROMPT_FILE)
    prompt = prompt_lib.load_prompt(path)
    if fv.format == 'peft':
      out = export.export_peft(prompt, fv.out, fv.task_type, fv.base_model_name_or_path,
                               fv.num_layers, fv.num_attention_heads)
    else:
      out = export.export_numpy(prompt, fv.out)
    print(out)
    return 0

  return _run('ptj export', argv, export_main.__doc__, _export_flags, body)
