"""`ptj study`: the paper's cross-task study on any backbone and task list, every stage resumable.

A study (gin: `gin_configs/studies/*.gin`, `ptj.study` + one `ptj.study_backbone` per backbone)
runs, for each backbone into `OUT/NAME/`:

1. PT: one prompt per task (`trainer.runs.train_run` on the backbone's gin files +
   `runs/prompt_train.gin`) -> `runs/TASK/`, best prompt -> `prompts/TASK.npy`;
2. zero-shot: every prompt on every task plus a random-prompt baseline -> `transfer.json`;
3. TPT_TASK (with `tpt`): each target started from its best other zero-shot source
   (`runs/tpt.gin`, the recipe's TPT learning rate) -> `tpt/TARGET_from_SOURCE/`, speedups over
   its PT run -> `tpt/TARGET.json`;
4. activations: FFN activations of every prompt -> `activations.npz`;
5. indicators: every indicator's Spearman correlation, top-1 / top-3 hit rates and the report ->
   `indicators.json`, `report/`; the analysis warnings also know each prompt's initialization
   (identical or untrained prompts) and each target's chance level (targets at chance);
6. tables: `study.json` and the paper's tables (PT scores, zero-shot relative matrix, TPT
   speedups, Spearman of every indicator) as CSV and Markdown next to the paper's values from
   the slides (`study.paper_values`) -> `tables/`.

Then each cross-model stage of `cross_model` (`study/cross_model.py`: a projector from one
backbone's prompts to another's, zero-shot and TPT_MODEL) -> `OUT/cross_model/NAME/`, and
`OUT/summary.md` with every backbone's and every cross-model stage's summary.

A stage whose artifact exists is skipped, so a study killed at any point and started again redoes
only the unfinished stage (a PT or TPT run resumes from its own checkpoint). Every artifact is
written to a temporary name then renamed, by process 0 only, so every host of a pod can run the
same command. Progress and an ETA across stages go to stdout.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
import zlib
from typing import Callable, Mapping, Optional, Sequence

import gin
import numpy as np

from prompt_transfer_jax.files import atomic_path, atomic_write, read_json, write_json
from prompt_transfer_jax.trainer.gin_utils import require

PROMPT_SEEDS = ('shared', 'per_task')


@dataclasses.dataclass(frozen=True)
class Backbone:
  """One backbone of a study: its recipe (gin files + bindings) and its tasks."""
  name: str
  gin_files: tuple
  tasks: tuple
  bindings: tuple = ()
  lengths: Optional[Mapping[str, int]] = None      # None: each task's own (TaskInfo)
  prompt_seeds: str = 'shared'
  tpt_gin_files: tuple = ('runs/tpt.gin',)
  tpt_bindings: tuple = ()
  task_bindings: Optional[Mapping[str, Sequence[str]]] = None   # task -> extra bindings
  train_gin_files: tuple = ('runs/prompt_train.gin',)  # () when gin_files is a paper/ recipe
  checkpoint: Optional[str] = None                 # INITIAL_CHECKPOINT_PATH of every run
  model_parallel: int = 1                          # the mesh's model axis in every run and matrix
  synth_tokenizer: bool = False                    # RoBERTa over the synthetic vocabulary
  t5_activation_token: int = 32099                 # T5 activation input (<extra_id_0>)
  paper: Optional[str] = None                      # `paper_values` key of the paper's tables

  def __post_init__(self):
    if isinstance(self.model_parallel, bool) or not isinstance(self.model_parallel, int) or (
        self.model_parallel < 1):
      raise ValueError(f'study backbone {self.name!r}: model_parallel must be a positive '
                       f'integer, got {self.model_parallel!r}')
    if self.prompt_seeds not in PROMPT_SEEDS:
      raise ValueError(f'study backbone {self.name!r}: prompt_seeds must be one of '
                       f'{PROMPT_SEEDS}, got {self.prompt_seeds!r}')
    if len(self.tasks) < 3:
      raise ValueError(f'study backbone {self.name!r} needs at least 3 tasks, got '
                       f'{list(self.tasks)}')
    if not self.name or os.sep in self.name:
      raise ValueError(f'study backbone name {self.name!r} must be a plain directory name')


@dataclasses.dataclass(frozen=True)
class Study:
  out_dir: str
  backbones: tuple
  tpt: bool = True
  baseline: str = 'uniform'
  bootstrap: int = 2000
  zero_shot_batch_size: int = 32
  max_examples: Optional[int] = None
  title: str = 'Prompt transferability study'
  bindings: tuple = ()       # appended to every backbone's run bindings (TRAIN_STEPS, ...)
  cross_model: tuple = ()    # `study.cross_model.CrossModel` stages, run after the backbones


@gin.configurable(module='ptj')
def study_backbone(name: str = gin.REQUIRED, gin_files: Sequence[str] = gin.REQUIRED,
                   tasks: Sequence[str] = gin.REQUIRED, bindings: Sequence[str] = (),
                   lengths: Optional[Mapping[str, int]] = None, prompt_seeds: str = 'shared',
                   tpt_gin_files: Sequence[str] = ('runs/tpt.gin',),
                   tpt_bindings: Sequence[str] = (),
                   task_bindings: Optional[Mapping[str, Sequence[str]]] = None,
                   synth_tokenizer: bool = False, t5_activation_token: int = 32099,
                   paper: Optional[str] = None,
                   train_gin_files: Sequence[str] = ('runs/prompt_train.gin',),
                   checkpoint: Optional[str] = None, model_parallel: int = 1) -> Backbone:
  """A study backbone (see `Backbone`); `bindings` are 'NAME = VALUE' gin bindings of its runs."""
  require(INITIAL_CHECKPOINT_PATH=checkpoint)
  return Backbone(name=name, gin_files=tuple(gin_files), tasks=tuple(tasks),
                  bindings=tuple(bindings), lengths=dict(lengths) if lengths else None,
                  prompt_seeds=prompt_seeds, tpt_gin_files=tuple(tpt_gin_files),
                  tpt_bindings=tuple(tpt_bindings),
                  task_bindings=dict(task_bindings) if task_bindings else None,
                  train_gin_files=tuple(train_gin_files), checkpoint=checkpoint,
                  synth_tokenizer=synth_tokenizer, t5_activation_token=t5_activation_token,
                  paper=paper, model_parallel=model_parallel)


@gin.configurable(module='ptj')
def study(out_dir: str = gin.REQUIRED, backbones: Sequence[Backbone] = gin.REQUIRED,
          tpt: bool = True, baseline: str = 'uniform', bootstrap: int = 2000,
          zero_shot_batch_size: int = 32, max_examples: Optional[int] = None,
          title: str = 'Prompt transferability study', train_steps: Optional[int] = None,
          eval_period: Optional[int] = None, batch_size: Optional[int] = None,
          cross_model: Sequence = ()) -> Study:
  """The study `ptj study` runs (evaluated once, before any run clears gin). `train_steps`,
  `eval_period` and `batch_size`, when given, override every backbone's recipe; `cross_model`
  lists `ptj.study_cross_model` stages."""
  require(STUDY_DIR=out_dir)
  names = [b.name for b in backbones]
  if len(set(names)) != len(names):
    raise ValueError(f'study backbones need distinct names, got {names}')
  cross_names = [x.name for x in cross_model]
  if len(set(cross_names)) != len(cross_names):
    raise ValueError(f'study cross-model stages need distinct names, got {cross_names}')
  for x in cross_model:
    x.check(backbones)
  bindings = tuple(f'{name} = {value}' for name, value in (
      ('TRAIN_STEPS', train_steps), ('EVAL_PERIOD', eval_period), ('BATCH_SIZE', batch_size))
                   if value is not None)
  return Study(os.path.abspath(out_dir), tuple(backbones), tpt, baseline, bootstrap,
               zero_shot_batch_size, max_examples, title, bindings, tuple(cross_model))


@gin.configurable(module='ptj')
def study_model(model=gin.REQUIRED):
  """The backbone's `MODEL` (bound by the study to `%MODEL` of its gin files)."""
  return model


