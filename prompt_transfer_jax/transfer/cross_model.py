"""Training a cross-model projector (paper-spec sections 4.2, 4.3) on the (data, model) mesh.

Two methods, one jitted step each; the projector's parameters are the only trainable tree and
the frozen target weights are an argument that is never differentiated:

* `task_tuning`: the target task's loss through the FROZEN target backbone fed Proj(P_src_t),
  where P_src_t is the source model's prompt of the example's task t (the trainer's data
  pipeline, loss (`step.batch_loss`) and backbone interface: token cross-entropy for T5,
  label-word cross-entropy at the `<mask>` slot for RoBERTa). Unlike the original T5 path
  (`.weight.data =`), the gradient reaches the projector. AdamW lr 5e-3, eps 1e-6, no weight
  decay, batch 16, no dropout.
* `distance`: MSE between Proj(P_src_t) and the target model's own prompt P_tgt_t for the same
  task; Adam lr 1e-4. Each step samples `batch_size` tasks (with replacement). Needs only the
  prompt files.

With several training tasks a task-tuning step draws its batch from one task, chosen by a seeded
function of the step number. `train_projector` (gin: `ptj.train_projector`) evaluates every
`eval_period` steps on the training tasks' validation split (Proj(P_src_t) on task t, the task's
metric, mean over tasks) and keeps the best projector in MODEL_DIR/best_projector; without a
target model (distance only) the score is minus the MSE over all pairs. MODEL_DIR resumes like
`ptj train`: projector, optimizer state, step, each task's data position, best step and history;
as there (`run_dir.hold`), one run holds MODEL_DIR, SIGINT / SIGTERM save the current step and stop
(`preemption`), and a failure removes only a MODEL_DIR it created that holds no committed work.

Source prompts are found by target task name in a prompt directory (`NAME.npy`, see
`source_prompt_names`), so a RoBERTa prompt directory (`roberta_laptop.npy`, or `laptop.npy`)
serves T5 target tasks (`t5_laptop`) of the same task key.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from prompt_transfer_jax import files, partitioning
from prompt_transfer_jax.trainer import checkpointing
from prompt_transfer_jax.trainer import preemption
from prompt_transfer_jax.trainer import run_dir
from prompt_transfer_jax.trainer import step as step_lib
from prompt_transfer_jax.trainer.gin_utils import require
from prompt_transfer_jax.partitioning import host, place
from prompt_transfer_jax.transfer import projector as projector_lib

METHODS = ('task_tuning', 'distance')
BEST_PROJECTOR = 'best_projector'


def check_method(method: str) -> str:
  if method not in METHODS:
    raise ValueError(f'unknown projector training method {method!r}; choose one of '
                     f'{", ".join(METHODS)}')
  return method


@gin.configurable(module='ptj')
def projector_optimizer(method: str = 'task_tuning', learning_rate: Optional[float] = None,
                        eps: Optional[float] = None,
                        weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The original's optimizers: task tuning AdamW(5e-3, eps 1e-6, wd 0); distance Adam(1e-4)."""
  check_method(method)
  if method == 'task_tuning':
    return optax.adamw(5e-3 if learning_rate is None else learning_rate,
                       eps=1e-6 if eps is None else eps, weight_decay=weight_decay)
  return optax.adamw(1e-4 if learning_rate is None else learning_rate,
                     eps=1e-8 if eps is None else eps, weight_decay=weight_decay)


@gin.configurable(module='ptj')
def target_model(model=gin.REQUIRED):
  """The TARGET `FrozenModel` of `ptj project zero-shot` (bound to %MODEL of a models/ file)."""
  require(MODEL=model)
  return model


@flax.struct.dataclass
class ProjectorState:
  step: jax.Array      # int32 scalar: updates applied
  params: Any          # the projector's parameters (sharded by their logical axes)
  opt_state: Any


def init_state(params, optimizer: optax.GradientTransformation) -> ProjectorState:
  """The state, created in place: the optimizer's per-parameter moments take the shardings of
  the parameters (partitioned like them), everything else is replicated."""
  param_sh = jax.tree.map(lambda x: x.sharding, params)
  first = jax.tree.leaves(param_sh)[0]
  replicated = (partitioning.replicated(first.mesh) if isinstance(first, NamedSharding)
                else first)
  opt_sh = optax.tree_map_params(optimizer, lambda _, s: s, jax.eval_shape(optimizer.init, params),
                                 param_sh, transform_non_params=lambda _: replicated)
  return jax.jit(lambda p: ProjectorState(jnp.zeros((), jnp.int32), p, optimizer.init(p)),
                 out_shardings=ProjectorState(replicated, param_sh, opt_sh))(params)


