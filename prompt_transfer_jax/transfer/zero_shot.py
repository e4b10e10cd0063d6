"""Zero-shot cross-task transfer: N source prompts scored on M target tasks, nothing trained.

Each source prompt is evaluated on every target's split with the TARGET's template, verbalizer
and metric (paper-spec section 3): classification targets rank the target's label words, QA /
summarization targets decode greedily and go through the target's postprocessor and metric.
The data, label targets and metrics are the trainer's `Evaluator`'s, so column s of the matrix
is what `Evaluator.evaluate` gives for prompt s. Per target task one jitted function scores a
chunk of C prompts on a batch of examples (`jax.vmap` over the prompt); the last prompt chunk
is padded with zero prompts and the last batch with masked rows, so every target compiles once
and every example counts.

Output (`ZeroShotMatrix.to_json`), rows = targets, columns = sources:
`{"tasks": targets, "sources": [...], "matrix": [[...]], "metrics": {task: metric},
"num_examples": {...}, "relative": [[...]] | null, "baseline": {...} | null}`. When the sources
are the targets (same order) it is the file `analysis.spearman.load_transfer_matrix` reads.
`relative` is the score divided by the target's own prompt's score (the diagonal), in percent.
The random-prompt baseline is one more column, kept apart from the matrix: `uniform` is the
original code's `torch.rand` (U[0, 1)), `zeros` the stored RoBERTa-Large "random" prompt.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.files import write_json
from prompt_transfer_jax.trainer import data as data_lib
from prompt_transfer_jax.trainer import evaluator as evaluator_lib
from prompt_transfer_jax.trainer.placement import host, place

BASELINES = ('uniform', 'zeros')


def baseline_prompt(kind: str, length: int, embed_dim: int, seed: int = 0) -> np.ndarray:
  """The random-prompt baseline: `uniform` U[0, 1) (torch.rand in the 1.0 code) or `zeros`."""
  if kind == 'uniform':
    return np.random.default_rng(seed).random((length, embed_dim)).astype(np.float32)
  if kind == 'zeros':
    return np.zeros((length, embed_dim), np.float32)
  raise ValueError(f'unknown baseline {kind!r}; choose one of {", ".join(BASELINES)}')


@dataclasses.dataclass
class ZeroShotMatrix:
  targets: list
  sources: list
  matrix: np.ndarray            # [targets, sources], the target's primary metric
  metrics: dict                 # target -> primary metric name
  num_examples: dict            # target -> number of evaluated examples
  details: dict                 # target -> source -> every metric value of that target
  baseline: Optional[dict] = None   # {'kind', 'seed', 'scores': [targets], 'details'}
  seconds: float = 0.0

  def own_scores(self) -> Optional[np.ndarray]:
    """Each target's score with its own prompt (None unless every target is a source)."""
    if not set(self.targets) <= set(self.sources):
      return None
    return np.array([self.matrix[i, self.sources.index(t)] for i, t in enumerate(self.targets)])

  def relative(self) -> Optional[np.ndarray]:
    """Percent of the target's own-prompt score; NaN where that score is 0."""
    own = self.own_scores()
    if own is None:
      return None
    return np.divide(100.0 * self.matrix, own[:, None], out=np.full(self.matrix.shape, np.nan),
                     where=own[:, None] != 0)

  def to_json(self) -> dict:
    rel = self.relative()
    out = {'tasks': list(self.targets), 'sources': list(self.sources),
           'matrix': self.matrix.tolist(), 'metrics': self.metrics,
           'num_examples': self.num_examples,
           'relative': None if rel is None else _nan_to_none(rel),
           'baseline': self.baseline, 'details': self.details, 'seconds': self.seconds}
    if self.baseline is not None and rel is not None:
      own = self.own_scores()
      out['baseline'] = dict(self.baseline, relative=_nan_to_none(
          np.divide(100.0 * np.asarray(self.baseline['scores']), own,
                    out=np.full(own.shape, np.nan), where=own != 0)))
    return out

  def save(self, path: str) -> None:
    write_json(path, self.to_json())