@gin.configurable(module='ptj')
def study_prompt_init(init=gin.REQUIRED, length: int = gin.REQUIRED):
  """The backbone's `PROMPT_INIT` and `PROMPT_LENGTH` (bound by the study to its gin files)."""
  return init, length


def initial_prompts(config: Study, backbone: Backbone, model) -> dict:
  """Each task's initial prompt, as its PT run draws it (`PROMPT_INIT`, the run's prompt seed)."""
  from prompt_transfer_jax.trainer import runs
  init, length = runs.run_gin(
      study_prompt_init, list(backbone.gin_files) + list(backbone.train_gin_files),
      list(backbone.bindings) + _checkpoint_bindings(backbone) + list(config.bindings)
      + ['ptj.study_prompt_init.init = %PROMPT_INIT',
         'ptj.study_prompt_init.length = %PROMPT_LENGTH'])
  return {t: np.asarray(init(model, [t], length, prompt_seed(backbone, t)), np.float32)
          for t in backbone.tasks}


def chance_scores(task_names: Sequence[str]) -> dict:
  """Each classification task's chance accuracy, 100 / its number of label words."""
  from prompt_transfer_jax import tasks
  out = {}
  for name in task_names:
    info = tasks.get_task_info(name)
    if info.is_classification and info.metric == 'accuracy' and info.label_words:
      out[name] = 100.0 / len(info.label_words)
  return out


