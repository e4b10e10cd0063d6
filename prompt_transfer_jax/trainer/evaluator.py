"""Evaluating a prompt on tasks' validation splits with each task's metric.

Classification tasks use rank classification: every label word sequence is scored
teacher-forced (`backbone.score_labels`, the encoder runs once per example) and the best one is
the prediction. QA / summarization tasks decode greedily (`backbone.greedy_decode`, jitted, the
encoder computed once) and the decoded text goes through the task's postprocessor and metric.
Every example counts: the last batch is padded with masked rows and one compiled function serves
all batches.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Mapping, Optional, Sequence

import gin
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.trainer import data as data_lib
from prompt_transfer_jax.trainer.gin_utils import require
from prompt_transfer_jax.trainer.placement import host, place


@dataclasses.dataclass
class TaskEval:
  info: Any                 # tasks.TaskInfo
  eval_set: data_lib.EvalSet
  backbone: Any
  label_targets: Optional[np.ndarray]   # [K, T] for classification
  eos_id: int
  vocabulary: Any


class Evaluator:
  """Scores prompts on a fixed list of tasks; build once, call `evaluate` many times."""

  def __init__(self, frozen, task_names: Sequence[str], lengths: Mapping[str, int],
               batch_size: int, mesh, param_shardings, split: str = 'validation',
               max_examples: Optional[int] = None):
    from prompt_transfer_jax import tasks
    self.mesh = mesh
    self.batch_size = int(batch_size)
    self.lengths = dict(lengths)
    self._param_shardings = param_shardings
    self._data_sharding = partitioning.data_sharding(mesh)
    self._replicated = NamedSharding(mesh, PartitionSpec())
    data_lib.check_batch_size(self.batch_size, mesh, 'the evaluation batch size')
    self._rows = data_lib.local_rows(self._data_sharding, self.batch_size)
    self.tasks: list[TaskEval] = []
    for name in task_names:
      info = tasks.get_task_info(name)
      if not info.is_classification and not frozen.can_generate:
        raise ValueError(f'task {name!r} needs generation, which the {frozen.family} backbone '
                         'does not support')
      label_targets = tasks.label_targets(name) if info.is_classification else None
      if label_targets is not None and label_targets.shape[1] > self.lengths['targets']:
        raise ValueError(f'task {name!r}: label targets are {label_targets.shape[1]} tokens, '
                         f"longer than TASK_FEATURE_LENGTHS['targets']={self.lengths['targets']}")
      seqio_task = data_lib.provider(name)
      vocab = seqio_task.output_features['targets'].vocabulary
      eval_set = data_lib.eval_set(name, self.lengths, split, frozen.pad_id, max_examples)
      self.tasks.append(TaskEval(info, eval_set, frozen.for_task(label_targets), label_targets,
                                 int(vocab.eos_id), vocab))
    self._score_fns: dict = {}
    self._decode_fns: dict = {}

  @property
  def metric_name(self) -> str:
    names = sorted({t.info.metric for t in self.tasks})
    return names[0] if len(names) == 1 else 'mean_' + '_'.join(names)

  def _jit(self, fn, extra=()):
    return jax.jit(fn, in_shardings=(self._param_shardings, self._replicated, self._data_sharding)
                   + tuple(self._replicated for _ in extra), out_shardings=self._replicated)

  def _score_fn(self, t: TaskEval):
    """Rank-classification scores; tasks with label targets of the same shape share one compile."""
    key = id(t.backbone), t.label_targets.shape
    if key not in self._score_fns:
      self._score_fns[key] = self._jit(
          lambda params, prompt, batch, labels, bb=t.backbone: bb.score_labels(params, prompt,
                                                                               batch, labels),
          extra=('labels',))
    fn = self._score_fns[key]
    labels = place(np.asarray(t.label_targets, np.int32), self._replicated)
    return lambda params, prompt, batch: fn(params, prompt, batch, labels)

  def _decode_fn(self, t: TaskEval):
    key = id(t.backbone), t.eos_id
    if key not in self._decode_fns:
      length, eos = self.lengths['targets'], t.eos_id
      self._decode_fns[key] = self._jit(
          lambda params, prompt, batch, bb=t.backbone: bb.greedy_decode(
              params, prompt, batch['encoder_input_tokens'], length, eos))
    return self._decode_fns[key]

  def _run(self, fn, params, prompt, features) -> np.ndarray:
    outs = []
    for batch in data_lib.padded_batches(features, self.batch_size):
      size = int(batch.pop('example_mask').sum())
      local = {k: v[self._rows] for k, v in batch.items()}
      out = fn(params, prompt, data_lib.to_global(local, self._data_sharding))
      outs.append(host(out)[:size])
    return np.concatenate(outs)

  def evaluate_task(self, t: TaskEval, params, prompt) -> dict:
    from prompt_transfer_jax.tasks import metrics
    features = t.eval_set.features
    if t.info.is_classification:
      scores = self._run(self._score_fn(t), params, prompt, features)
      predictions = [int(i) for i in np.argmax(scores, axis=-1)]
    else:
      ids = self._run(self._decode_fn(t), params, prompt, features)
      postprocess = data_lib.provider(t.info.name).postprocess_fn
      predictions = []
      for row, ex in zip(ids, t.eval_set.examples):
        text = t.vocabulary.decode([int(i) for i in row])
        predictions.append(postprocess(text, example=ex, is_target=False) if postprocess else text)
    return metrics.metric_fn_for(t.info)(t.eval_set.golds, predictions)

  def evaluate(self, params, prompt) -> dict:
    """{'score': mean primary metric over tasks, 'tasks': {task: {metric: value}}, 'seconds'}."""
    start = time.perf_counter()
    results = {t.info.name: self.evaluate_task(t, params, prompt) for t in self.tasks}
    score = float(np.mean([results[t.info.name][t.info.metric] for t in self.tasks]))
    return {'score': score, 'metric': self.metric_name, 'tasks': results,
            'seconds': time.perf_counter() - start}


@gin.configurable(module='ptj')
def evaluate(model=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
             prompt_file: str = gin.REQUIRED, prompt_length: int = 100, batch_size: int = 32,
             split: str = 'validation', max_examples: Optional[int] = None,
             eval_tasks: Optional[Sequence[str]] = None, model_parallel: int = 1,
             output_file: Optional[str] = None) -> dict:
  """Evaluates the prompt in `prompt_file` (`[PROMPT_LENGTH, E]` .npy) on a task or mixture.

  Returns (and, with `output_file`, writes as JSON) `{'score', 'metric', 'tasks', ...}`.
  """
  from prompt_transfer_jax.trainer import prompt_init
  require(MODEL=model, MIXTURE_OR_TASK_NAME=mixture_or_task_name,
          TASK_FEATURE_LENGTHS=task_feature_lengths, PROMPT_FILE=prompt_file)
  prompt = prompt_init.load_checked(prompt_file, int(prompt_length), model.embed_dim)
  names = list(eval_tasks or data_lib.task_names_of(mixture_or_task_name))
  mesh = partitioning.make_mesh(model_parallel)
  shardings = model.shardings(mesh)
  evaluator = Evaluator(model, names, task_feature_lengths, batch_size, mesh, shardings,
                        split=split, max_examples=max_examples)
  result = evaluator.evaluate(place(model.params, shardings),
                              place(prompt, NamedSharding(mesh, PartitionSpec())))
  result.update(prompt_file=prompt_file, split=split,
                num_examples={t.info.name: len(t.eval_set) for t in evaluator.tasks})
  if output_file and jax.process_index() == 0:
    tmp = f'{output_file}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
      json.dump(result, f, indent=1)
    os.replace(tmp, output_file)
  return result