def state_shardings(state: ProjectorState):
  return jax.tree.map(lambda x: x.sharding, state)


def distance_loss(spec: projector_lib.ProjectorSpec, params, source, target):
  """Mean squared error between Proj(source) `[B, P, Es]` and target `[B, P, Et]` (torch MSE)."""
  return jnp.mean(jnp.square(spec.module.apply({'params': params}, source) - target))


def _update(state: ProjectorState, optimizer, value_and_grad):
  (value, aux), grad = value_and_grad(state.params)
  updates, opt_state = optimizer.update(grad, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), value, aux, grad


def make_distance_step(spec: projector_lib.ProjectorSpec, optimizer) -> Callable:
  """`step(state, source [B, P, Es], target [B, P, Et]) -> (state, metrics)`."""
  def step(state, source, target):
    fn = jax.value_and_grad(lambda p: (distance_loss(spec, p, source, target), None), has_aux=True)
    state, value, _, grad = _update(state, optimizer, fn)
    return state, {'loss': value, 'grad_norm': optax.global_norm(grad)}
  return step


def make_task_step(spec: projector_lib.ProjectorSpec, backbone, optimizer,
                   loss: step_lib.LossConfig) -> Callable:
  """`step(state, frozen_params, source [P, Es], batch) -> (state, metrics)`; gradients w.r.t.
  the projector only, through the frozen backbone (no dropout)."""
  def step(state, frozen_params, source, batch):
    def objective(p):
      prompt = spec.module.apply({'params': p}, source)
      return step_lib.batch_loss(backbone, frozen_params, prompt, batch, loss)
    state, value, (total, count), grad = _update(state, optimizer,
                                                 jax.value_and_grad(objective, has_aux=True))
    return state, {'loss': value, 'loss_per_target_token': total / jnp.maximum(count, 1.0),
                   'grad_norm': optax.global_norm(grad)}
  return step


def jit_distance_step(step: Callable, state: ProjectorState, mesh) -> Callable:
  sh, rep = state_shardings(state), partitioning.replicated(mesh)
  return jax.jit(step, in_shardings=(sh, rep, rep), out_shardings=(sh, rep), donate_argnums=(0,),
                 compiler_options=step_lib.compiler_options(mesh))


def jit_task_step(step: Callable, state: ProjectorState, mesh, param_shardings) -> Callable:
  """The task-tuning step on the mesh; the frozen target's activations follow the logical
  rules as in the train step."""
  sh, rep = state_shardings(state), partitioning.replicated(mesh)
  return jax.jit(partitioning.constrain_activations(step, mesh),
                 in_shardings=(sh, param_shardings, rep, partitioning.data_sharding(mesh)),
                 out_shardings=(sh, rep), donate_argnums=(0,),
                 compiler_options=step_lib.compiler_options(mesh))


def source_prompt_names(available: Sequence[str], task: str) -> Optional[str]:
  """The file name (without .npy) of `task`'s prompt among `available`: the task name itself,
  else a file named by the task's key (`laptop`), else one naming another family's task of the
  same key (`roberta_laptop` for `t5_laptop`)."""
  from prompt_transfer_jax import tasks
  if task in available:
    return task
  key = tasks.get_task_info(task).key
  if key in available:
    return key
  for name in available:
    try:
      if tasks.get_task_info(name).key == key:
        return name
    except ValueError:
      continue
  return None


def read_task_prompts(directory: str, task_names: Sequence[str], what: str) -> np.ndarray:
  """`[T, P, E]`: the prompt of each task from `directory` (one-line error when one is missing)."""
  available = files.list_prompts(directory)
  names = []
  for t in task_names:
    name = source_prompt_names(available, t)
    if name is None:
      raise FileNotFoundError(f'{what} {directory}: no prompt for task {t} (have: '
                              f'{", ".join(available) or "none"})')
    names.append(name)
  _, prompts = files.read_prompt_dir(directory, names)
  if not np.all(np.isfinite(prompts)):
    raise ValueError(f'{what} {directory}: prompts contain NaN or infinite values')
  return prompts


@dataclasses.dataclass
class _Setup:
  """Everything checked and built before MODEL_DIR is touched."""
  method: str
  spec: projector_lib.ProjectorSpec
  tasks: list
  sources: np.ndarray               # [T, P, Es]
  targets: Optional[np.ndarray]     # [T, P, Et] (distance)
  mesh: Any
  state: ProjectorState
  optimizer: Any