def prompt_seed(backbone: Backbone, task: str) -> int:
  """The run's PROMPT_SEED: 0 for every task ('shared', the paper) or derived from the task name."""
  return 0 if backbone.prompt_seeds == 'shared' else zlib.crc32(task.encode()) % (2 ** 31)


def _is_writer() -> bool:
  import jax
  return jax.process_index() == 0


def _sync(name: str) -> None:
  import jax
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


class Progress:
  """`[done/total] backbone: stage ... elapsed, ETA` lines; the ETA averages executed units."""

  def __init__(self, total: int, log: Callable[[str], None]):
    self.total, self.done, self.log = total, 0, log
    self.start = time.perf_counter()
    self.worked, self.work_units = 0.0, 0

  def step(self, label: str, fn: Callable[[], Optional[str]], skip: bool) -> None:
    from prompt_transfer_jax.trainer.progress import format_seconds
    t0 = time.perf_counter()
    if skip:
      self.done += 1
      self.log(f'[{self.done}/{self.total}] {label}: done before, skipped')
      return
    note = fn()
    self.done += 1
    seconds = time.perf_counter() - t0
    self.worked += seconds
    self.work_units += 1
    eta = self.worked / self.work_units * (self.total - self.done)
    self.log(f'[{self.done}/{self.total}] {label}{": " + note if note else ""} ({seconds:.0f} s; '
             f'elapsed {format_seconds(time.perf_counter() - self.start)}, '
             f'ETA {format_seconds(eta)})')


def _print(line: str) -> None:
  print(line, flush=True)


def run(config: Study, log: Optional[Callable[[str], None]] = None) -> dict:
  """Runs every stage of every backbone, then every cross-model stage (skipping finished ones);
  returns {NAME: study.json} and {cross_model/NAME: its result.json}, keyed by directory."""
  log = log or _print
  total = (sum(_stage_count(b, config.tpt) for b in config.backbones)
           + sum(x.stage_count(config.backbones) for x in config.cross_model))
  progress = Progress(total, log)
  results = {}
  for backbone in config.backbones:
    results[backbone.name] = run_backbone(config, backbone,
                                          os.path.join(config.out_dir, backbone.name), progress)
  for x in config.cross_model:
    results[f'cross_model/{x.name}'] = x.run(config, progress)
  if _is_writer():
    with atomic_write(os.path.join(config.out_dir, 'summary.md')) as f:
      f.write(summary_markdown(config, results))
  return results


def summaries(config: Study, results: Mapping[str, dict]) -> list[tuple[str, str, dict]]:
  """(title, summary text, {what: path relative to OUT}) for every backbone and cross-model
  stage."""
  out = [(name, summary(results[name]), {'tables': f'{name}/tables/README.md',
                                         'report': f'{name}/report/report.md'})
         for name in (b.name for b in config.backbones)]
  out += [(f'cross-model {x.name}', x.summary(results[f'cross_model/{x.name}']),
           {'tables': f'cross_model/{x.name}/tables/README.md'}) for x in config.cross_model]
  return out


