"""A prompt bank: a directory of trained prompts with metadata, ranked for a new task by an indicator.

Layout: `BANK/index.json` (`{"prompts": [entry, ...]}`), `BANK/prompts/NAME.npy` and, when known,
`BANK/activations/NAME.npy` (`[layers, d_ff]` FFN activations of the prompt, with the extraction
settings in the entry so that only comparable activations are compared by ON).
`short_run_prompt` makes a new task's query prompt with a short prompt-tuning run.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Sequence

import numpy as np

from prompt_transfer_jax.analysis import indicators as ind
from prompt_transfer_jax.files import read_json, read_prompt, save_npy, write_json
from prompt_transfer_jax.analysis.recommend import rank

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*$')


@dataclasses.dataclass
class BankEntry:
  name: str
  task: str
  backbone: str
  shape: list
  type: Optional[str] = None
  score: Optional[float] = None
  steps: Optional[int] = None
  activation_meta: Optional[dict] = None  # {'spec': ..., 'layers': [...]} when activations are stored

  @property
  def prompt_file(self) -> str:
    return os.path.join('prompts', f'{self.name}.npy')

  @property
  def activation_file(self) -> Optional[str]:
    return os.path.join('activations', f'{self.name}.npy') if self.activation_meta else None


@dataclasses.dataclass
class Recommendation:
  entry: BankEntry
  similarity: float


class PromptBank:
  """Entries of `root/index.json`; every change rewrites the index atomically."""

  def __init__(self, root: str, create: bool = False):
    self.root = root
    index = os.path.join(root, 'index.json')
    if os.path.exists(index):
      data = read_json(index, 'prompt bank index')
      try:
        self.entries = [BankEntry(**e) for e in data['prompts']]
      except (KeyError, TypeError) as e:
        raise ValueError(f'{index}: not a prompt bank index ({e})') from None
    elif create:
      self.entries = []
    else:
      raise FileNotFoundError(f'no prompt bank at {root} (missing index.json); add a prompt first')

  def _save(self) -> None:
    write_json(os.path.join(self.root, 'index.json'),
               {'prompts': [dataclasses.asdict(e) for e in self.entries]})

  def get(self, name: str) -> BankEntry:
    for e in self.entries:
      if e.name == name:
        return e
    raise KeyError(f'no prompt named {name!r} in bank {self.root}')

  def add(self, name: str, prompt, task: str, backbone: str, type: Optional[str] = None,
          score: Optional[float] = None, steps: Optional[int] = None, activations=None,
          activation_meta: Optional[dict] = None, overwrite: bool = False) -> BankEntry:
    """Stores `prompt` [P, E] (and optional activations [layers, d_ff]) under `name`.

    Args:
      name: entry name, also its file name (letters, digits and `_.+-`).
      prompt: the trained prompt `[P, E]`.
      task: the task it was trained on (excluded when recommending for that task).
      backbone: the model it was trained on; only prompts of one backbone are compared.
      type: task type (SA, NLI, ...), for display.
      score: its prompt-tuning score on `task`, for display.
      steps: its training steps, for display.
      activations: its FFN activations `[layers, d_ff]` (enables ranking by ON).
      activation_meta: their extraction settings (`{'spec': ..., 'layers': [...]}`); only
        activations with equal settings are compared.
      overwrite: replace an entry of the same name instead of failing.
    """
    if not _NAME.match(name):
      raise ValueError(f'bank entry name {name!r} must be letters, digits and _.+- (a file name)')
    prompt = np.asarray(prompt, np.float32)
    if prompt.ndim != 2:
      raise ValueError(f'prompt for {name!r} must be 2-D [P, E], got shape {prompt.shape}')
    if activations is not None:
      activations = np.asarray(activations, np.float32)
      if activations.ndim != 2:
        raise ValueError(f'activations for {name!r} must be [layers, d_ff], got shape {activations.shape}')
    if any(e.name == name for e in self.entries):
      if not overwrite:
        raise ValueError(f'bank {self.root} already has a prompt named {name!r} (use overwrite)')
      self.entries = [e for e in self.entries if e.name != name]
    entry = BankEntry(name, task, backbone, list(prompt.shape), type, score, steps,
                      (activation_meta or {}) if activations is not None else None)
    save_npy(os.path.join(self.root, entry.prompt_file), prompt)
    if activations is not None:
      save_npy(os.path.join(self.root, entry.activation_file), activations)
    self.entries.append(entry)
    self._save()
    return entry

  def prompt(self, entry: BankEntry) -> np.ndarray:
    return read_prompt(os.path.join(self.root, entry.prompt_file))

  def activations(self, entry: BankEntry) -> Optional[np.ndarray]:
    if entry.activation_file is None:
      return None
    return np.load(os.path.join(self.root, entry.activation_file), allow_pickle=False)

  def recommend(self, by: str = 'C_average', prompt=None, activations=None,
                activation_meta: Optional[dict] = None, backbone: Optional[str] = None,
                exclude_task: Optional[str] = None) -> list[Recommendation]:
    """Bank prompts ranked by `by` (an indicator name) against the new task's prompt/activations.

    Candidates: entries of `backbone` (all if None), not of `exclude_task`, of the same prompt
    shape (embedding indicators) or with activations from the same extraction settings (ON).
    """
    if by not in ind.INDICATORS:
      raise ValueError(f'unknown indicator {by!r}; choose one of {", ".join(ind.INDICATORS)}')
    pool = [e for e in self.entries
            if (backbone is None or e.backbone == backbone) and e.task != exclude_task]
    if by == 'ON':
      if activations is None:
        raise ValueError("ranking by ON needs the new task's activations")
      query = np.asarray(activations, np.float32)
      pool = [e for e in pool
              if e.activation_meta is not None and _comparable(e.activation_meta, activation_meta)]
      stack = [self.activations(e) for e in pool]
      keep = [i for i, a in enumerate(stack) if a.shape == query.shape]
      pool, stack = [pool[i] for i in keep], [stack[i] for i in keep]
      sims = ind.overlap_of_activated_neurons(query[None], others=np.stack(stack))[0] if pool else []
    else:
      if prompt is None:
        raise ValueError(f"ranking by {by} needs the new task's prompt")
      query = np.asarray(prompt, np.float32)
      pool = [e for e in pool if tuple(e.shape) == query.shape]
      stack = [self.prompt(e) for e in pool]
      sims = ind.embedding_similarity(by, query[None], np.stack(stack))[0] if pool else []
    bad = [e.name for e, v in zip(pool, sims) if not np.isfinite(v)]
    if bad:     # never rank (nor write an init prompt from) NaN/Inf scores
      raise ValueError(f'{by} scores of bank prompt(s) {", ".join(bad[:5])} are not finite '
                       f'(NaN/Inf); check their {"activations" if by == "ON" else "prompts"}')
    return [Recommendation(pool[i], float(sims[i])) for i in rank(sims)]


def short_run_prompt(task: str, steps: int, gin_files: Sequence[str], bindings: Sequence[str] = (),
                     model_dir: Optional[str] = None) -> np.ndarray:
  """The new task's query prompt: `steps` steps of prompt tuning on `task`, its final prompt.

  Args:
    task: the new task (MIXTURE_OR_TASK_NAME of the run).
    steps: training steps (also the evaluation period: one evaluation at the end).
    gin_files: the model's gin files (e.g. `models/t5_1_1_base_prompt.gin`);
      `runs/prompt_train.gin` is added.
    bindings: gin bindings ('NAME = VALUE'), applied after the run's own.
    model_dir: where the run goes (a run already there is resumed); default a temporary
      directory, removed afterwards.
  """
  import shutil
  import tempfile

  from prompt_transfer_jax.trainer import runs
  if steps < 1:
    raise ValueError(f'--short_run needs a positive number of steps, got {steps}')
  if not gin_files:
    raise ValueError('a short prompt-tuning run needs the model gin file(s) (--gin_file)')
  temporary = tempfile.mkdtemp(prefix='ptj_short_run_') if model_dir is None else None
  run_dir = os.path.join(temporary, 'run') if temporary else model_dir
  run_bindings = [f'MODEL_DIR = {run_dir!r}', f'MIXTURE_OR_TASK_NAME = {task!r}',
                  f'TRAIN_STEPS = {steps}', f'EVAL_PERIOD = {steps}', *bindings]
  try:
    summary = runs.train_run([*gin_files, 'runs/prompt_train.gin'], run_bindings)
    return np.asarray(summary['final_prompt'], np.float32)
  finally:
    if temporary:
      shutil.rmtree(temporary, ignore_errors=True)


def _comparable(meta: dict, query_meta: Optional[dict]) -> bool:
  """Same extraction settings (spec and layers), when both sides record them."""
  if not query_meta:
    return True
  return all(meta.get(k) == query_meta.get(k) for k in ('spec', 'layers') if k in query_meta)

