"""The study's cross-model stage (paper section 4): one backbone's prompts through a projector into
another backbone of the same study, zero-shot and as initialization (TPT_MODEL).

A `ptj.study_cross_model` (listed in `ptj.study.cross_model`) runs after every backbone's stages,
so the source's prompts (`OUT/SOURCE/prompts/`) and the target's own prompts and PT runs
(`OUT/TARGET/prompts/`, `OUT/TARGET/runs/TASK/`) exist. Its targets are the target backbone's
tasks that have a source prompt of the same task key. Into `OUT/cross_model/NAME/`:

1. projector: `transfer.cross_model.train_projector` on the target backbone's recipe (its gin
   files and bindings) + `runs/projector_{task_tuning,distance}.gin` -> `projector/` (resumes
   like `ptj train`; the best projector is `projector/best_projector`), its summary ->
   `projector.json`;
2. zero-shot: Proj(P_src_t) -> `projected/TASK.npy`, every projected prompt and a random prompt
   on every target (`transfer.project_cli.cross_model_zero_shot`), raw and relative to the
   target's own prompt (its score in the target's zero-shot matrix, same examples) ->
   `cross_model.json`;
3. TPT_MODEL (with `tpt`): the target prompt-tuned on t from Proj(P_src_t) with its TPT recipe
   (the backbone's `tpt_gin_files` / `tpt_bindings`, as TPT_TASK: a projected prompt's head start
   is lost at a PT learning rate on the synthetic tasks) -> `tpt/TASK/`, speedups over the target's existing PT run of t
   (`transfer.speedup.compare_runs`; vanilla PT is not run again) -> `tpt/TASK.json`;
4. table: the cross-model table beside the paper's values (`paper_values.cross_model_values`)
   -> `result.json`, `tables/`.

Each step is skipped when its artifact exists; process 0 writes every artifact atomically.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import gin
import numpy as np

from prompt_transfer_jax.files import read_json, save_prompt, write_json
from prompt_transfer_jax.study import stages

METHODS = ('task_tuning', 'distance')
PROJECTOR_GIN = {'task_tuning': 'runs/projector_task_tuning.gin',
                 'distance': 'runs/projector_distance.gin'}
SUMMARY_KEYS = ('method', 'train_tasks', 'metric', 'best_step', 'best_score', 'final_step',
                'projector_dir', 'history')


@dataclasses.dataclass(frozen=True)
class CrossModel:
  """A projector from backbone `source` to backbone `target` of the same study."""
  name: str
  source: str
  target: str
  train_tasks: tuple                  # the target backbone's tasks the projector trains on
  method: str = 'task_tuning'
  hidden_dim: int = 768
  steps: Optional[int] = None         # None: the projector recipe's TRAIN_STEPS
  eval_period: Optional[int] = None
  bindings: tuple = ()                # more bindings of the projector run
  tpt: bool = False
  tpt_gin_files: Optional[tuple] = None   # None: the target backbone's TPT recipe, as TPT_TASK
  tpt_bindings: Optional[tuple] = None
  paper: Optional[str] = None         # `paper_values.CROSS_MODEL` key

  def check(self, backbones: Sequence[stages.Backbone]) -> None:
    """One-line errors for a projector that the study's backbones cannot feed."""
    where = f'study cross-model {self.name!r}'
    if self.method not in METHODS:
      raise ValueError(f'{where}: unknown method {self.method!r}; choose one of '
                       f'{", ".join(METHODS)}')
    if not self.name or os.sep in self.name:
      raise ValueError(f'{where}: the name must be a plain directory name')
    names = [b.name for b in backbones]
    for role, name in (('source', self.source), ('target', self.target)):
      if name not in names:
        raise ValueError(f'{where}: {role} {name!r} is not a study backbone (have {names})')
    if self.source == self.target:
      raise ValueError(f'{where}: source and target are the same backbone {self.source!r}')
    source, target = self._pair(backbones)
    if not self.train_tasks:
      raise ValueError(f'{where}: train_tasks is empty')
    targets = target_tasks(source, target)
    for task in self.train_tasks:
      if task not in targets:
        raise ValueError(f'{where}: train task {task!r} is not a task of {target.name!r} with a '
                         f'{source.name!r} task of the same key (have {targets})')
    if self.paper is not None:
      from prompt_transfer_jax.study.paper_values import cross_model_values
      cross_model_values(self.paper)

  def _pair(self, backbones) -> tuple[stages.Backbone, stages.Backbone]:
    by_name = {b.name: b for b in backbones}
    return by_name[self.source], by_name[self.target]

  def stage_count(self, backbones) -> int:
    return 3 + (len(target_tasks(*self._pair(backbones))) if self.tpt else 0)

  def run(self, config: stages.Study, progress: stages.Progress) -> dict:
    """Every step into `OUT/cross_model/NAME/`; returns its `result.json` content."""
    return _run(self, config, progress)

  def summary(self, record: dict) -> str:
    return summary(record)


