"""The synthetic transfer study: prompts, zero-shot matrix, indicators, recommendation, TPT.

Run on the synthetic tasks (`tasks.synthetic`: SA, NLI and PI tasks sharing rule and label
words within a type) over one frozen T5, in a few minutes on a CPU:

1. backbone: a random-weight T5 over the synthetic vocabulary, saved as an HF checkpoint
   (`OUT/backbone`) that every later step loads. It is deliberately NOT trained on the tasks:
   a backbone that solves them would leave the prompt nothing to do (as in the trainer's demo).
2. one prompt per task with `ptj train` (`models/t5_synth_prompt.gin`: 20-token prompt sampled
   from the vocabulary, Adafactor lr 1.0) -> `OUT/runs/TASK`; best prompts -> `OUT/prompts`.
3. zero-shot matrix of every prompt on every task, every validation example, plus a random
   prompt baseline -> `OUT/transfer.json` (the diagonal is each prompt's own PT score).
4. FFN activations of each prompt (decoder, first step, T5 spec defaults) for the input
   `<unk>`: the synthetic vocabulary has no `<extra_id_0>` -> `OUT/activations.npz`.
5. indicators, Spearman (spec section 5.3) and leave-one-out top-1 / top-3 hit rates ->
   `OUT/indicators.json`, figures and report -> `OUT/report/`.
6. the type structure (zero-shot within vs across task types, a same-type recommender as a
   reference) and, with `tpt`, transfer by initialization from each target's best other
   zero-shot source with its speedups over the baseline run -> `OUT/study.json`.
Finished runs are reused when the study is run again into the same OUT.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from typing import Callable, Optional, Sequence

import numpy as np

from prompt_transfer_jax.files import write_json

MODEL_SIZES = {
    'demo': {'emb_dim': 256, 'num_heads': 4, 'head_dim': 64, 'mlp_dim': 512},   # the demo's
    'tiny': {'emb_dim': 32, 'num_heads': 2, 'head_dim': 16, 'mlp_dim': 64},     # for tests
}
MODEL_GIN = 'models/t5_synth_prompt.gin'
LENGTHS = {'inputs': 16, 'targets': 2}
UNK_ID = 2      # the synthetic vocabulary's <unk>: the content-free activation input


def make_backbone(path: str, size: str = 'demo', seed: int = 0):
  """A random-weight T5 over the synthetic vocabulary, saved as an HF checkpoint at `path`.

  Returns the `FrozenModel` loaded back from `path` (an existing checkpoint is reused).
  """
  from prompt_transfer_jax import tasks
  from prompt_transfer_jax.checkpoints import save_hf_t5
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.trainer import frozen_model
  if size not in MODEL_SIZES:
    raise ValueError(f'unknown model size {size!r}; choose one of {", ".join(MODEL_SIZES)}')
  config = t5_preset('t5_demo').replace(vocab_size=tasks.SYNTH_VOCAB_SIZE, dropout_rate=0.0,
                                        **MODEL_SIZES[size])
  if not os.path.exists(os.path.join(path, 'config.json')):
    save_hf_t5(path, config, frozen_model.random_t5_params(config, seed))
  model = frozen_model.t5_model(checkpoint=path, preset=None, config_overrides=None,
                                frozen_dtype=None, activation_dtype=None)   # no gin defaults
  if model.config != config:
    raise ValueError(f'{path} holds another backbone (d_model {model.config.emb_dim}) than the '
                     f'{size!r} size asks for (d_model {config.emb_dim}); use a new output '
                     'directory')
  return model


def train_args(model_dir: str, task: str, backbone: str, steps: int, eval_period: int,
               batch_size: int, prompt_length: int, prompt_file: Optional[str] = None) -> list:
  """`ptj train` flags: the synthetic model gin with the study's backbone checkpoint."""
  args = [f'--gin_file={MODEL_GIN}']
  if prompt_file:
    args += ['--gin_file=prompts/from_file.gin', f"--gin.PROMPT_FILE='{prompt_file}'"]
  return args + [
      '--gin_file=runs/prompt_train.gin', f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.MIXTURE_OR_TASK_NAME='{task}'", f'--gin.TASK_FEATURE_LENGTHS={LENGTHS}',
      f"--gin.INITIAL_CHECKPOINT_PATH='{backbone}'", '--gin.MODEL_PRESET=None',
      "--gin.ptj.t5_model.config_overrides={'dropout_rate': 0.0}",
      f'--gin.TRAIN_STEPS={steps}', f'--gin.EVAL_PERIOD={eval_period}',
      f'--gin.BATCH_SIZE={batch_size}', f'--gin.PROMPT_LENGTH={prompt_length}', '--noprogress']