def summary_markdown(config: Study, results: Mapping[str, dict]) -> str:
  return ''.join(f'# {title}\n\n```\n{text}\n```\n\n'
                 + '; '.join(f'{what}: {path}' for what, path in where.items()) + '\n\n'
                 for title, text, where in summaries(config, results))


def _stage_count(backbone: Backbone, tpt: bool) -> int:
  return len(backbone.tasks) * (2 if tpt else 1) + 4


def _lengths(backbone: Backbone, task: Optional[str] = None) -> dict:
  from prompt_transfer_jax import tasks as tasks_lib
  if backbone.lengths:
    return dict(backbone.lengths)
  infos = [tasks_lib.get_task_info(t) for t in ([task] if task else backbone.tasks)]
  return {'inputs': max(i.input_length for i in infos),
          'targets': max(i.target_length for i in infos)}


def _checkpoint_bindings(backbone: Backbone) -> list:
  return [] if backbone.checkpoint is None else [
      f"INITIAL_CHECKPOINT_PATH = '{backbone.checkpoint}'"]


def _parallel_bindings(backbone: Backbone, configurable: str = 'ptj.train') -> list:
  """The backbone's model-parallel mesh axis for a run's `configurable` (none when 1)."""
  return [] if backbone.model_parallel == 1 else [
      f'{configurable}.model_parallel = {backbone.model_parallel}']


def _run_bindings(config: Study, backbone: Backbone, task: str, model_dir: str) -> list:
  return list(backbone.bindings) + _checkpoint_bindings(backbone) + _parallel_bindings(
      backbone) + list(config.bindings) + list((backbone.task_bindings or {}).get(task, ())) + [
      f"MODEL_DIR = '{model_dir}'", f"MIXTURE_OR_TASK_NAME = '{task}'",
      f'TASK_FEATURE_LENGTHS = {_lengths(backbone, task)}',
      f'PROMPT_SEED = {prompt_seed(backbone, task)}']


def _train(gin_files: Sequence[str], bindings: Sequence[str]) -> dict:
  from prompt_transfer_jax.trainer import runs
  return runs.train_run(list(gin_files), list(bindings), show_progress=False)


def _model(backbone: Backbone):
  from prompt_transfer_jax.trainer import runs
  return runs.run_gin(study_model, list(backbone.gin_files) + list(backbone.train_gin_files),
                      list(backbone.bindings) + _checkpoint_bindings(backbone)
                      + ['ptj.study_model.model = %MODEL'])


def tpt_run(config: Study, backbone: Backbone, task: str, directory: str,
            gin_files: Sequence[str], bindings: Sequence[str], prompt_file: str,
            baseline_history: Sequence[dict], result_path: str, extra: dict) -> dict:
  """Prompt tuning of `task` from `prompt_file` into `directory` (the backbone's PT recipe +
  `gin_files` + `bindings`), its speedups over `baseline_history` plus `extra` -> `result_path`
  (process 0). Returns the speedups."""
  from prompt_transfer_jax.transfer import speedup
  _train(list(backbone.gin_files) + list(backbone.train_gin_files) + list(gin_files),
         _run_bindings(config, backbone, task, directory) + list(bindings)
         + [f"PROMPT_FILE = '{prompt_file}'"])
  cmp = speedup.compare_runs(baseline_history, speedup.load_history(directory))
  if _is_writer():
    write_json(result_path, dict(cmp, **extra))
  _sync(f'tpt {directory}')
  return cmp


def _copy(src: str, dst: str) -> None:
  tmp = atomic_path(dst)
  shutil.copyfile(src, tmp)
  os.replace(tmp, dst)