@gin.configurable(module='ptj')
def study_cross_model(source: str = gin.REQUIRED, target: str = gin.REQUIRED,
                      train_tasks: Sequence[str] = gin.REQUIRED, method: str = 'task_tuning',
                      name: Optional[str] = None, hidden_dim: int = 768,
                      steps: Optional[int] = None, eval_period: Optional[int] = None,
                      bindings: Sequence[str] = (), tpt: bool = False,
                      tpt_gin_files: Optional[Sequence[str]] = None,
                      tpt_bindings: Optional[Sequence[str]] = None,
                      paper: Optional[str] = None) -> CrossModel:
  """A cross-model stage (see `CrossModel`); `name` defaults to SOURCE_to_TARGET_METHOD."""
  if isinstance(train_tasks, str):
    train_tasks = [train_tasks]
  return CrossModel(name or f'{source}_to_{target}_{method}', source, target, tuple(train_tasks),
                    method, hidden_dim, steps, eval_period, tuple(bindings), tpt,
                    None if tpt_gin_files is None else tuple(tpt_gin_files),
                    None if tpt_bindings is None else tuple(tpt_bindings), paper)


def target_tasks(source: stages.Backbone, target: stages.Backbone) -> list[str]:
  """The target's tasks that have a source task of the same key (the target's order)."""
  from prompt_transfer_jax import tasks
  keys = {tasks.get_task_info(t).key for t in source.tasks}
  return [t for t in target.tasks if tasks.get_task_info(t).key in keys]


def own_scores(transfer_path: str, targets: Sequence[str]) -> list:
  """Each target's score with its own prompt, from a backbone's zero-shot matrix."""
  zs = read_json(transfer_path, 'zero-shot matrix')
  return [zs['matrix'][zs['tasks'].index(t)][zs['sources'].index(t)] for t in targets]


