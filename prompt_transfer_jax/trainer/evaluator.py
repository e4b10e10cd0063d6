"""Evaluating prompts on tasks' validation splits with each task's metric, many prompts at once.

One `Evaluator` serves training-time evaluation (one prompt), `ptj eval` and the zero-shot
matrix (N source prompts): per task one jitted function scores a chunk of C prompts on a batch
of examples (`jax.vmap` over the prompt); the last prompt chunk is padded with zero prompts and
the last batch with masked rows, so every task compiles once and every example counts. Compiled
functions are cached by value (backbone, options, shapes), not by object identity.

Options (`ptj.eval_options`, gin): classification `scoring='rank'` scores every label word
sequence teacher-forced (`score_labels`) and takes the best; `'first_token'` is the 1.0 code's
rule, the argmax of the first decoding step's logits over each label word's first piece
(`first_token_scores`; a backbone without it, RoBERTa, already scores first pieces at its mask
slot). Generation tasks decode with the key/value cache, `decoding='greedy'` or `'beam'`
(`beam_size`, length penalty `alpha`), for at most the task's `max_decode_length` new tokens
(default: the targets length) with EOS forbidden before `min_decode_length`; the text goes
through the task's postprocessor and metric. A backbone that cannot generate (no
`greedy_decode` / `beam_search`) is refused for generation tasks.
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

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.files import atomic_write, write_json
from prompt_transfer_jax.trainer import data as data_lib
from prompt_transfer_jax.trainer.gin_utils import require
from prompt_transfer_jax.partitioning import host, place

SCORINGS = ('rank', 'first_token')
DECODINGS = ('greedy', 'beam')


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How classification is scored and generation decoded (see the module docstring)."""
  scoring: str = 'rank'
  decoding: str = 'greedy'
  beam_size: int = 4
  alpha: float = 0.6

  def __post_init__(self):
    if self.scoring not in SCORINGS:
      raise ValueError(f'eval_options.scoring={self.scoring!r}; choose one of {", ".join(SCORINGS)}')
    if self.decoding not in DECODINGS:
      raise ValueError(f'eval_options.decoding={self.decoding!r}; choose one of '
                       f'{", ".join(DECODINGS)}')
    if self.beam_size < 1:
      raise ValueError(f'eval_options.beam_size must be >= 1, got {self.beam_size}')


@gin.configurable(module='ptj')
def eval_options(scoring: str = 'rank', decoding: str = 'greedy', beam_size: int = 4,
                 alpha: float = 0.6) -> EvalOptions:
  """The evaluation options bound in gin (`ptj.eval_options.scoring = 'first_token'`, ...)."""
  return EvalOptions(scoring, decoding, int(beam_size), float(alpha))


def check_token_ids(frozen, task_name: str, label_targets: Optional[np.ndarray] = None) -> None:
  """The pad, decoder start (models that generate), EOS and label ids and the vocabulary of task
  `task_name` fit the embedding table of `frozen` (`tasks.token_ids.check_fits`)."""
  from prompt_transfer_jax.tasks import token_ids
  token_ids.check_fits(task_name, int(frozen.config.vocab_size), int(frozen.pad_id),
                       0 if frozen.can_generate else None, label_targets)


@dataclasses.dataclass
class TaskEval:
  info: Any                 # tasks.TaskInfo
  eval_set: data_lib.EvalSet
  backbone: Any
  label_targets: Optional[np.ndarray]   # [K, T] for classification
  eos_id: int
  vocabulary: Any
  decode_lengths: tuple[int, int] = (0, 0)   # (max new tokens, min new tokens) for generation