def _nan_to_none(x: np.ndarray):
  return [_nan_to_none(r) for r in x] if x.ndim > 1 else [
      None if not np.isfinite(v) else float(v) for v in x]


def _score_fn(backbone):
  """`(params, prompts [C, P, E], batch, labels [K, T]) -> [C, B, K]` label log-likelihoods."""
  def fn(params, prompts, batch, labels):
    return jax.vmap(lambda p: backbone.score_labels(params, p, batch, labels))(prompts)
  return fn


def _decode_fn(backbone, length: int, eos_id: int):
  """`(params, prompts [C, P, E], batch) -> [C, B, length]` greedy ids."""
  def fn(params, prompts, batch):
    return jax.vmap(lambda p: backbone.greedy_decode(params, p, batch['encoder_input_tokens'],
                                                     length, eos_id))(prompts)
  return fn


class _Runner:
  """Jitted, chunked evaluation of many prompts on one target task at a time."""

  def __init__(self, model, mesh, batch_size: int, prompt_chunk: int):
    self.batch_size = batch_size
    self.prompt_chunk = prompt_chunk
    self.param_shardings = model.shardings(mesh)
    self.params = place(model.params, self.param_shardings)
    self.replicated = NamedSharding(mesh, PartitionSpec())
    self.data_sharding = partitioning.data_sharding(mesh)
    self.rows = data_lib.local_rows(self.data_sharding, batch_size)
    self._fns: dict = {}

  def _compiled(self, key, make, extra: int):
    """One jitted function per key: (backbone, label shape) or (backbone, length, eos)."""
    if key not in self._fns:
      self._fns[key] = jax.jit(make(), in_shardings=(self.param_shardings, self.replicated,
                                                     self.data_sharding)
                               + (self.replicated,) * extra, out_shardings=self.replicated)
    return self._fns[key]

  def outputs(self, task: evaluator_lib.TaskEval, prompts: np.ndarray,
              lengths: Mapping[str, int]) -> np.ndarray:
    """`[N, examples, ...]`: label scores (classification) or decoded ids, for all N prompts."""
    if task.info.is_classification:
      fn = self._compiled(('score', id(task.backbone), task.label_targets.shape),
                          lambda: _score_fn(task.backbone), 1)
      extra = (place(np.asarray(task.label_targets, np.int32), self.replicated),)
    else:
      length = int(lengths['targets'])
      fn = self._compiled(('decode', id(task.backbone), length, task.eos_id),
                          lambda: _decode_fn(task.backbone, length, task.eos_id), 0)
      extra = ()
    n, c = prompts.shape[0], self.prompt_chunk
    padded = np.concatenate([prompts, np.zeros((-n % c,) + prompts.shape[1:], np.float32)])
    chunks = [place(padded[i:i + c], self.replicated) for i in range(0, len(padded), c)]
    outs = []
    for batch in data_lib.padded_batches(task.eval_set.features, self.batch_size):
      size = int(batch.pop('example_mask').sum())
      placed = data_lib.to_global({k: v[self.rows] for k, v in batch.items()}, self.data_sharding)
      outs.append(np.concatenate([host(fn(self.params, chunk, placed, *extra))
                                  for chunk in chunks])[:n, :size])
    return np.concatenate(outs, axis=1)


def _predictions(task: evaluator_lib.TaskEval, outputs: np.ndarray) -> list:
  """One prompt's outputs -> predictions in the form the target's metric takes."""
  if task.info.is_classification:
    return [int(i) for i in np.argmax(outputs, axis=-1)]
  postprocess = data_lib.provider(task.info.name).postprocess_fn
  out = []
  for row, ex in zip(outputs, task.eval_set.examples):
    text = task.vocabulary.decode([int(i) for i in row])
    out.append(postprocess(text, example=ex, is_target=False) if postprocess else text)
  return out