def run_backbone(config: Study, backbone: Backbone, out: str,
                 progress: Optional[Progress] = None,
                 log: Optional[Callable[[str], None]] = None) -> dict:
  """Every stage of one backbone into `out`; returns its `study.json` content."""
  from prompt_transfer_jax import tasks as tasks_lib
  from prompt_transfer_jax.trainer import run_record
  progress = progress or Progress(_stage_count(backbone, config.tpt), log or _print)
  names = list(backbone.tasks)
  os.makedirs(os.path.join(out, 'prompts'), exist_ok=True)
  if backbone.synth_tokenizer:
    from prompt_transfer_jax.tasks import synth_roberta
    synth_roberta.use(os.path.join(config.out_dir, 'synth_tokenizer'))
  infos = [tasks_lib.get_task_info(n) for n in names]
  prompt_path = lambda t: os.path.join(out, 'prompts', f'{t}.npy')
  run_dir = lambda t: os.path.join(out, 'runs', t)
  label = backbone.name
  model_cache = []

  def model():
    if not model_cache:
      model_cache.append(_model(backbone))
    return model_cache[0]

  for task in names:
    def pt(task=task):
      summary_ = _train(list(backbone.gin_files) + list(backbone.train_gin_files),
                        _run_bindings(config, backbone, task, run_dir(task)))
      if _is_writer():
        _copy(os.path.join(run_dir(task), run_record.BEST_PROMPT_FILE), prompt_path(task))
      _sync(f'pt {label} {task}')
      return f'best {summary_["metric"]} {summary_["best_score"]:.1f} at step {summary_["best_step"]}'
    progress.step(f'{label}: PT {task}', pt, os.path.exists(prompt_path(task)))
  prompts = np.stack([np.load(prompt_path(t), allow_pickle=False) for t in names])
  records = {t: read_json(os.path.join(run_dir(t), run_record.METRICS_FILE), 'metrics') for t in names}

  transfer_path = os.path.join(out, 'transfer.json')

  def zero_shot_stage():
    from prompt_transfer_jax.transfer import zero_shot
    zs = zero_shot.zero_shot_matrix(model(), prompts, names, names, _lengths(backbone),
                                    config.zero_shot_batch_size,
                                    max_examples=config.max_examples, baseline=config.baseline,
                                    model_parallel=backbone.model_parallel)
    if _is_writer():
      zs.save(transfer_path)
    _sync(f'zero-shot {label}')
    return f'{len(names)} x {len(names)} matrix'
  progress.step(f'{label}: zero-shot', zero_shot_stage, os.path.exists(transfer_path))
  zs = read_json(transfer_path, 'zero-shot matrix')
  matrix = np.array(zs['matrix'], np.float64)
  types = [i.task_type for i in infos]

  tpt = {}
  if config.tpt:
    for i, task in enumerate(names):
      others = [j for j in range(len(names)) if j != i]     # ties: a same-type source first
      source = names[max(others, key=lambda j: (matrix[i, j], types[j] == types[i]))]
      result_path = os.path.join(out, 'tpt', f'{task}.json')

      def tpt_stage(task=task, source=source, result_path=result_path, i=i):
        cmp = tpt_run(config, backbone, task, os.path.join(out, 'tpt', f'{task}_from_{source}'),
                      backbone.tpt_gin_files, backbone.tpt_bindings, prompt_path(source),
                      records[task]['history'], result_path,
                      {'source': source, 'same_type': types[names.index(source)] == types[i]})
        return (f'from {source}: best {cmp["transfer_best"]:.1f} vs {cmp["baseline_best"]:.1f}, '
                f'convergence {_x(cmp["convergence"]["steps_speedup"])}')
      progress.step(f'{label}: TPT {task}', tpt_stage, os.path.exists(result_path))
      tpt[task] = read_json(result_path, 'TPT result')

  acts_path = os.path.join(out, 'activations.npz')

  def activations_stage():
    from prompt_transfer_jax.analysis import activations as act
    m = model()
    if m.needs_label_words:
      spec, inputs = act.ROBERTA_SPEC, act.roberta_bos_inputs()
    else:
      spec, inputs = act.T5_SPEC, act.t5_sentinel_inputs(backbone.t5_activation_token)
    tmp = atomic_path(acts_path) + '.npz'
    act.extract_to_file(tmp, m.backbone, m.on_mesh(backbone.model_parallel), names, prompts,
                        inputs, spec, progress=False, meta={'model': m.source, 'family': m.family})
    if _is_writer():
      os.replace(tmp, acts_path)
    elif os.path.exists(tmp):
      os.remove(tmp)
    _sync(f'activations {label}')
  progress.step(f'{label}: activations', activations_stage, os.path.exists(acts_path))

  indicators_path = os.path.join(out, 'indicators.json')

  def indicators_stage():
    from prompt_transfer_jax.analysis.activation_store import load_activations
    from prompt_transfer_jax.analysis.indicators import prompt_warnings
    from prompt_transfer_jax.analysis.recommend import leave_one_out_hit_rates
    from prompt_transfer_jax.analysis.spearman import spearman_warnings
    from prompt_transfer_jax.analysis.report import render_report
    from prompt_transfer_jax.analysis.transferability import analyze_transferability
    stored = load_activations(acts_path)
    result = analyze_transferability(names, matrix, prompts, stored.select(names), stored.layers,
                                     group_size=1, bootstrap=config.bootstrap)
    result['hit_rates'] = {k: leave_one_out_hit_rates(matrix, m, (1, 3)).to_json(names)
                           for k, m in result['similarity'].items()}
    result['inputs'] = {'prompts': os.path.join(out, 'prompts'), 'transfer': transfer_path,
                        'activations': acts_path}
    # What the study knows and the analysis cannot: each prompt's start and each target's chance.
    result['chance_scores'] = chance_scores(names)
    initial = initial_prompts(config, backbone, model())
    result['warnings'] = list(dict.fromkeys(
        result['warnings'] + prompt_warnings(names, prompts, initial)
        + spearman_warnings(names, {}, matrix, result['chance_scores'])))
    if _is_writer():
      render_report(result, os.path.join(out, 'report'), f'{config.title}: {label}')
      write_json(indicators_path, result)
    _sync(f'indicators {label}')
  progress.step(f'{label}: indicators and report', indicators_stage,
                os.path.exists(indicators_path))

  study_path = os.path.join(out, 'study.json')

  def tables_stage():
    from prompt_transfer_jax.analysis.recommend import leave_one_out_hit_rates
    result = read_json(indicators_path, 'indicators')
    relative = np.array([[np.nan if v is None else v for v in row] for row in zs['relative']],
                        np.float64)
    record = {
        'backbone': label, 'tasks': names, 'types': dict(zip(names, types)),
        'keys': {i.name: i.key for i in infos}, 'paper': backbone.paper,
        'pt_scores': {n: records[n]['best_score'] for n in names},
        'zero_shot': matrix.tolist(), 'relative': zs['relative'],
        'random_baseline': zs['baseline']['scores'] if zs.get('baseline') else None,
        'spearman': result['spearman'],
        'spearman_ci95': {k: v['ci95'] for k, v in result['spearman_detail'].items()},
        'hit_rates': {k: {'top1': v['hit_rate']['1'], 'top3': v['hit_rate']['3']}
                      for k, v in result['hit_rates'].items()},
        'chance': {'top1': result['hit_rates']['ON']['chance']['1'],
                   'top3': result['hit_rates']['ON']['chance']['3']},
        'same_type_reference': leave_one_out_hit_rates(
            matrix, same_type_similarity(types), (1, 3)).to_json(names)['hit_rate'],
        'type_structure': type_structure(names, types, matrix, relative),
        'chance_scores': result.get('chance_scores', {}),
        'warnings': result.get('warnings', []),
    }
    if tpt:
      record['tpt'] = tpt
    if _is_writer():
      write_tables(record, os.path.join(out, 'tables'))
      write_json(study_path, record)
    _sync(f'tables {label}')
  progress.step(f'{label}: tables', tables_stage, os.path.exists(study_path))
  return read_json(study_path, 'study')