def _task_schedule(seed: int, step: int, n: int) -> int:
  """The training task of update `step` (several tasks): a pure function of (seed, step)."""
  return 0 if n == 1 else int(np.random.default_rng([seed, step]).integers(n))


@gin.configurable(module='ptj')
def train_projector(model_dir: str = gin.REQUIRED, method: str = gin.REQUIRED,
                    train_tasks: Sequence[str] = gin.REQUIRED,
                    source_prompt_dir: str = gin.REQUIRED,
                    target_prompt_dir: Optional[str] = None, model=None,
                    source_model: str = '', task_feature_lengths: Optional[Mapping[str, int]] = None,
                    hidden_dim: int = 768, activation: str = 'leaky_relu', layer_norm: bool = True,
                    weight_init: str = 'torch', optimizer=None, batch_size: int = 16,
                    train_steps: int = 1000, eval_period: int = 100, seed: int = 0,
                    loss_normalization: str = 'mean', z_loss: float = 0.0,
                    eval_batch_size: Optional[int] = None,
                    max_eval_examples: Optional[int] = None, eval_at_start: bool = True,
                    model_parallel: int = 1, log: Optional[Callable[[str], None]] = None) -> dict:
  """Trains a projector from `source_prompt_dir`'s prompts to `model` (the TARGET `FrozenModel`;
  needed for task tuning, optional for distance, where it only evaluates) and returns the run
  summary (`best_step`, `best_score`, `history`, `projector_dir`, ...)."""
  require(MODEL_DIR=model_dir, PROJECTOR_METHOD=method, TRAIN_TASKS=train_tasks,
          SOURCE_PROMPT_DIR=source_prompt_dir)
  check_method(method)
  if isinstance(train_tasks, str):
    train_tasks = [train_tasks]
  tasks = list(train_tasks)
  if not tasks:
    raise ValueError('TRAIN_TASKS is empty')
  for name, value in dict(BATCH_SIZE=batch_size, TRAIN_STEPS=train_steps,
                          EVAL_PERIOD=eval_period).items():
    if value is None or int(value) < 1:
      raise ValueError(f'{name} must be a positive integer, got {value!r}')
  if method == 'task_tuning' and model is None:
    raise ValueError('task_tuning needs the target model (MODEL from a models/ gin file)')
  if method == 'distance' and not target_prompt_dir:
    raise ValueError('distance needs TARGET_PROMPT_DIR (the target model\'s own prompts)')
  if model is not None and task_feature_lengths is None:
    raise ValueError('TASK_FEATURE_LENGTHS is required to train or evaluate on a target model')
  sources = read_task_prompts(source_prompt_dir, tasks, 'source prompt directory')
  targets = None
  target_dim = None if model is None else model.embed_dim
  if target_prompt_dir:
    targets = read_task_prompts(target_prompt_dir, tasks, 'target prompt directory')
    if targets.shape[1] != sources.shape[1] or (target_dim and targets.shape[2] != target_dim):
      raise ValueError(f'target prompts in {target_prompt_dir} have shape {targets.shape[1:]}, '
                       f'but the source prompts have {sources.shape[1]} rows'
                       + (f' and the target model embeds in {target_dim}' if target_dim else '')
                       + f'; expected ({sources.shape[1]}, {target_dim or targets.shape[2]})')
    target_dim = targets.shape[2]
  spec = projector_lib.ProjectorSpec(sources.shape[1], sources.shape[2], target_dim, hidden_dim,
                                     activation, layer_norm, weight_init)
  tx = projector_optimizer(method) if optimizer is None else optimizer
  loss_cfg = step_lib.LossConfig(z_loss, 0.0, loss_normalization)
  mesh = partitioning.make_mesh(model_parallel)
  params = projector_lib.init_params(spec, seed, projector_lib.shardings(spec, mesh))
  setup = _Setup(method, spec, tasks, sources, targets, mesh, init_state(params, tx), tx)
  meta = {'method': method, 'train_tasks': tasks, 'source_model': source_model,
          'source_prompt_dir': os.path.abspath(source_prompt_dir),
          'target_prompt_dir': target_prompt_dir and os.path.abspath(target_prompt_dir),
          'target_model': getattr(model, 'source', None)}
  trainer = _Trainer(setup, model, loss_cfg, batch_size, seed, task_feature_lengths,
                     eval_batch_size or batch_size, max_eval_examples, log or (lambda _: None))
  with run_dir.hold(model_dir, work_dirs=(BEST_PROJECTOR,)) as run:
    return trainer.run(model_dir, run.checkpointer(keep=1), train_steps, eval_period,
                       eval_at_start, meta, run.signals)