def _run(xm: CrossModel, config: stages.Study, progress: stages.Progress) -> dict:
  from prompt_transfer_jax import tasks as tasks_lib
  source, target = xm._pair(config.backbones)
  out = os.path.join(config.out_dir, 'cross_model', xm.name)
  source_prompts = os.path.join(config.out_dir, source.name, 'prompts')
  target_prompts = os.path.join(config.out_dir, target.name, 'prompts')
  projector_run = os.path.join(out, 'projector')
  projector_dir = os.path.join(projector_run, 'best_projector')
  projected = lambda t: os.path.join(out, 'projected', f'{t}.npy')
  targets = target_tasks(source, target)
  label = f'cross-model {xm.name}'
  if target.synth_tokenizer:
    from prompt_transfer_jax.tasks import synth_roberta
    synth_roberta.use(os.path.join(config.out_dir, 'synth_tokenizer'))
  os.makedirs(out, exist_ok=True)

  projector_path = os.path.join(out, 'projector.json')

  def projector_stage():
    from prompt_transfer_jax.trainer import runs
    from prompt_transfer_jax.transfer import cross_model
    bindings = list(target.bindings) + stages._checkpoint_bindings(target) + (
        stages._parallel_bindings(target, 'ptj.train_projector')) + [
        f"MODEL_DIR = '{projector_run}'", f'TRAIN_TASKS = {list(xm.train_tasks)}',
        f"SOURCE_PROMPT_DIR = '{source_prompts}'", f"TARGET_PROMPT_DIR = '{target_prompts}'",
        f"SOURCE_MODEL = '{source.name}'", f'TASK_FEATURE_LENGTHS = {stages._lengths(target)}',
        f'HIDDEN_DIM = {xm.hidden_dim}'] + [
        f'{name} = {value}' for name, value in (('TRAIN_STEPS', xm.steps),
                                                ('EVAL_PERIOD', xm.eval_period))
        if value is not None] + list(xm.bindings)
    result = runs.run_gin(cross_model.train_projector,
                          list(target.gin_files) + list(target.train_gin_files)
                          + [PROJECTOR_GIN[xm.method]], bindings)
    if stages._is_writer():
      write_json(projector_path, {k: result[k] for k in SUMMARY_KEYS})
    stages._sync(f'projector {xm.name}')
    return f'best {result["metric"]} {result["best_score"]:.4g} at step {result["best_step"]}'
  progress.step(f'{label}: projector', projector_stage, os.path.exists(projector_path))
  projector = read_json(projector_path, 'projector summary')

  zero_shot_path = os.path.join(out, 'cross_model.json')

  def zero_shot_stage():
    from prompt_transfer_jax.transfer import project_cli
    model = stages._model(target)
    columns, prompts = project_cli.project_task_prompts(model, [projector_dir], source_prompts,
                                                        targets)
    # The target's own prompts were scored on the same examples by its zero-shot stage: the
    # relative scores divide by those rather than scoring them again.
    result = project_cli.cross_model_zero_shot(
        model, [projector_dir], source_prompts, targets, None, stages._lengths(target),
        projected=(columns, prompts), batch_size=config.zero_shot_batch_size,
        max_examples=config.max_examples, baseline=config.baseline,
        model_parallel=target.model_parallel)
    result['own'] = own_scores(os.path.join(config.out_dir, target.name, 'transfer.json'), targets)
    result['relative'] = [[None if not own else 100.0 * v / own for v in row]
                          for row, own in zip(result['scores'], result['own'])]
    if stages._is_writer():
      for t, p in zip(targets, prompts[0]):
        save_prompt(projected(t), p)
      write_json(zero_shot_path, result)
    stages._sync(f'cross-model zero-shot {xm.name}')
    return ', '.join(f'{t} {s[0]:.1f}' for t, s in zip(targets, result['scores']))
  progress.step(f'{label}: zero-shot', zero_shot_stage, os.path.exists(zero_shot_path))
  zero_shot = read_json(zero_shot_path, 'cross-model zero-shot')

  tpt = {}
  if xm.tpt:
    from prompt_transfer_jax.transfer import speedup
    for task in targets:
      result_path = os.path.join(out, 'tpt', f'{task}.json')
      pt_dir = os.path.join(config.out_dir, target.name, 'runs', task)

      def tpt_stage(task=task, result_path=result_path, pt_dir=pt_dir):
        directory = os.path.join(out, 'tpt', task)
        cmp = stages.tpt_run(config, target, task, directory,
                             target.tpt_gin_files if xm.tpt_gin_files is None else xm.tpt_gin_files,
                             target.tpt_bindings if xm.tpt_bindings is None else xm.tpt_bindings,
                             projected(task), speedup.load_history(pt_dir), result_path,
                             {'pt_dir': pt_dir, 'tpt_dir': directory,
                              'prompt_file': projected(task)})
        return (f'best {cmp["transfer_best"]:.1f} vs PT {cmp["baseline_best"]:.1f}, convergence '
                f'{stages._x(cmp["convergence"]["steps_speedup"])}')
      progress.step(f'{label}: TPT_MODEL {task}', tpt_stage, os.path.exists(result_path))
      tpt[task] = read_json(result_path, 'TPT_MODEL result')

  result_path = os.path.join(out, 'result.json')

  def table_stage():
    matrix = zero_shot['matrix']
    infos = {t: tasks_lib.get_task_info(t) for t in targets}
    base = (matrix.get('baseline') or {}).get('scores')
    record = {
        'kind': 'cross_model', 'name': xm.name, 'source': source.name, 'target': target.name,
        'method': xm.method, 'train_tasks': list(xm.train_tasks), 'paper': xm.paper,
        'projector': {k: projector[k] for k in SUMMARY_KEYS if k != 'history'},
        'targets': targets, 'keys': {t: i.key for t, i in infos.items()},
        'types': {t: i.task_type for t, i in infos.items()},
        'chance': stages.chance_scores(targets),
        'own': dict(zip(targets, zero_shot['own'])),
        'random': None if base is None else dict(zip(targets, base)),
        'zero_shot': {t: row[0] for t, row in zip(targets, zero_shot['scores'])},
        'relative': {t: zero_shot['relative'][i][0] for i, t in enumerate(targets)},
    }
    if tpt:
      record['tpt'] = tpt
    if stages._is_writer():
      stages.write_tables(record, os.path.join(out, 'tables'), tables(record),
                          f'# {label} ({source.name} -> {target.name}): reproduction'
                          + (f' vs the paper ({xm.paper})' if xm.paper else ''))
      write_json(result_path, record)
    stages._sync(f'cross-model table {xm.name}')
  progress.step(f'{label}: table', table_stage, os.path.exists(result_path))
  return read_json(result_path, 'cross-model result')


def _above(record: dict, task: str, margin: float = 1.0) -> Optional[bool]:
  """Whether Proj(P_src_t) beats chance on `task` by more than `margin` points (None: unknown)."""
  chance = record['chance'].get(task)
  return None if chance is None else record['zero_shot'][task] > chance + margin