def _cell(value, digits: int = 1) -> str:
  if value is None or (isinstance(value, float) and not np.isfinite(value)):
    return 'n/a'
  if value == 'inf':
    return 'inf'
  return f'{value:.{digits}f}'


def tables(record: dict) -> dict[str, tuple[list, list]]:
  """The paper's tables of one backbone: name -> (header, rows), reproduction beside the paper."""
  from prompt_transfer_jax.study.paper_values import paper_values
  paper = paper_values(record.get('paper'))
  names = record['tasks']
  key = lambda n: record.get('keys', {}).get(n, n)
  out = {'pt_scores': (['task', 'type', 'PT', 'paper PT'],
                       [[n, record['types'][n], _cell(record['pt_scores'][n]),
                         _cell(paper.get('pt', {}).get(key(n)))] for n in names])}
  out['zero_shot_relative'] = (['target \\ source'] + names + ['random'], [
      [t] + [_cell(v) for v in row] + [_cell(
          None if not record['random_baseline'] or not record['pt_scores'][t] else
          100.0 * record['random_baseline'][i] / record['pt_scores'][t])]
      for i, (t, row) in enumerate(zip(names, record['relative']))])
  if 'tpt' in record:
    rows = []
    for n, t in record['tpt'].items():
      rows.append([n, t['source'], _cell(t['baseline_best']), _cell(t['transfer_best']),
                   _cell(paper.get('tpt', {}).get(key(n))),
                   _cell(t['convergence']['steps_speedup']),
                   _cell(paper.get('convergence_speedup', {}).get(key(n))),
                   _cell(t['comparable_result']['steps_speedup']),
                   _cell(paper.get('comparable_result_speedup', {}).get(key(n)))])
    out['tpt_speedups'] = (['task', 'source', 'PT', 'TPT', 'paper TPT', 'convergence',
                            'paper convergence', 'comparable-result', 'paper comparable-result'],
                           rows)
  out['spearman'] = (['indicator', 'Spearman x100', 'paper', 'top-1 hit', 'top-3 hit'], [
      [k, _cell(v), _cell(paper.get('spearman', {}).get(k)),
       _cell(100 * record['hit_rates'][k]['top1'], 0), _cell(100 * record['hit_rates'][k]['top3'], 0)]
      for k, v in record['spearman'].items()])
  return out


