"""Gin-configured runs as Python calls: parse gin files and bindings, call, always clear gin.

The package's own callers (demo, study, bank, projector, tests) use these rather than building
`ptj train` command lines: a run returns its summary dict, and no gin state leaks into the next
call.

    summary = runs.train_run(['models/t5_synth_prompt.gin', 'runs/prompt_train.gin'],
                             ["MODEL_DIR = '/tmp/run'", "MIXTURE_OR_TASK_NAME = 'synth_sentiment_a'"])
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, Callable, Sequence

import gin

from prompt_transfer_jax import command
from prompt_transfer_jax.trainer import gin_checks

GIN_CONFIGS = pathlib.Path(__file__).resolve().parents[2] / 'gin_configs'
_CONSTANTS: dict = {}


def register_configurables() -> None:
  """Imports every module that registers gin configurables, and the constants gin files name
  (`%ptj.SYNTH_VOCAB_SIZE`)."""
  import prompt_transfer_jax.tasks  # noqa: F401  (registers tasks; TensorFlow)
  from prompt_transfer_jax.trainer import evaluator, frozen_model, prompt_init, step, train  # noqa: F401
  from prompt_transfer_jax.tasks import SYNTH_VOCAB_SIZE
  if not _CONSTANTS:
    _CONSTANTS['ptj.SYNTH_VOCAB_SIZE'] = SYNTH_VOCAB_SIZE
    for name, value in _CONSTANTS.items():
      gin.constant(name, value)


def search_paths(extra: Sequence[str] = ()) -> list[str]:
  """Where relative gin file names are looked up: `extra`, the repository's gin_configs/, cwd."""
  return [os.path.abspath(p) for p in extra] + [str(GIN_CONFIGS), os.getcwd()]


def find_gin_file(path: str, search: Sequence[str]) -> str:
  candidates = [path] if os.path.isabs(path) else [os.path.join(d, path) for d in search]
  for candidate in candidates:
    if os.path.isfile(candidate):
      return candidate
  raise FileNotFoundError(f'gin file not found: {path} (searched {", ".join(search)})')


_ADDED: set[str] = set()


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str] = (),
              extra_search_paths: Sequence[str] = ()) -> None:
  """Clears gin, then parses `gin_files` (in order) and `bindings` ('NAME = VALUE' strings),
  imports MIXTURE_OR_TASK_MODULE and refuses misspelled macros (`gin_checks`)."""
  register_configurables()
  gin.clear_config()
  search = search_paths(extra_search_paths)
  for path in search:
    if path not in _ADDED:
      gin.add_config_file_search_path(path)
      _ADDED.add(path)
  files = [find_gin_file(path, search) for path in gin_files]
  logging.disable(logging.CRITICAL)  # gin logs every search-path miss of an `include`
  try:
    gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False)
  finally:
    logging.disable(logging.NOTSET)
  from prompt_transfer_jax.tasks.prepare import import_task_modules  # tasks: imported above
  import_task_modules(gin_checks.task_modules())
  gin_checks.check_macros(bindings)


def setup_flags(fv) -> None:
  """What every gin-configured command does first, from its `command.gin_flags`: host memory
  settings, logging, multi-host initialisation, gin registration and parsing."""
  from prompt_transfer_jax.trainer import host_memory, progress
  host_memory.keep_freed_memory()
  progress.mark_phase()
  import jax
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
    register_configurables()
    from prompt_transfer_jax.tasks import prepare
    prepare.import_task_modules(fv.module)
  if fv.tfds_data_dir:
    seqio.set_tfds_data_dir_override(fv.tfds_data_dir)
  try:
    parse_gin(fv.gin_file, fv.gin_bindings, fv.gin_search_paths)
  except Exception as e:  # noqa: BLE001  (gin raises SyntaxError, ValueError, TokenError, ...)
    raise command.UsageError(f'bad gin configuration: {command.one_line(e)}') from None
  progress.phase('config', f'{len(fv.gin_file)} gin file(s), {len(fv.gin_bindings)} binding(s)',
                 fv.progress)


def gin_call(fn):
  """Calls a gin configurable, turning gin's missing-value errors into one-line usage errors."""
  try:
    return fn()
  except TypeError as e:
    if 'No values supplied by Gin' in str(e) or 'Required bindings' in str(e):
      raise command.UsageError(f'missing gin setting: {command.one_line(e)}') from None
    raise


def run_gin(fn: Callable[[], Any], gin_files: Sequence[str], bindings: Sequence[str] = (),
            extra_search_paths: Sequence[str] = ()) -> Any:
  """Parses the gin configuration, returns `fn()`, and clears gin whatever happens."""
  try:
    parse_gin(gin_files, bindings, extra_search_paths)
    return fn()
  finally:
    gin.clear_config()


def train_run(gin_files: Sequence[str], bindings: Sequence[str] = (),
              show_progress: bool = False) -> dict:
  """`ptj train` as a call: returns the run summary (model_dir, final_step, best_step, ...)."""
  from prompt_transfer_jax.trainer import train
  return run_gin(lambda: train.train(show_progress=show_progress), gin_files, bindings)


def eval_run(gin_files: Sequence[str], bindings: Sequence[str] = ()) -> dict:
  """`ptj eval` as a call: returns `{'score', 'metric', 'tasks', ...}`."""
  from prompt_transfer_jax.trainer import evaluator
  return run_gin(evaluator.evaluate, gin_files, bindings)