class Evaluator:
  """Scores prompts on a fixed list of tasks; build once, call `evaluate` / `evaluate_many`.

  `prompt_chunk`: how many prompts one compiled call scores (vmap); `options`: `EvalOptions`
  (default: `eval_options()` as bound in gin).
  """

  def __init__(self, frozen, task_names: Sequence[str], lengths: Mapping[str, int],
               batch_size: int, mesh, param_shardings, split: str = 'validation',
               max_examples: Optional[int] = None, prompt_chunk: int = 8,
               options: Optional[EvalOptions] = None):
    from prompt_transfer_jax import tasks
    self.mesh = mesh
    self.batch_size = int(batch_size)
    self.prompt_chunk = int(prompt_chunk)
    if self.prompt_chunk < 1:
      raise ValueError(f'prompt_chunk must be positive, got {prompt_chunk}')
    self.lengths = dict(lengths)
    self.options = eval_options() if options is None else options
    self._param_shardings = param_shardings
    self._data_sharding = partitioning.data_sharding(mesh)
    self._replicated = partitioning.replicated(mesh)
    data_lib.check_batch_size(self.batch_size, mesh, 'the evaluation batch size')
    self._rows = data_lib.local_rows(self._data_sharding, self.batch_size)
    generate = 'beam_search' if self.options.decoding == 'beam' else 'greedy_decode'
    self.tasks: list[TaskEval] = []
    for name in task_names:
      info = tasks.get_task_info(name)
      if not info.is_classification and not hasattr(frozen.backbone, generate):
        raise ValueError(f'task {name!r} needs generation, which the '
                         f'{type(frozen.backbone).__name__} backbone does not support '
                         f'(no {generate})')
      label_targets = (tasks.label_targets(name, self.lengths['targets'])
                       if info.is_classification else None)
      check_token_ids(frozen, name, label_targets)
      backbone = frozen.for_task(label_targets)
      seqio_task = data_lib.provider(name)
      vocab = seqio_task.output_features['targets'].vocabulary
      eval_set = data_lib.eval_set(name, self.lengths, split, frozen.pad_id, max_examples)
      decode_lengths = (int(info.max_decode_length or self.lengths['targets']),
                        int(info.min_decode_length))
      self.tasks.append(TaskEval(info, eval_set, backbone, label_targets, int(vocab.eos_id),
                                 vocab, decode_lengths))
    self._fns: dict = {}

  @property
  def metric_name(self) -> str:
    names = sorted({t.info.metric for t in self.tasks})
    return names[0] if len(names) == 1 else 'mean_' + '_'.join(names)

  def _compiled(self, key, make, extra: int):
    if key not in self._fns:
      self._fns[key] = jax.jit(partitioning.constrain_activations(make(), self.mesh),
                               in_shardings=(self._param_shardings, self._replicated,
                                             self._data_sharding) + (self._replicated,) * extra,
                               out_shardings=self._replicated)
    return self._fns[key]

  def _task_fn(self, t: TaskEval):
    """(jitted `(params, prompts [C, P, E], batch, *extra) -> [C, B, ...]`, extra arguments)."""
    bb, opts = t.backbone, self.options
    if t.info.is_classification:
      first = opts.scoring == 'first_token' and hasattr(bb, 'first_token_scores')
      score = bb.first_token_scores if first else bb.score_labels
      fn = self._compiled(('score', bb, first, t.label_targets.shape), lambda: (
          lambda params, prompts, batch, labels: jax.vmap(
              lambda p: score(params, p, batch, labels))(prompts)), 1)
      return fn, (place(np.asarray(t.label_targets, np.int32), self._replicated),)
    max_len, min_len = t.decode_lengths
    eos = t.eos_id
    if opts.decoding == 'beam':
      one = lambda params, p, tokens: bb.beam_search(params, p, tokens, max_len, eos,
                                                     opts.beam_size, opts.alpha, min_len)
    else:
      one = lambda params, p, tokens: bb.greedy_decode(params, p, tokens, max_len, eos, min_len)
    fn = self._compiled(('decode', bb, opts, max_len, min_len, eos), lambda: (
        lambda params, prompts, batch: jax.vmap(
            lambda p: one(params, p, batch['encoder_input_tokens']))(prompts)), 0)
    return fn, ()

  def outputs(self, t: TaskEval, params, prompts) -> np.ndarray:
    """`[N, examples, ...]`: label scores (classification) or decoded ids, for N prompts."""
    prompts = _host_array(prompts)
    fn, extra = self._task_fn(t)
    n, c = prompts.shape[0], min(self.prompt_chunk, prompts.shape[0])
    padded = np.concatenate([prompts, np.zeros((-n % c,) + prompts.shape[1:], prompts.dtype)])
    chunks = [place(padded[i:i + c], self._replicated) for i in range(0, len(padded), c)]
    outs = []
    for batch in data_lib.padded_batches(t.eval_set.features, self.batch_size):
      size = int(batch.pop('example_mask').sum())
      placed = data_lib.to_global({k: v[self._rows] for k, v in batch.items()},
                                  self._data_sharding)
      outs.append(np.concatenate([host(fn(params, chunk, placed, *extra))
                                  for chunk in chunks])[:n, :size])
    return np.concatenate(outs, axis=1)

  def predictions(self, t: TaskEval, outputs: np.ndarray) -> list:
    """One prompt's outputs -> predictions in the form the task's metric takes."""
    if t.info.is_classification:
      return [int(i) for i in np.argmax(outputs, axis=-1)]
    postprocess = data_lib.provider(t.info.name).postprocess_fn
    out = []
    for row, ex in zip(outputs, t.eval_set.examples):
      text = t.vocabulary.decode([int(i) for i in row])
      out.append(postprocess(text, example=ex, is_target=False) if postprocess else text)
    return out

  def prediction_records(self, t: TaskEval, outputs: np.ndarray) -> list[dict]:
    """One prompt's outputs as JSON rows, one per example: `input` and `target` text,
    `prediction` (the label word, or the decoded text) and `gold` as the metric compares them;
    classification adds the chosen `label` index and `scores` of every label word, generation the
    postprocessed prediction (`scored`) the metric saw."""
    predicted = self.predictions(t, outputs)
    rows = []
    for i, ex in enumerate(t.eval_set.examples):
      row = {'index': i, 'input': self._text(t, ex, 'inputs'),
             'target': self._text(t, ex, 'targets')}
      if t.info.is_classification:
        words = list(t.info.label_words)
        row.update(prediction=words[predicted[i]], label=predicted[i],
                   gold=_jsonable(t.eval_set.golds[i]),
                   scores={w: float(s) for w, s in zip(words, outputs[i])})
      else:
        row.update(prediction=t.vocabulary.decode([int(j) for j in outputs[i]]),
                   scored=_jsonable(predicted[i]), gold=_jsonable(t.eval_set.golds[i]))
      rows.append(row)
    return rows

  @staticmethod
  def _text(t: TaskEval, example: Mapping, feature: str) -> str:
    """The example's `<feature>_pretokenized` text, else its token ids decoded."""
    text = example.get(f'{feature}_pretokenized')
    if text is None:
      text = t.vocabulary.decode([int(i) for i in np.asarray(example[feature]).ravel()])
    return text.decode('utf-8') if isinstance(text, bytes) else str(text)

  def task_results(self, t: TaskEval, params, prompts,
                   outputs: Optional[np.ndarray] = None) -> list[dict]:
    """Every metric of task `t` for each of the N prompts `[N, P, E]` (from their `outputs`
    when already computed)."""
    from prompt_transfer_jax.tasks import metrics
    metric_fn = metrics.metric_fn_for(t.info)
    if outputs is None:
      outputs = self.outputs(t, params, prompts)
    return [metric_fn(t.eval_set.golds, self.predictions(t, out)) for out in outputs]

  def _evaluate(self, params, prompts) -> tuple[list[dict], dict]:
    """(`evaluate_many`'s results, {task: outputs `[N, examples, ...]`})."""
    start = time.perf_counter()
    prompts = _host_array(prompts)
    per_task, outputs = {}, {}
    for t in self.tasks:
      outputs[t.info.name] = self.outputs(t, params, prompts)
      per_task[t.info.name] = self.task_results(t, params, prompts, outputs[t.info.name])
    seconds = time.perf_counter() - start
    out = []
    for i in range(prompts.shape[0]):
      results = {name: r[i] for name, r in per_task.items()}
      score = float(np.mean([results[t.info.name][t.info.metric] for t in self.tasks]))
      out.append({'score': score, 'metric': self.metric_name, 'tasks': results,
                  'seconds': seconds})
    return out, outputs

  def evaluate_many(self, params, prompts) -> list[dict]:
    """For each prompt of `[N, P, E]`: {'score': mean primary metric over tasks, 'metric',
    'tasks': {task: {metric: value}}, 'seconds'} (seconds of the whole call)."""
    return self._evaluate(params, prompts)[0]

  def evaluate(self, params, prompt) -> dict:
    """`evaluate_many` for one prompt `[P, E]`."""
    return self.evaluate_many(params, _host_array(prompt)[None])[0]

  def evaluate_with_predictions(self, params, prompt) -> tuple[dict, dict[str, list[dict]]]:
    """`evaluate` plus {task: `prediction_records`} from the same decoding / scoring pass."""
    results, kept = self._evaluate(params, _host_array(prompt)[None])
    return results[0], {t.info.name: self.prediction_records(t, kept[t.info.name][0])
                        for t in self.tasks}