def _check_prompts(prompts, sources: Sequence[str], embed_dim: int) -> np.ndarray:
  p = np.asarray(prompts, np.float32)
  if p.ndim != 3 or p.shape[-1] != embed_dim:
    raise ValueError(f'prompts must be [N, P, {embed_dim}] (model embedding size {embed_dim}), '
                     f'got shape {p.shape}')
  if len(sources) != p.shape[0]:
    raise ValueError(f'{len(sources)} source names for {p.shape[0]} prompts')
  if len(set(sources)) != len(sources):
    raise ValueError(f'duplicate source names: {list(sources)}')
  if not np.all(np.isfinite(p)):
    raise ValueError('prompts contain NaN or infinite values')
  return p


def default_lengths(targets: Sequence[str]) -> dict:
  """Each target's suggested input / target lengths (`TaskInfo`), the largest over targets."""
  from prompt_transfer_jax import tasks
  infos = [tasks.get_task_info(t) for t in targets]
  return {'inputs': max(i.input_length for i in infos),
          'targets': max(i.target_length for i in infos)}


def zero_shot_matrix(model, prompts, sources: Sequence[str], targets: Sequence[str],
                     lengths: Optional[Mapping[str, int]] = None, batch_size: int = 32,
                     prompt_chunk: int = 8, split: str = 'validation',
                     max_examples: Optional[int] = None, baseline: Optional[str] = None,
                     baseline_seed: int = 0, model_parallel: int = 1,
                     progress: bool = False) -> ZeroShotMatrix:
  """Scores `prompts` `[N, P, E]` (named `sources`) on every task of `targets`.

  `model` is the frozen backbone (`trainer.frozen_model.FrozenModel`) the prompts belong to.
  `max_examples` caps each target's examples (default: all of the split). With `baseline`
  (`uniform` / `zeros`) a random prompt of the same shape is scored too.
  """
  sources, targets = list(sources), list(targets)
  prompts = _check_prompts(prompts, sources, model.embed_dim)
  if not targets:
    raise ValueError('no target tasks')
  if batch_size < 1 or prompt_chunk < 1:
    raise ValueError(f'batch_size and prompt_chunk must be positive, got {batch_size}, '
                     f'{prompt_chunk}')
  start = time.perf_counter()
  lengths = dict(lengths or default_lengths(targets))
  mesh = partitioning.make_mesh(model_parallel)
  runner = _Runner(model, mesh, batch_size, min(prompt_chunk, len(prompts) + bool(baseline)))
  evaluator = evaluator_lib.Evaluator(model, targets, lengths, batch_size, mesh,
                                      runner.param_shardings, split=split,
                                      max_examples=max_examples)
  everything = prompts
  if baseline:
    base = baseline_prompt(baseline, prompts.shape[1], prompts.shape[2], baseline_seed)
    everything = np.concatenate([prompts, base[None]])
  from prompt_transfer_jax.tasks import metrics as metrics_lib
  matrix = np.zeros((len(targets), len(sources)))
  details, base_scores, base_details = {}, [], {}
  tasks_iter = evaluator.tasks
  if progress:
    from tqdm import tqdm
    tasks_iter = tqdm(tasks_iter, unit='target', desc='zero-shot')
  for i, task in enumerate(tasks_iter):
    outputs = runner.outputs(task, everything, lengths)
    metric_fn = metrics_lib.metric_fn_for(task.info)
    results = [metric_fn(task.eval_set.golds, _predictions(task, out)) for out in outputs]
    matrix[i] = [r[task.info.metric] for r in results[:len(sources)]]
    details[task.info.name] = {s: r for s, r in zip(sources, results)}
    if baseline:
      base_scores.append(results[-1][task.info.metric])
      base_details[task.info.name] = results[-1]
  base_json = None
  if baseline:
    base_json = {'kind': baseline, 'seed': baseline_seed, 'scores': base_scores,
                 'details': base_details}
  return ZeroShotMatrix(
      targets, sources, matrix, {t.info.name: t.info.metric for t in evaluator.tasks},
      {t.info.name: len(t.eval_set) for t in evaluator.tasks}, details, base_json,
      time.perf_counter() - start)