class _Trainer:
  """The loop of one projector run: steps, evaluations, checkpoints, best projector."""

  def __init__(self, setup: _Setup, model, loss_cfg, batch_size: int, seed: int, lengths,
               eval_batch_size: int, max_eval_examples: Optional[int], log):
    self.s, self.model, self.batch_size, self.seed, self.log = setup, model, batch_size, seed, log
    self.lengths = None if lengths is None else {k: int(v) for k, v in dict(lengths).items()}
    mesh = setup.mesh
    self.replicated = partitioning.replicated(mesh)
    self.project = jax.jit(lambda p, x: setup.spec.module.apply({'params': p}, x),
                           out_shardings=self.replicated)
    self.sources = place(setup.sources, self.replicated)
    self.source_list = [place(p, self.replicated) for p in setup.sources]
    self.frozen = self.evaluator = None
    if model is not None:
      from prompt_transfer_jax.trainer import data as data_lib
      from prompt_transfer_jax.trainer import evaluator as evaluator_lib
      data_lib.check_batch_size(batch_size, mesh)
      self.param_shardings = model.shardings(mesh)
      self.frozen = place(model.params, self.param_shardings)
      self.evaluator = evaluator_lib.Evaluator(model, setup.tasks, self.lengths, eval_batch_size,
                                               mesh, self.param_shardings,
                                               max_examples=max_eval_examples)
    self.steps = self._task_steps(loss_cfg) if setup.method == 'task_tuning' else None
    if self.steps is None:
      self.distance_step = jit_distance_step(make_distance_step(setup.spec, setup.optimizer),
                                             setup.state, mesh)

  def _task_steps(self, loss_cfg) -> list:
    """One jitted step per distinct backbone (RoBERTa: per verbalizer), one entry per task."""
    from prompt_transfer_jax import tasks
    self.label_ids, fns, out = [], [], []
    for t in self.s.tasks:
      info = tasks.get_task_info(t)
      label_targets = tasks.label_targets(t) if info.is_classification else None
      self.label_ids.append(None if label_targets is None else label_targets[:, 0])
      backbone = self.model.for_task(label_targets)
      for bb, fn in fns:
        if bb == backbone:
          break
      else:
        fn = jit_task_step(make_task_step(self.s.spec, backbone, self.s.optimizer, loss_cfg),
                           self.s.state, self.s.mesh, self.param_shardings)
        fns.append((backbone, fn))
      out.append(fn)
    return out

  def _batches(self, consumed: Sequence[int]) -> list:
    from prompt_transfer_jax.trainer import data as data_lib
    return [data_lib.train_batches(t, self.lengths, self.batch_size, self.seed + i,
                                   start_batch=consumed[i], pad_id=self.model.pad_id,
                                   label_ids=self.label_ids[i])
            for i, t in enumerate(self.s.tasks)]

  def evaluate(self, params) -> dict:
    """Mean validation metric of Proj(P_src_t) on each task t (or -MSE without a model)."""
    start = time.perf_counter()
    projected = host(self.project(params, self.sources))
    if self.evaluator is None:
      mse = float(np.mean(np.square(projected - self.s.targets)))
      return {'score': -mse, 'metric': 'neg_mse', 'tasks': {}, 'seconds': 0.0}
    results = {t.info.name: self.evaluator.task_results(t, self.frozen, projected[i][None])[0]
               for i, t in enumerate(self.evaluator.tasks)}
    score = float(np.mean([results[t.info.name][t.info.metric] for t in self.evaluator.tasks]))
    return {'score': score, 'metric': self.evaluator.metric_name, 'tasks': results,
            'seconds': time.perf_counter() - start}

  def _distance_batch(self, step: int):
    idx = np.random.default_rng([self.seed, step]).integers(len(self.s.tasks),
                                                            size=self.batch_size)
    return self.s.sources[idx], self.s.targets[idx]

  def run(self, model_dir: str, ckpt, train_steps: int, eval_period: int, eval_at_start: bool,
          meta: dict, signals: preemption.StopSignals) -> dict:
    from prompt_transfer_jax.trainer import run_record
    from prompt_transfer_jax.trainer import data as data_lib
    state, spec, n = self.s.state, self.s.spec, len(self.s.tasks)
    metric = 'neg_mse' if self.evaluator is None else self.evaluator.metric_name
    record = run_record.RunRecord(model_dir, ','.join(self.s.tasks), metric)
    best_dir = os.path.join(model_dir, BEST_PROJECTOR)
    start, elapsed, overhead = 0, 0.0, 0.0
    latest = ckpt.latest_step()
    if latest is not None:
      restored, saved = ckpt.restore(latest, checkpointing.abstract_of({'state': state}))
      if saved.get('batch_size') != self.batch_size or saved.get('method') != meta['method']:
        raise ValueError(f'{model_dir} was trained with method {saved.get("method")} and '
                         f'BATCH_SIZE={saved.get("batch_size")}; resume it with the same settings')
      if (projector_lib.ProjectorSpec.from_json(saved.get('spec'), model_dir) != spec or
          saved.get('train_tasks') != self.s.tasks):
        raise ValueError(f'{model_dir} holds a projector for {saved.get("spec")} on '
                         f'{saved.get("train_tasks")}; this run asks for {spec.to_json()} on '
                         f'{self.s.tasks}')
      state, start = restored['state'], int(host(restored['state'].step))
      elapsed, overhead = saved['elapsed_s'], saved['elapsed_s'] - saved['train_s']
      record.resume(start, saved['best_step'], saved['best_score'])
      record.save()
      self.log(f'resumed {model_dir} at step {start}')
    if start > train_steps:
      raise ValueError(f'{model_dir} holds a checkpoint at step {start}, beyond TRAIN_STEPS='
                       f'{train_steps}')
    consumed = [0] * n
    for s in range(start):
      consumed[_task_schedule(self.seed, s, n)] += 1
    batches = self._batches(consumed) if self.steps is not None else None
    clock = time.perf_counter()

    def now():
      return elapsed + time.perf_counter() - clock

    def evaluate(step, train_loss):
      nonlocal overhead
      t0, at = time.perf_counter(), now()
      result = self.evaluate(state.params)
      entry = {'step': step, 'elapsed_s': at, 'train_s': at - overhead, 'wall_time': time.time(),
               'score': result['score'], 'metric': result['metric'], 'tasks': result['tasks'],
               'eval_seconds': result['seconds']}
      if train_loss is not None:
        entry['train_loss'] = train_loss
      if record.add(entry):
        projector_lib.save(best_dir, spec, state.params, dict(meta, step=step,
                                                              score=result['score']))
      record.save()
      self.log(f'step {step}: {result["metric"]} {result["score"]:.4g} '
               f'(best {record.best_score:.4g} at step {record.best_step})')
      overhead += time.perf_counter() - t0

    def save(step):
      nonlocal overhead, saved_step
      t0, at = time.perf_counter(), now()
      ckpt.save(step, {'state': state},
                dict(meta, spec=spec.to_json(), elapsed_s=at, train_s=at - overhead,
                     best_step=record.best_step, best_score=record.best_score,
                     batch_size=self.batch_size))
      saved_step = step
      overhead += time.perf_counter() - t0

    saved_step = start if latest is not None else None
    signals.deferred = True
    stop_signal = signals.poll(wait=True)    # several processes: a signal during setup
    if stop_signal is None and start == 0 and eval_at_start:
      evaluate(0, None)
    losses = []
    step = start
    while step < train_steps and stop_signal is None:
      if self.steps is None:
        source, target = self._distance_batch(step)
        state, metrics = self.distance_step(state, place(source, self.replicated),
                                            place(target, self.replicated))
      else:
        i = _task_schedule(self.seed, step, n)
        batch = data_lib.to_global(next(batches[i]), partitioning.data_sharding(self.s.mesh))
        state, metrics = self.steps[i](state, self.frozen, self.source_list[i], batch)
      step += 1
      stop_signal = signals.poll()
      loss = float(host(metrics['loss']))
      if not math.isfinite(loss):
        raise FloatingPointError(f'loss is {loss} at step {step}; stopping (lower the learning '
                                 'rate); last checkpoint: '
                                 f'{ckpt.latest_step() if ckpt.latest_step() is not None else "none"}')
      losses.append(loss)
      if step % eval_period == 0 or step == train_steps:
        evaluate(step, float(np.mean(losses)))
        losses = []
        save(step)
    if stop_signal is not None:
      preemption.save_and_stop(stop_signal, step, saved_step, save, ckpt.wait)
    ckpt.wait()
    summary = record.to_json()
    summary.update(final_step=step, model_dir=model_dir, projector_dir=best_dir,
                   final_params=state.params, spec=spec.to_json(), **meta)
    return summary
