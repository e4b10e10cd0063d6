"""Zero-shot cross-task transfer: N source prompts scored on M target tasks, nothing trained.

Each source prompt is evaluated on every target's split with the TARGET's template, verbalizer
and metric (paper-spec section 3), scored and decoded as the evaluation options say
(`ptj.eval_options`). The matrix IS the trainer's `Evaluator` run on all N prompts at once
(`Evaluator.task_results`, chunks of C prompts vmapped per compiled call), so column s is what
`Evaluator.evaluate` gives for prompt s.

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

import numpy as np

from prompt_transfer_jax.files import write_json
from prompt_transfer_jax.trainer import evaluator as evaluator_lib

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
  mesh, shardings, params = model.on_mesh(model_parallel)
  evaluator = evaluator_lib.Evaluator(model, targets, lengths, batch_size, mesh, shardings,
                                      split=split, max_examples=max_examples,
                                      prompt_chunk=min(prompt_chunk, len(prompts) + bool(baseline)))
  everything = prompts
  if baseline:
    base = baseline_prompt(baseline, prompts.shape[1], prompts.shape[2], baseline_seed)
    everything = np.concatenate([prompts, base[None]])
  matrix = np.zeros((len(targets), len(sources)))
  details, base_scores, base_details = {}, [], {}
  tasks_iter = evaluator.tasks
  if progress:
    from tqdm import tqdm
    tasks_iter = tqdm(tasks_iter, unit='target', desc='zero-shot')
  for i, task in enumerate(tasks_iter):
    results = evaluator.task_results(task, params, everything)
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