def run_training(args: Sequence[str]) -> dict:
  """`ptj train` in this process, its output captured; returns the run's metrics.json.

  The gin bindings of the run are cleared afterwards: left in place they would silently apply
  to later direct calls of the configurables (e.g. a checkpoint path to `ptj.t5_model`).
  """
  import gin

  from prompt_transfer_jax.trainer import cli, run_record
  out, err = io.StringIO(), io.StringIO()
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = cli.train_main(list(args))
  finally:
    gin.clear_config()
  if code:
    lines = err.getvalue().strip().splitlines()
    raise RuntimeError(f'ptj train failed (exit {code}): {lines[-1] if lines else "no message"}')
  model_dir = json.loads(out.getvalue().strip().splitlines()[-1])['model_dir']
  with open(os.path.join(model_dir, run_record.METRICS_FILE)) as f:
    return json.load(f)


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


def run_study(out: str, tasks: Optional[Sequence[str]] = None, steps: int = 300,
              eval_period: int = 50, batch_size: int = 32, prompt_length: int = 20,
              model_size: str = 'demo', tpt: bool = False, baseline: str = 'uniform',
              bootstrap: int = 2000, log: Callable[[str], None] = print) -> dict:
  """Runs every step of the study into `out`; returns the `study.json` content."""
  from prompt_transfer_jax import tasks as tasks_lib
  from prompt_transfer_jax.analysis import activations as act
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.recommend import leave_one_out_hit_rates
  from prompt_transfer_jax.analysis.report import render_report
  from prompt_transfer_jax.analysis.transferability import analyze_transferability
  from prompt_transfer_jax.trainer import run_record
  from prompt_transfer_jax.transfer import speedup, zero_shot

  start = time.perf_counter()
  names = list(tasks or tasks_lib.task_names('synth'))
  if len(names) < 3:
    raise ValueError(f'the study needs at least 3 tasks, got {names}')
  infos = [tasks_lib.get_task_info(n) for n in names]
  not_synth = [i.name for i in infos if i.family != 'synth']
  if not_synth:
    raise ValueError('the study runs on synthetic tasks (synth family); not: '
                     f'{", ".join(not_synth)}')
  types = [i.task_type for i in infos]
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  backbone_dir = os.path.join(out, 'backbone')
  model = make_backbone(backbone_dir, model_size)
  log(f'[1/6] backbone: random T5 ({model_size}, d_model {model.embed_dim}) -> {backbone_dir}')

  log(f'[2/6] prompt tuning, {steps} steps per task')
  records, prompts = {}, []
  prompt_dir = os.path.join(out, 'prompts')
  os.makedirs(prompt_dir, exist_ok=True)
  for name in names:
    t0 = time.perf_counter()
    run_dir = os.path.join(out, 'runs', name)
    records[name] = run_training(train_args(run_dir, name, backbone_dir, steps, eval_period,
                                            batch_size, prompt_length))
    best = os.path.join(run_dir, run_record.BEST_PROMPT_FILE)
    shutil.copyfile(best, os.path.join(prompt_dir, f'{name}.npy'))
    prompts.append(np.load(best, allow_pickle=False))
    log(f'      {name:<20} best accuracy {records[name]["best_score"]:5.1f} at step '
        f'{records[name]["best_step"]} ({time.perf_counter() - t0:.0f} s)')
  prompts = np.stack(prompts)

  log('[3/6] zero-shot matrix (every prompt on every task, all validation examples)')
  zs = zero_shot.zero_shot_matrix(model, prompts, names, names, LENGTHS, baseline=baseline)
  transfer_path = os.path.join(out, 'transfer.json')
  zs.save(transfer_path)

  log('[4/6] activations')
  acts_path = os.path.join(out, 'activations.npz')
  act.extract_to_file(acts_path, model.backbone, model.params, names, prompts,
                      act.t5_sentinel_inputs(UNK_ID), act.T5_SPEC, progress=False,
                      meta={'model': backbone_dir, 'input': '<unk>'})
  stored = load_activations(acts_path)

  log('[5/6] indicators, Spearman, recommendation hit rates, report')
  result = analyze_transferability(names, zs.matrix, prompts, stored.select(names),
                                   stored.layers, group_size=1, bootstrap=bootstrap)
  result['hit_rates'] = {k: leave_one_out_hit_rates(zs.matrix, m, (1, 3)).to_json(names)
                         for k, m in result['similarity'].items()}
  result['inputs'] = {'prompts': prompt_dir, 'transfer': transfer_path,
                      'activations': acts_path}
  write_json(os.path.join(out, 'indicators.json'), result)
  render_report(result, os.path.join(out, 'report'), 'Synthetic transfer study')

  log('[6/6] type structure' + (' and transfer by initialization (TPT)' if tpt else ''))
  relative = zs.relative()
  study = {
      'tasks': names, 'types': dict(zip(names, types)),
      'settings': {'steps': steps, 'eval_period': eval_period, 'batch_size': batch_size,
                   'prompt_length': prompt_length, 'model_size': model_size,
                   'lengths': LENGTHS, 'baseline': baseline},
      'pt_scores': {n: records[n]['best_score'] for n in names},
      'zero_shot': zs.matrix.tolist(), 'relative': zs.to_json()['relative'],
      'random_baseline': zs.baseline['scores'] if zs.baseline else None,
      'spearman': result['spearman'],
      'spearman_ci95': {k: v['ci95'] for k, v in result['spearman_detail'].items()},
      'hit_rates': {k: {'top1': v['hit_rate']['1'], 'top3': v['hit_rate']['3']}
                    for k, v in result['hit_rates'].items()},
      'chance': {'top1': result['hit_rates']['ON']['chance']['1'],
                 'top3': result['hit_rates']['ON']['chance']['3']},
      'same_type_reference': leave_one_out_hit_rates(
          zs.matrix, same_type_similarity(types), (1, 3)).to_json(names)['hit_rate'],
      'type_structure': type_structure(names, types, zs.matrix, relative),
  }
  if tpt:
    study['tpt'] = {}
    for i, name in enumerate(names):
      others = [j for j in range(len(names)) if j != i]     # ties: a same-type source first
      source = names[max(others, key=lambda j: (zs.matrix[i, j], types[j] == types[i]))]
      run_dir = os.path.join(out, 'tpt', f'{name}_from_{source}')
      record = run_training(train_args(run_dir, name, backbone_dir, steps, eval_period,
                                       batch_size, prompt_length,
                                       os.path.join(prompt_dir, f'{source}.npy')))
      cmp = speedup.compare_runs(records[name]['history'], record['history'])
      study['tpt'][name] = dict(cmp, source=source,
                                same_type=types[names.index(source)] == types[i])
      log(f'      {name:<20} from {source:<20} best {cmp["transfer_best"]:5.1f} vs '
          f'{cmp["baseline_best"]:5.1f}; convergence {_x(cmp["convergence"]["steps_speedup"])}, '
          f'comparable-result {_x(cmp["comparable_result"]["steps_speedup"])}')
  study['seconds'] = time.perf_counter() - start
  write_json(os.path.join(out, 'study.json'), study)
  return study


def summary(study: dict) -> str:
  """The study's numbers as plain text."""
  names = study['tasks']
  width = max(len(n) for n in names)
  lines = ['zero-shot accuracy (rows = target tasks, columns = source prompts):',
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
  return '\n'.join(lines)


def _num(value) -> str:
  return 'n/a' if value is None else f'{value:.1f}'


def _x(value) -> str:
  """A speedup as text: N/A, inf or x1.5."""
  if value is None:
    return 'N/A'
  return 'x inf' if value == 'inf' else f'x{value:.1f}'
