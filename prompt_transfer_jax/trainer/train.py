"""The prompt-tuning loop: data -> jitted step -> periodic evaluation, checkpoints and records.

`train(...)` (gin: `ptj.train`) tunes a prompt on a frozen model. The settings, task and model
are checked before MODEL_DIR is touched; a failure before anything is committed (prompt file,
evaluation data) removes the MODEL_DIR the run created. A MODEL_DIR that already
holds a checkpoint is resumed: prompt, optimizer state, RNG, data position (batches consumed),
best prompt and elapsed time all come back, so an interrupted run ends bit-identical to an
uninterrupted one. A non-finite loss stops the run with an error before anything is saved from
the bad step.

Safety (`run_dir.hold`): process 0 holds `run_lock.RunLock(MODEL_DIR)` for the whole run (a
second run on the same directory is refused); the resume guard compares the operative config with
the saved one before config.gin is (re)written; SIGINT / SIGTERM during training save a checkpoint
at the current step and stop (`preemption.Interrupted`, exit 128 + signal; with several processes,
a signal that reaches any of them stops all at the same step); a failure deletes MODEL_DIR only if
this run created it and it holds no committed work (`checkpointing.work_in`).
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import jax
import numpy as np
from clu import periodic_actions

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.files import atomic_write
from prompt_transfer_jax.partitioning import host, place
from prompt_transfer_jax.trainer import checkpointing
from prompt_transfer_jax.trainer import data as data_lib
from prompt_transfer_jax.trainer import evaluator as evaluator_lib
from prompt_transfer_jax.trainer import gin_checks
from prompt_transfer_jax.trainer import preemption
from prompt_transfer_jax.trainer import progress as progress_lib
from prompt_transfer_jax.trainer.gin_utils import require
from prompt_transfer_jax.trainer import resume_guard
from prompt_transfer_jax.trainer import run_dir
from prompt_transfer_jax.trainer import run_record
from prompt_transfer_jax.trainer import step as step_lib

CONFIG_FILE = resume_guard.CONFIG_FILE


def _check_lengths(lengths: Mapping[str, int]) -> dict:
  if not isinstance(lengths, Mapping) or set(lengths) != {'inputs', 'targets'}:
    raise ValueError("TASK_FEATURE_LENGTHS must be a dict with keys 'inputs' and 'targets', got "
                     f'{lengths!r}')
  return {k: gin_checks.positive_int(f"TASK_FEATURE_LENGTHS['{k}']", v) for k, v in lengths.items()}


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
          prompt_init: Callable = gin.REQUIRED,
          optimizer=None, seed: int = 0, prompt_seed: int = 0, z_loss: float = 1e-4,
          label_smoothing: float = 0.0, loss_normalization: str = 'sum',
          eval_tasks: Optional[Sequence[str]] = None, eval_split: str = 'validation',
          eval_batch_size: Optional[int] = None, max_eval_examples: Optional[int] = None,
          eval_at_start: bool = True, keep_checkpoints: int = 1, log_period: int = 100,
          model_parallel: int = 1, shuffle: bool = True, show_progress: bool = True,
          force_resume: bool = False) -> dict:
  """Prompt-tunes `model` (a `FrozenModel`) on a task or mixture; returns the run summary.

  Args:
    model_dir: where checkpoints, metrics.json, best_prompt.npy, numpy prompts, TensorBoard
      events and the operative config.gin go; a checkpoint there is resumed.
    model: the frozen model (`ptj.t5_model` / `ptj.roberta_model`).
    mixture_or_task_name: the registered task or mixture to train on.
    task_feature_lengths: `{'inputs': N, 'targets': M}` token lengths.
    batch_size: global batch size (split over processes and the mesh's data axis).
    train_steps: the step the run ends at (counted over resumes).
    eval_period: steps between evaluations (also at step 0 and at the last step).
    checkpoint_period: steps between checkpoints (default `eval_period`; also at the end).
    prompt_length: number of prompt vectors.
    prompt_init: `(model, task_names, length, seed) -> [length, embed_dim]` initializer (the
      model gin file's PROMPT_INIT).
    optimizer: an optax transformation (default `step.make_optimizer()`, Adafactor).
    seed: data order and dropout seed.
    prompt_seed: the prompt initializer's seed.
    z_loss, label_smoothing, loss_normalization: the loss (`step.LossConfig`).
    eval_tasks: tasks evaluated (default: the task, or every task of the mixture).
    eval_split: split evaluated.
    eval_batch_size: default `batch_size`.
    max_eval_examples: cap per evaluated task (default: all).
    eval_at_start: evaluate the initial prompt at step 0.
    keep_checkpoints: how many checkpoints are kept.
    log_period: steps between training-metric summaries.
    model_parallel: size of the mesh's model axis.
    shuffle: shuffle the training data.
    show_progress: show the live progress line and one line per start-up phase.
    force_resume: continue the run in MODEL_DIR although task, model, prompt length or batch
      size changed (`resume_guard`).

  Returns:
    The run record (`metrics.json` content: history, best_step, best_score, metric, ...) with
    `final_step`, `model_dir`, `final_prompt` and `best_prompt` added.
  """
  require(MODEL_DIR=model_dir, MODEL=model, MIXTURE_OR_TASK_NAME=mixture_or_task_name,
          TASK_FEATURE_LENGTHS=task_feature_lengths, PROMPT_INIT=prompt_init)
  nbytes = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(model.params))
  if model.source.startswith('random '):    # nothing was read: no throughput to report
    progress_lib.phase('model', f'{model.family} {model.source} weights, {nbytes / 1e6:.1f} MB',
                       show_progress)
  else:
    progress_lib.phase('checkpoint read', f'{model.family} {model.source}', show_progress, nbytes)
  config_str = gin.operative_config_str()
  batch_size, train_steps, eval_period, prompt_length, log_period, keep_checkpoints = (
      gin_checks.positive_int(name, value) for name, value in (
          ('BATCH_SIZE', batch_size), ('TRAIN_STEPS', train_steps), ('EVAL_PERIOD', eval_period),
          ('PROMPT_LENGTH', prompt_length), ('ptj.train.log_period', log_period),
          ('ptj.train.keep_checkpoints', keep_checkpoints)))
  checkpoint_period = gin_checks.positive_int('ptj.train.checkpoint_period', eval_period
                                              if checkpoint_period is None else checkpoint_period)
  lengths = _check_lengths(task_feature_lengths)
  loss_cfg = step_lib.LossConfig(z_loss, label_smoothing, loss_normalization)
  tx = step_lib.make_optimizer() if optimizer is None else optimizer
  train_task_names = data_lib.task_names_of(mixture_or_task_name)
  eval_task_names = list(eval_tasks or train_task_names)
  for name in dict.fromkeys(train_task_names + eval_task_names):
    evaluator_lib.check_token_ids(model, name)
  data_lib.local_batch_size(batch_size, jax.process_count())

  with run_dir.hold(model_dir) as run:   # before the model is placed: a refusal comes at once
    resume_guard.check_resume(model_dir, config_str, checkpointing.decided_on_process_0(
        lambda: checkpointing.newest_usable_step(model_dir)[0]), train_steps, force=force_resume)
    mesh, param_shardings, params = model.on_mesh(model_parallel)
    batch_sharding = partitioning.data_sharding(mesh)
    data_lib.check_batch_size(batch_size, mesh)
    label_targets = _train_label_targets(model, train_task_names)
    backbone = model.for_task(label_targets)

    prompt0 = np.asarray(prompt_init(model, train_task_names, prompt_length, prompt_seed),
                         np.float32)
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
    if jax.process_index() == 0 and config_str:
      with atomic_write(os.path.join(model_dir, CONFIG_FILE)) as f:
        f.write(config_str)
    ckpt = run.checkpointer(keep_checkpoints)
    schedule = _Schedule(
        task_name=mixture_or_task_name, lengths=lengths, batch_size=batch_size,
        train_steps=train_steps, eval_period=eval_period, checkpoint_period=checkpoint_period,
        log_period=log_period, seed=seed, shuffle=shuffle, pad_id=model.pad_id,
        label_ids=None if label_targets is None else label_targets[:, 0],
        eval_at_start=eval_at_start, show_progress=show_progress)
    return _Trainer(model_dir, ckpt, state, params, step_fn, evaluator, schedule,
                    partitioning.replicated(mesh), batch_sharding, run.signals).run()


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


def _on_steps(period: int, last: int) -> list[int]:
  """Every `period`-th step up to `last`, and `last` itself."""
  return sorted(set(range(period, last + 1, period)) | {last})


class _Trainer:
  """One run of the training loop, T5X-style: resume, then run to the next boundary and, there,
  log / evaluate / save (each a clu `PeriodicCallback` on its own steps) until `train_steps`.

  Step metrics are read one step late (`train_to`), so the host never waits on the device
  between two steps; every boundary reads them all before acting. `elapsed` counts earlier runs
  too; `overhead` is the part of it spent evaluating and saving (`train_s = elapsed - overhead`).
  """

  def __init__(self, model_dir: str, ckpt: checkpointing.Checkpointer, state, params, step_fn,
               evaluator: evaluator_lib.Evaluator, schedule: _Schedule, replicated,
               batch_sharding, signals: preemption.StopSignals):
    self.model_dir, self.ckpt, self.schedule = model_dir, ckpt, schedule
    self.signals = signals
    self.state, self.params, self.step_fn = state, params, step_fn
    self.evaluator, self.replicated, self.batch_sharding = evaluator, replicated, batch_sharding
    self.record = run_record.RunRecord(model_dir, schedule.task_name, evaluator.metric_name)
    self.best_prompt = host(state.prompt)
    self.step = 0
    self.saved_step: Optional[int] = None
    self.overhead = 0.0
    self._earlier_s = 0.0               # elapsed seconds of the runs before this one
    self._clock = time.perf_counter()
    self._compiled = False
    self._window: list[dict] = []       # step metrics since the last log
    self._window_tokens = 0.0
    self._eval_losses: list[float] = []  # losses since the last evaluation (its `train_loss`)
    last = schedule.train_steps
    periods = (schedule.log_period, schedule.eval_period, schedule.checkpoint_period)
    callbacks = (self.flush_metrics, self._evaluate_boundary, self.save)
    self.actions = [periodic_actions.PeriodicCallback(on_steps=_on_steps(p, last), callback_fn=fn)
                    for p, fn in zip(periods, callbacks)]
    self._boundaries = sorted(set().union(*(_on_steps(p, last) for p in periods)))
    self.batches = self.progress = None

  def elapsed(self) -> float:
    return self._earlier_s + time.perf_counter() - self._clock

  def run(self) -> dict:
    """Resumes, trains to `train_steps`; the run summary."""
    s = self.schedule
    resumed = self.resume()
    if self.step > s.train_steps:
      raise ValueError(f'{self.model_dir} holds a checkpoint at step {self.step}, beyond '
                       f'TRAIN_STEPS={s.train_steps}')
    progress_lib.phase('resume', f'resumed {self.model_dir} at step {self.step}' if resumed
                       else f'new run in {self.model_dir}', s.show_progress or resumed)
    self.batches = data_lib.train_batches(s.task_name, s.lengths, s.batch_size, s.seed,
                                          start_batch=self.step, shuffle=s.shuffle,
                                          pad_id=s.pad_id, label_ids=s.label_ids)
    progress_lib.phase('data', f'{s.task_name}, batch {s.batch_size}, from batch {self.step}',
                       s.show_progress)
    self.progress = progress_lib.Progress(self.model_dir, s.train_steps, self.step,
                                          s.show_progress)
    try:
      for problem in self.ckpt.problems:
        self.progress.message(f'corrupt checkpoint skipped (moved to {checkpointing.CORRUPT_DIR}/):'
                              f' {problem}')
      self._clock = time.perf_counter()
      self.signals.deferred = True
      stop_signal = self.signals.poll(wait=True)   # several processes: a signal during setup
      if stop_signal is None and self.step == 0 and s.eval_at_start:
        self.evaluate(0, None)
      if (stop_signal is None and 0 < self.step == s.train_steps and
          not any(h['step'] == self.step for h in self.record.history)):
        self.evaluate(self.step, None)   # stopped at the last step, before its evaluation
      while stop_signal is None and self.step < s.train_steps:
        stop_signal = self.train_to(
            self._boundaries[bisect.bisect_right(self._boundaries, self.step)])
        if stop_signal is not None:
          break
        for action in self.actions:     # log, evaluate, save: each on its own steps
          action(self.step)
        self.progress.reset_window(self.step)
      if stop_signal is not None:
        self._stop_on_signal(stop_signal)
    finally:
      self.progress.close()
    self.ckpt.wait()
    summary = self.record.to_json()
    summary.update(final_step=self.step, model_dir=self.model_dir,
                   final_prompt=host(self.state.prompt), best_prompt=self.best_prompt)
    return summary

  def _stop_on_signal(self, signum: int) -> None:
    """Preemption: flushes the metrics, saves a checkpoint at the current step, raises
    `Interrupted` (a resume continues from this step)."""
    self.flush_metrics(self.step)
    preemption.save_and_stop(signum, self.step, self.saved_step, self.save, self.ckpt.wait)

  def resume(self) -> bool:
    """Restores the latest checkpoint of MODEL_DIR, if any (state, best prompt, clock, record)."""
    latest = self.ckpt.latest_step()
    if latest is None:
      return False
    restored, meta = self.ckpt.restore(latest, checkpointing.abstract_of(self._checkpoint()))
    _check_resume(self.model_dir, meta, self.schedule.batch_size)
    self.state, self.best_prompt = restored['state'], host(restored['best_prompt'])
    self.step, self._earlier_s = int(host(self.state.step)), meta['elapsed_s']
    self.overhead = self._earlier_s - meta['train_s']
    self.saved_step = latest
    self.record.resume(self.step, meta['best_step'], meta['best_score'])
    self.record.save(self.best_prompt)   # drop what a cut-short run recorded after this checkpoint
    return True

  def train_to(self, stop: int) -> Optional[int]:
    """Runs the training steps up to step `stop` (or to a step where a signal stops the run);
    reads every step's metrics; the signal to stop on, or None."""
    pending = None        # (step, metrics) of the last dispatched step, read one step later
    stop_signal = None
    while self.step < stop and stop_signal is None:
      t0 = time.perf_counter()
      batch = data_lib.to_global(next(self.batches), self.batch_sharding)
      self.state, metrics = self.step_fn(self.state, self.params, batch)
      self.step += 1
      stop_signal = self.signals.poll()
      if pending is not None:
        self._read_metrics(*pending)
      pending = (self.step, metrics)
      if not self._compiled:          # the first step compiles: timed apart, not in the window
        self._read_metrics(*pending)
        pending = None
        self._compiled = True
        seconds = time.perf_counter() - t0
        progress_lib.phase('compile and first step', f'step {self.step}, loss '
                           f'{self._window[-1]["loss"]:.4g}', self.schedule.show_progress)
        self.progress.write('train', self.step, {'timing/compilation_seconds': seconds})
        self.progress.reset_window(self.step)
        self._window, self._window_tokens = [], 0.0
    if pending is not None:
      self._read_metrics(*pending)
    return stop_signal if stop_signal is not None else self.signals.poll(wait=True)

  def _read_metrics(self, step: int, metrics) -> None:
    values = {k: float(host(v)) for k, v in metrics.items()}
    if not math.isfinite(values['loss']):
      raise NonFiniteLossError(f'loss is {values["loss"]} at step {step}; stopping (lower the '
                               'learning rate or check the data); last checkpoint: '
                               f'{"none" if self.saved_step is None else self.saved_step}')
    self._window_tokens += values['target_tokens']
    self._window.append(values)
    self._eval_losses.append(values['loss'])
    self.progress.step(step, values['loss'])

  def flush_metrics(self, step: int, t: Optional[float] = None) -> None:
    """Writes the mean step metrics and the timing of the steps since the last flush."""
    del t
    if not self._window:
      return
    scalars = {k: float(np.mean([w[k] for w in self._window])) for k in self._window[0]}
    scalars.update(self.progress.timing(step, self.schedule.batch_size, self._window_tokens))
    self.progress.write('train', step, scalars)
    self._window, self._window_tokens = [], 0.0

  def _evaluate_boundary(self, step: int, t: Optional[float] = None) -> None:
    del t
    losses, self._eval_losses = self._eval_losses, []
    self.evaluate(step, float(np.mean(losses)) if losses else None)

  def evaluate(self, step: int, train_loss: Optional[float]) -> None:
    """Scores the current prompt, records it (and the best prompt), reports it."""
    t0, at = time.perf_counter(), self.elapsed()     # the time this step was reached
    result = self.evaluator.evaluate(self.params, self.state.prompt)
    entry = {'step': step, 'elapsed_s': at, 'train_s': at - self.overhead,
             'wall_time': time.time(), 'score': result['score'], 'metric': result['metric'],
             'tasks': result['tasks'], 'eval_seconds': result['seconds']}
    if train_loss is not None:
      entry['train_loss'] = train_loss
    if self.record.add(entry):
      self.best_prompt = host(self.state.prompt)
      self.record.save(self.best_prompt)
    else:
      self.record.save()
    scalars = {'score': result['score'], 'timing/evaluate_seconds': result['seconds']}
    for task, values in result['tasks'].items():
      scalars.update({f'{task}/{k}': v for k, v in values.items()})
    self.progress.write('training_eval', step, scalars)
    self.progress.message(f'step {step}: {result["metric"]} {result["score"]:.2f} '
                          f'(best {self.record.best_score:.2f} at step {self.record.best_step})')
    self.overhead += time.perf_counter() - t0

  def _checkpoint(self) -> dict:
    return {'state': self.state, 'best_prompt': place(self.best_prompt, self.replicated)}

  def save(self, step: int, t: Optional[float] = None) -> None:
    """Checkpoints the state, best prompt and clock (asynchronously), and the prompt as numpy."""
    del t
    t0 = time.perf_counter()
    at = self.elapsed()
    self.ckpt.save(step, self._checkpoint(),
                   {'elapsed_s': at, 'train_s': at - self.overhead,
                    'best_step': self.record.best_step, 'best_score': self.record.best_score,
                    'batches_consumed': step, 'batch_size': self.schedule.batch_size,
                    'process_count': jax.process_count()})
    checkpointing.save_numpy_prompt(self.model_dir, step, host(self.state.prompt))
    self.saved_step = step
    self.progress.write('train', step, {'timing/checkpoint_seconds': time.perf_counter() - t0})
    self.overhead += time.perf_counter() - t0


def _check_resume(model_dir: str, meta: Mapping[str, Any], batch_size: int) -> None:
  if meta.get('batch_size') != batch_size:
    raise ValueError(f'{model_dir} was trained with BATCH_SIZE={meta.get("batch_size")}; resuming '
                     f'with BATCH_SIZE={batch_size} would change the data order')
  if meta.get('process_count') != jax.process_count():
    raise ValueError(f'{model_dir} was trained with {meta.get("process_count")} processes; resume '
                     f'it with the same number (got {jax.process_count()})')
