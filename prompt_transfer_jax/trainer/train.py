"""The prompt-tuning loop: data -> jitted step -> periodic evaluation, checkpoints and records.

`train(...)` (gin: `ptj.train`) tunes a prompt on a frozen model. Everything is checked (task,
checkpoint, prompt file, evaluation data) before MODEL_DIR is touched. A MODEL_DIR that already
holds a checkpoint is resumed: prompt, optimizer state, RNG, data position (batches consumed),
best prompt and elapsed time all come back, so an interrupted run ends bit-identical to an
uninterrupted one. A non-finite loss stops the run with an error before anything is saved from
the bad step.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.trainer import checkpointing
from prompt_transfer_jax.trainer import data as data_lib
from prompt_transfer_jax.trainer import evaluator as evaluator_lib
from prompt_transfer_jax.trainer import progress as progress_lib
from prompt_transfer_jax.trainer.gin_utils import require
from prompt_transfer_jax.trainer.placement import host, place
from prompt_transfer_jax.trainer import prompt_init as prompt_init_lib
from prompt_transfer_jax.trainer import run_record
from prompt_transfer_jax.trainer import step as step_lib

CONFIG_FILE = 'config.gin'


def _check_positive(**values):
  for name, value in values.items():
    if value is None or int(value) < 1:
      raise ValueError(f'{name} must be a positive integer, got {value!r}')


def _check_lengths(lengths: Mapping[str, int]) -> dict:
  if not isinstance(lengths, Mapping) or set(lengths) != {'inputs', 'targets'}:
    raise ValueError("TASK_FEATURE_LENGTHS must be a dict with keys 'inputs' and 'targets', got "
                     f'{lengths!r}')
  _check_positive(**{f"TASK_FEATURE_LENGTHS['{k}']": v for k, v in lengths.items()})
  return {k: int(v) for k, v in lengths.items()}


def _has_dropout(config) -> bool:
  return any(getattr(config, name, 0.0) > 0 for name in
             ('dropout_rate', 'hidden_dropout_prob', 'attention_probs_dropout_prob'))


class NonFiniteLossError(FloatingPointError):
  pass


@gin.configurable(module='ptj')
def train(model_dir: str = gin.REQUIRED, model=gin.REQUIRED,
          mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          batch_size: int = 32, train_steps: int = 30000, eval_period: int = 1000,
          checkpoint_period: Optional[int] = None, prompt_length: int = 100,
          prompt_init: Optional[Callable] = None,
          optimizer=None, seed: int = 0, prompt_seed: int = 0, z_loss: float = 1e-4,
          label_smoothing: float = 0.0, loss_normalization: str = 'sum',
          eval_tasks: Optional[Sequence[str]] = None, eval_split: str = 'validation',
          eval_batch_size: Optional[int] = None, max_eval_examples: Optional[int] = None,
          eval_at_start: bool = True, keep_checkpoints: int = 1, log_period: int = 100,
          model_parallel: int = 1, shuffle: bool = True, show_progress: bool = True) -> dict:
  """Prompt-tunes `model` (a `FrozenModel`) on a task or mixture; returns the run summary.

  Evaluates every `eval_period` steps (and at step 0 and the last step) on `eval_tasks`
  (default: the task, or every task of the mixture), saves a checkpoint every
  `checkpoint_period` steps (default: `eval_period`) and at the end. The operative gin config is
  written to MODEL_DIR/config.gin.
  """
  require(MODEL_DIR=model_dir, MODEL=model, MIXTURE_OR_TASK_NAME=mixture_or_task_name,
          TASK_FEATURE_LENGTHS=task_feature_lengths)
  config_str = gin.operative_config_str()
  _check_positive(BATCH_SIZE=batch_size, TRAIN_STEPS=train_steps, EVAL_PERIOD=eval_period,
                  PROMPT_LENGTH=prompt_length, log_period=log_period)
  checkpoint_period = eval_period if checkpoint_period is None else checkpoint_period
  _check_positive(checkpoint_period=checkpoint_period)
  lengths = _check_lengths(task_feature_lengths)
  loss_cfg = step_lib.LossConfig(z_loss, label_smoothing, loss_normalization)
  tx = step_lib.make_optimizer() if optimizer is None else optimizer
  prompt_init = prompt_init or prompt_init_lib.uniform_init()
  train_task_names = data_lib.task_names_of(mixture_or_task_name)
  eval_task_names = list(eval_tasks or train_task_names)
  data_lib.local_batch_size(batch_size, jax.process_count())

  mesh = partitioning.make_mesh(model_parallel)
  replicated = NamedSharding(mesh, PartitionSpec())
  batch_sharding = partitioning.data_sharding(mesh)
  data_lib.check_batch_size(batch_size, mesh)
  param_shardings = model.shardings(mesh)
  params = place(model.params, param_shardings)
  label_targets = _train_label_targets(model, train_task_names)
  backbone = model.for_task(label_targets)

  prompt0 = np.asarray(prompt_init(model, train_task_names, prompt_length, prompt_seed), np.float32)
  if prompt0.shape != (prompt_length, model.embed_dim):
    raise ValueError(f'prompt initializer gave shape {prompt0.shape}, expected '
                     f'({prompt_length}, {model.embed_dim})')
  state = step_lib.init_state(prompt0, tx, seed)
  state = place(state, step_lib.state_shardings(state, mesh))
  evaluator = evaluator_lib.Evaluator(model, eval_task_names, lengths,
                                      eval_batch_size or batch_size, mesh, param_shardings,
                                      split=eval_split, max_examples=max_eval_examples)
  step_fn = step_lib.jit_train_step(
      step_lib.make_train_step(backbone, tx, loss_cfg, dropout=_has_dropout(model.config)),
      state, mesh, param_shardings, batch_sharding)

  created = not os.path.exists(model_dir)
  ckpt = None
  try:
    if jax.process_index() == 0:
      os.makedirs(model_dir, exist_ok=True)
      if config_str:
        _write_text(os.path.join(model_dir, CONFIG_FILE), config_str)
    ckpt = checkpointing.Checkpointer(model_dir, keep=keep_checkpoints)
    settings = _Schedule(
        task_name=mixture_or_task_name, lengths=lengths, batch_size=batch_size,
        train_steps=train_steps, eval_period=eval_period, checkpoint_period=checkpoint_period,
        log_period=log_period, seed=seed, shuffle=shuffle, pad_id=model.pad_id,
        label_ids=None if label_targets is None else label_targets[:, 0],
        eval_at_start=eval_at_start, show_progress=show_progress)
    return _loop(model_dir, ckpt, state, params, step_fn, evaluator, settings, replicated,
                 batch_sharding)
  except BaseException:
    if ckpt is not None:
      ckpt.wait()
    if created and (ckpt is None or ckpt.latest_step() is None) and jax.process_index() == 0:
      shutil.rmtree(model_dir, ignore_errors=True)
    raise
  finally:
    if ckpt is not None:
      ckpt.close()


def _train_label_targets(model, task_names) -> Optional[np.ndarray]:
  """The label targets the training loss needs (RoBERTa: one verbalizer for the whole mixture)."""
  if not model.needs_label_words:
    return None
  from prompt_transfer_jax import tasks
  targets = [tasks.label_targets(n) for n in task_names]
  if any(not np.array_equal(t[:, :1], targets[0][:, :1]) for t in targets):
    raise ValueError(f'the tasks {list(task_names)} use different label words; a RoBERTa prompt '
                     'trains on one verbalizer')
  return targets[0]


def _write_text(path: str, text: str) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class _Schedule:
  """The static settings of the training loop."""
  task_name: str
  lengths: Mapping[str, int]
  batch_size: int
  train_steps: int
  eval_period: int
  checkpoint_period: int
  log_period: int
  seed: int
  shuffle: bool
  pad_id: int
  label_ids: Optional[np.ndarray]
  eval_at_start: bool
  show_progress: bool


def _loop(model_dir: str, ckpt: checkpointing.Checkpointer, state, params, step_fn,
          evaluator: evaluator_lib.Evaluator, settings: _Schedule, replicated,
          batch_sharding) -> dict:
  """Resume, then train / evaluate / checkpoint to `settings.train_steps`; the run summary."""
  batch_size, train_steps = settings.batch_size, settings.train_steps
  eval_period, checkpoint_period = settings.eval_period, settings.checkpoint_period
  log_period = settings.log_period
  record = run_record.RunRecord(model_dir, settings.task_name, evaluator.metric_name)
  best_prompt = host(state.prompt)
  elapsed = overhead = 0.0      # seconds so far (earlier runs included); of which eval + saving
  start = 0
  latest = ckpt.latest_step()
  if latest is not None:
    restored, meta = ckpt.restore(latest, checkpointing.abstract_of(
        {'state': state, 'best_prompt': place(best_prompt, replicated)}))
    _check_resume(model_dir, meta, batch_size)
    state, best_prompt = restored['state'], host(restored['best_prompt'])
    start, elapsed = int(host(state.step)), meta['elapsed_s']
    overhead = elapsed - meta['train_s']
    record.resume(start, meta['best_step'], meta['best_score'])
    record.save(best_prompt)    # drop what a cut-short run recorded after this checkpoint
  if start > train_steps:
    raise ValueError(f'{model_dir} holds a checkpoint at step {start}, beyond TRAIN_STEPS='
                     f'{train_steps}')
  batches = data_lib.train_batches(settings.task_name, settings.lengths, batch_size,
                                   settings.seed, start_batch=start, shuffle=settings.shuffle,
                                   pad_id=settings.pad_id, label_ids=settings.label_ids)
  progress = progress_lib.Progress(model_dir, train_steps, start, settings.show_progress)
  if latest is not None:
    progress.message(f'resumed {model_dir} at step {start}')
  clock = time.perf_counter()
  saved_step = latest

  def now_elapsed():
    return elapsed + time.perf_counter() - clock

  def evaluate(step, prompt, train_loss):
    nonlocal best_prompt, overhead
    t0, at = time.perf_counter(), now_elapsed()     # the time this step was reached
    result = evaluator.evaluate(params, prompt)
    entry = {'step': step, 'elapsed_s': at, 'train_s': at - overhead,
             'wall_time': time.time(), 'score': result['score'], 'metric': result['metric'],
             'tasks': result['tasks'], 'eval_seconds': result['seconds']}
    if train_loss is not None:
      entry['train_loss'] = train_loss
    if record.add(entry):
      best_prompt = host(prompt)
      record.save(best_prompt)
    else:
      record.save()
    scalars = {'score': result['score'], 'timing/evaluate_seconds': result['seconds']}
    for task, values in result['tasks'].items():
      scalars.update({f'{task}/{k}': v for k, v in values.items()})
    progress.write('training_eval', step, scalars)
    progress.message(f'step {step}: {result["metric"]} {result["score"]:.2f} '
                     f'(best {record.best_score:.2f} at step {record.best_step})')
    overhead += time.perf_counter() - t0

  def save(step):
    nonlocal saved_step, overhead
    t0 = time.perf_counter()
    at = now_elapsed()
    ckpt.save(step, {'state': state, 'best_prompt': place(best_prompt, replicated)},
              {'elapsed_s': at, 'train_s': at - overhead,
               'best_step': record.best_step,
               'best_score': record.best_score, 'batches_consumed': step,
               'batch_size': batch_size, 'process_count': jax.process_count()})
    checkpointing.save_numpy_prompt(model_dir, step, host(state.prompt))
    saved_step = step
    progress.write('train', step, {'timing/checkpoint_seconds': time.perf_counter() - t0})
    overhead += time.perf_counter() - t0

  if start == 0 and settings.eval_at_start:
    evaluate(0, state.prompt, None)
  pending = None        # (step, metrics) of the last dispatched step, checked one step later
  window_tokens = 0.0
  window_losses = []
  eval_window = []      # losses since the last evaluation (its `train_loss`)
  first_step_time = None

  def check(pending_):
    nonlocal window_tokens
    step_no, metrics = pending_
    values = {k: float(host(v)) for k, v in metrics.items()}
    if not math.isfinite(values['loss']):
      raise NonFiniteLossError(f'loss is {values["loss"]} at step {step_no}; stopping (lower the '
                               'learning rate or check the data); last checkpoint: '
                               f'{saved_step if saved_step is not None else "none"}')
    window_tokens += values['target_tokens']
    window_losses.append(values)
    eval_window.append(values['loss'])
    progress.step(step_no, values['loss'])

  step = start
  try:
    while step < train_steps:
      t_step = time.perf_counter()
      batch = data_lib.to_global(next(batches), batch_sharding)
      state, metrics = step_fn(state, params, batch)
      step += 1
      if pending is not None:
        check(pending)
      pending = (step, metrics)
      if first_step_time is None:
        check(pending)
        pending = None
        first_step_time = time.perf_counter() - t_step
        progress.write('train', step, {'timing/compilation_seconds': first_step_time})
        progress.reset_window(step)
        window_tokens, window_losses[:] = 0.0, []
      boundary = (step % log_period == 0 or step % eval_period == 0 or
                  step % checkpoint_period == 0 or step == train_steps)
      if not boundary:
        continue
      if pending is not None:
        check(pending)
        pending = None
      if window_losses and (step % log_period == 0 or step == train_steps):
        scalars = {k: float(np.mean([w[k] for w in window_losses])) for k in window_losses[0]}
        scalars.update(progress.timing(step, batch_size, window_tokens))
        progress.write('train', step, scalars)
        window_tokens, window_losses[:] = 0.0, []
      if step % eval_period == 0 or step == train_steps:
        evaluate(step, state.prompt, float(np.mean(eval_window)) if eval_window else None)
        eval_window.clear()
      if step % checkpoint_period == 0 or step == train_steps:
        save(step)
      progress.reset_window(step)
  finally:
    progress.close()
  ckpt.wait()
  summary = record.to_json()
  summary.update(final_step=step, model_dir=model_dir, final_prompt=host(state.prompt),
                 best_prompt=best_prompt)
  return summary


def _check_resume(model_dir: str, meta: Mapping[str, Any], batch_size: int) -> None:
  if meta.get('batch_size') != batch_size:
    raise ValueError(f'{model_dir} was trained with BATCH_SIZE={meta.get("batch_size")}; resuming '
                     f'with BATCH_SIZE={batch_size} would change the data order')
  if meta.get('process_count') != jax.process_count():
    raise ValueError(f'{model_dir} was trained with {meta.get("process_count")} processes; resume '
                     f'it with the same number (got {jax.process_count()})')