def tables(record: dict) -> dict[str, tuple[list, list]]:
  """The cross-model table (and TPT_MODEL's when run): reproduction beside the paper's values."""
  from prompt_transfer_jax.study.paper_values import cross_model_values
  paper = cross_model_values(record.get('paper'))
  keys = record['keys']
  train_keys = sorted({keys.get(t, t) for t in record['train_tasks']})
  paper_zs = paper.get('zero_shot', {}).get(f'{record["method"]}:{"+".join(train_keys)}', {})
  paper_tpt = paper.get('tpt_model', {}).get('+'.join(train_keys), {})
  cell = stages._cell
  random = record.get('random') or {}
  rows = []
  for t in record['targets']:
    above = _above(record, t)
    rows.append([t, record['types'][t], 'yes' if t in record['train_tasks'] else '',
                 cell(record['chance'].get(t)), cell(random.get(t)), cell(record['own'][t]),
                 cell(record['zero_shot'][t]), cell(record['relative'][t]),
                 'n/a' if above is None else ('yes' if above else 'no'),
                 cell(paper.get('random', {}).get(keys[t])), cell(paper.get('pt', {}).get(keys[t])),
                 cell(paper_zs.get(keys[t]))])
  out = {'cross_model_zero_shot': (
      ['target', 'type', 'trained on', 'chance', 'random prompt', 'own prompt', 'projected',
       'relative %', 'above chance', 'paper random', 'paper own PT', 'paper projected'], rows)}
  if 'tpt' in record:
    rows = []
    for t, c in record['tpt'].items():
      rows.append([t, cell(c['baseline_best']), cell(c['transfer_start']),
                   cell(c['transfer_best']),
                   cell(paper_tpt.get('performance', {}).get(keys[t])),
                   cell(c['convergence']['steps_speedup']),
                   cell(paper_tpt.get('convergence_speedup', {}).get(keys[t])),
                   cell(c['comparable_result']['steps_speedup']),
                   cell(paper_tpt.get('comparable_result_speedup', {}).get(keys[t]))])
    out['tpt_model'] = (['target', 'PT', 'TPT_MODEL start', 'TPT_MODEL', 'paper TPT_MODEL',
                         'convergence', 'paper convergence', 'comparable-result',
                         'paper comparable-result'], rows)
  return out


def summary(record: dict) -> str:
  """The cross-model numbers as plain text, each target's projected score against chance."""
  p = record['projector']
  names = record['targets']
  width = max(len(n) for n in names) + 1
  random = record.get('random') or {}
  best = p['best_score']
  lines = [f'{record["source"]} -> {record["target"]}: {record["method"]} projector trained on '
           f'{", ".join(record["train_tasks"])} (best validation {p["metric"]} '
           f'{best:.{1 if abs(best) >= 1 else 4}f} at step {p["best_step"]} of {p["final_step"]})',
           'zero-shot Proj(P_src_t) on each target task t (score %; chance = 100 / classes, '
           'random = a random prompt, own = the target\'s own prompt):',
           f'  {"target":<{width}} projected  chance  random     own  relative']
  for t in names:
    mark = '*' if t in record['train_tasks'] else ''
    lines.append(f'  {t + mark:<{width}} {record["zero_shot"][t]:9.1f}  '
                 f'{stages._cell(record["chance"].get(t)):>6}  {stages._cell(random.get(t)):>6}  '
                 f'{record["own"][t]:6.1f}  '
                 f'{stages._cell(record["relative"][t]) + "%":>8}')
  known = [t for t in names if _above(record, t) is not None]
  above = [t for t in known if _above(record, t)]
  train_types = {record['types'][t] for t in record['train_tasks']}

  def kind(t):
    if t in record['train_tasks']:
      return 'trained on'
    return 'unseen, same type' if record['types'][t] in train_types else 'unseen, other type'
  at_chance = [t for t in known if t not in above]
  lines.append(f'  (* = the projector was trained on it) above chance (by more than 1 point) on '
               f'{len(above)} of {len(known)} targets'
               + (': ' + ', '.join(f'{t} ({kind(t)})' for t in above) if above else '')
               + ('; at chance or below: ' + ', '.join(f'{t} ({kind(t)})' for t in at_chance)
                  if at_chance else ''))
  if 'tpt' in record:
    lines.append('TPT_MODEL (prompt tuning from Proj(P_src_t)) vs the target\'s PT run:')
    for t, c in record['tpt'].items():
      lines.append(f'  {t:<{width}} best {c["transfer_best"]:5.1f} (PT {c["baseline_best"]:5.1f}, '
                   f'start {c["transfer_start"]:5.1f}); convergence '
                   f'{stages._x(c["convergence"]["steps_speedup"])}, comparable-result '
                   f'{stages._x(c["comparable_result"]["steps_speedup"])}')
  return '\n'.join(lines)