def _jsonable(value):
  """A gold / prediction value (numpy scalars, bytes, tuples) as plain JSON types."""
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, bytes):
    return value.decode('utf-8')
  return value


def write_predictions(paths: Mapping[str, str], records: Mapping[str, Sequence[dict]]) -> None:
  """Writes each task's records to `paths[task]` as JSON lines (one row per example), each file
  all or nothing."""
  for task, rows in records.items():
    with atomic_write(paths[task]) as f:
      for row in rows:
        f.write(json.dumps(row, allow_nan=False) + '\n')


def _host_array(x) -> np.ndarray:
  """A (replicated) prompt array as float32 numpy, on any process."""
  return np.asarray(host(x) if isinstance(x, jax.Array) else x, np.float32)


@gin.configurable(module='ptj')
def evaluate(model=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
             prompt_file: str = gin.REQUIRED, prompt_length: int = 100, batch_size: int = 32,
             split: str = 'validation', max_examples: Optional[int] = None,
             eval_tasks: Optional[Sequence[str]] = None, model_parallel: int = 1,
             output_file: Optional[str] = None, predictions_dir: Optional[str] = None) -> dict:
  """Evaluates the prompt in `prompt_file` (`[PROMPT_LENGTH, E]` .npy) on a task or mixture.

  Returns (and, with `output_file`, writes as JSON) `{'score', 'metric', 'tasks', ...}`. With
  `predictions_dir`, also writes `<predictions_dir>/<task>.jsonl` for every task: one row per
  example (`prediction_records`), and names the files under `predictions` in the result.
  """
  from prompt_transfer_jax.trainer import prompt_init
  require(MODEL=model, MIXTURE_OR_TASK_NAME=mixture_or_task_name,
          TASK_FEATURE_LENGTHS=task_feature_lengths, PROMPT_FILE=prompt_file)
  if predictions_dir and os.path.exists(predictions_dir) and not os.path.isdir(predictions_dir):
    raise ValueError(f'EVAL_PREDICTIONS_DIR {predictions_dir} exists and is not a directory')
  prompt = prompt_init.load_checked(prompt_file, int(prompt_length), model.embed_dim)
  names = list(eval_tasks or data_lib.task_names_of(mixture_or_task_name))
  mesh, shardings, params = model.on_mesh(model_parallel)
  evaluator = Evaluator(model, names, task_feature_lengths, batch_size, mesh, shardings,
                        split=split, max_examples=max_examples)
  placed = place(prompt, partitioning.replicated(mesh))
  if predictions_dir:
    result, records = evaluator.evaluate_with_predictions(params, placed)
    result['predictions'] = {task: os.path.join(predictions_dir, f'{task}.jsonl')
                             for task in records}
    if jax.process_index() == 0:
      write_predictions(result['predictions'], records)
  else:
    result = evaluator.evaluate(params, placed)
  result.update(prompt_file=prompt_file, split=split,
                num_examples={t.info.name: len(t.eval_set) for t in evaluator.tasks})
  if output_file and jax.process_index() == 0:
    write_json(output_file, result)
  return result