def write_tables(record: dict, directory: str, named: Optional[dict] = None,
                 title: Optional[str] = None) -> None:
  """Every table (default: a backbone's `tables(record)`) as `NAME.csv` and `NAME.md`, and a
  `README.md` with all of them under `title`."""
  import csv
  import io
  os.makedirs(directory, exist_ok=True)
  if title is None:
    paper = record.get('paper')
    title = f'# {record["backbone"]}: reproduction' + (f' vs the paper ({paper})' if paper else '')
  parts = [title]
  for name, (header, rows) in (tables(record) if named is None else named).items():
    text = io.StringIO()
    csv.writer(text, lineterminator='\n').writerows([header] + rows)
    with atomic_write(os.path.join(directory, f'{name}.csv')) as f:
      f.write(text.getvalue())
    md = '\n'.join(['| ' + ' | '.join(map(str, r)) + ' |' for r in
                    [header, ['---'] * len(header)] + rows]) + '\n'
    with atomic_write(os.path.join(directory, f'{name}.md')) as f:
      f.write(md)
    parts += [f'## {name.replace("_", " ")}', md]
  with atomic_write(os.path.join(directory, 'README.md')) as f:
    f.write('\n\n'.join(parts))


def type_structure(tasks: Sequence[str], types: Sequence[str], matrix, relative=None) -> dict:
  """Zero-shot transfer within vs across task types (sources other than the target)."""
  m = np.asarray(matrix, np.float64)
  types = np.asarray(types)
  same = types[:, None] == types[None, :]
  other = ~np.eye(len(tasks), dtype=bool)
  out = {'within_type_mean': _mean(m[same & other]), 'cross_type_mean': _mean(m[~same]),
         'per_target': {}}
  if relative is not None:
    r = np.asarray(relative, np.float64)
    out.update(within_type_relative_mean=_mean(r[same & other]),
               cross_type_relative_mean=_mean(r[~same]))
  wins = best_same = 0
  for i, task in enumerate(tasks):
    within, cross = m[i, same[i] & other[i]], m[i, ~same[i]]
    cand = np.flatnonzero(other[i])
    best = int(cand[np.argmax(m[i, cand])])
    entry = {'within_type_mean': _mean(within), 'cross_type_mean': _mean(cross),
             'best_other_source': tasks[best], 'best_other_is_same_type': bool(same[i, best])}
    if within.size and cross.size:
      entry['within_beats_cross'] = bool(within.mean() > cross.mean())
      wins += entry['within_beats_cross']
    best_same += entry['best_other_is_same_type']
    out['per_target'][task] = entry
  out['by_target_type'] = {
      t: {'within_type_mean': _mean(m[(types == t)[:, None] & same & other]),
          'cross_type_mean': _mean(m[(types == t)[:, None] & ~same])}
      for t in dict.fromkeys(types.tolist())}
  comparable = sum('within_beats_cross' in e for e in out['per_target'].values())
  out.update(targets_where_within_beats_cross=f'{wins}/{comparable}',
             targets_whose_best_other_source_is_same_type=f'{best_same}/{len(tasks)}')
  return out


def _mean(x) -> Optional[float]:
  x = np.asarray(x, np.float64)
  x = x[np.isfinite(x)]
  return float(x.mean()) if x.size else None


def same_type_similarity(types: Sequence[str]) -> np.ndarray:
  """1 for pairs of the same task type, else 0: a reference recommender."""
  t = np.asarray(types)
  return (t[:, None] == t[None, :]).astype(np.float64)


def summary(study: dict) -> str:
  """The study's numbers as plain text."""
  names = study['tasks']
  width = max(len(n) for n in names)
  lines = []
  if 'pt_scores' in study:
    lines += ['prompt tuning, best validation score per task: ' + ', '.join(
        f'{n} {s:.1f}' for n, s in study['pt_scores'].items()), '']
  lines += ['zero-shot accuracy (rows = target tasks, columns = source prompts):',
           ' ' * (width + 2) + ' '.join(f'{i:>6}' for i in range(len(names))) + '  random']
  for i, n in enumerate(names):
    rand = study['random_baseline'][i] if study['random_baseline'] else float('nan')
    lines.append(f'{n:<{width}}  ' + ' '.join(f'{v:6.1f}' for v in study['zero_shot'][i])
                 + f'  {rand:6.1f}   [{i}] {study["types"][n]}')
  ts = study['type_structure']
  lines += ['', 'mean zero-shot accuracy, other sources: within type '
            f'{ts["within_type_mean"]:.1f}, across types {ts["cross_type_mean"]:.1f}; within > '
            f'across for {ts["targets_where_within_beats_cross"]} targets; best other source is '
            f'of the same type for {ts["targets_whose_best_other_source_is_same_type"]}',
            'by target type: ' + ', '.join(
                f'{t} {_num(v["within_type_mean"])} within / {_num(v["cross_type_mean"])} across'
                for t, v in ts['by_target_type'].items()), '',
            'indicator   Spearman x100   top-1 hit   top-3 hit']
  for name, rho in study['spearman'].items():
    h = study['hit_rates'][name]
    lines.append(f'{name:<11} {"n/a" if rho is None else f"{rho:6.1f}":>13}   '
                 f'{100 * h["top1"]:8.0f}%   {100 * h["top3"]:8.0f}%')
  ref = study['same_type_reference']
  lines.append(f'{"chance":<11} {"":>13}   {100 * study["chance"]["top1"]:8.0f}%   '
               f'{100 * study["chance"]["top3"]:8.0f}%')
  lines.append(f'{"same type":<11} {"":>13}   {100 * ref["1"]:8.0f}%   {100 * ref["3"]:8.0f}%')
  if 'tpt' in study:
    lines += ['', 'transfer by initialization (best other zero-shot source):']
    for name, t in study['tpt'].items():
      still = [k for k, v in t['best_at_last_evaluation'].items() if v]
      lines.append(f'  {name:<{width}} from {t["source"]:<{width}} best {t["transfer_best"]:5.1f} '
                   f'(PT {t["baseline_best"]:5.1f}, start {t["transfer_start"]:5.1f}); convergence '
                   f'{_x(t["convergence"]["steps_speedup"])}, comparable-result '
                   f'{_x(t["comparable_result"]["steps_speedup"])}'
                   + (f' ({" and ".join(still)} still improving at the end)' if still else ''))
  if study.get('warnings'):
    lines += ['', 'warnings:'] + [f'  - {w}' for w in study['warnings']]
  return '\n'.join(lines)


def _num(value) -> str:
  return 'n/a' if value is None else f'{value:.1f}'


def _x(value) -> str:
  """A speedup as text: N/A, inf or x1.5."""
  if value is None:
    return 'N/A'
  return 'x inf' if value == 'inf' else f'x{value:.1f}'
