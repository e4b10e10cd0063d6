r"""`ptj project train | apply | zero-shot`: cross-model prompt transfer through a projector.

    ptj project train --gin_file=models/t5_1_1_xxl_prompt.gin \
      --gin_file=runs/projector_task_tuning.gin --gin.MODEL_DIR="'/tmp/proj_laptop'" \
      --gin.TRAIN_TASKS="['t5_laptop']" --gin.SOURCE_PROMPT_DIR="'roberta_large_prompts'" \
      --gin.SOURCE_MODEL="'roberta_large'" --gin.INITIAL_CHECKPOINT_PATH="'...'"
    ptj project apply --projector=/tmp/proj_laptop/best_projector --prompts=SRC_DIR --out=DIR
    ptj project zero-shot --gin_file=models/t5_1_1_xxl_prompt.gin \
      --projector=/tmp/proj_laptop/best_projector --source_prompts=SRC_DIR \
      --target_prompts=T5_OWN_DIR --targets=t5_sst2,t5_imdb --out=cross.json [--tpt ...]

`train` runs `ptj.train_projector` (gin_configs/runs/projector_{task_tuning,distance}.gin; the
models/ file is the TARGET model) and resumes an interrupted MODEL_DIR. `apply` writes
Proj(P) for every `NAME.npy` of a prompt directory, in the same layout. `zero-shot` scores each
projector's Proj(P_src_s) on every target task (raw, and relative to the target's own prompts
when `--target_prompts` is given) through `transfer.zero_shot`; `--tpt` then prompt-tunes the
target on each task t from Proj(P_src_t) (TPT_MODEL) and from its default init (vanilla PT,
reused when finished), with `--gin_file=runs/prompt_train.gin` and TRAIN_STEPS / EVAL_PERIOD
bindings, and reports the speedups of `transfer/speedup.py`.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

from absl import flags

from prompt_transfer_jax import command
from prompt_transfer_jax.command import UsageError
from prompt_transfer_jax.trainer import runs

RESULT_KIND = 'cross_model_zero_shot'


def _train(fv) -> int:
  """`ptj project train`: train a projector (task tuning or distance minimizing)."""
  runs.setup_flags(fv)
  from prompt_transfer_jax.transfer import cross_model
  log = (lambda m: print(m, file=sys.stderr)) if fv.progress else None
  summary = runs.gin_call(lambda: cross_model.train_projector(log=log))
  print(json.dumps({k: summary[k] for k in ('model_dir', 'projector_dir', 'method', 'final_step',
                                            'metric', 'best_step', 'best_score')}))
  return 0


def _apply_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('projector', None, 'a projector directory (e.g. MODEL_DIR/best_projector)',
                      flag_values=fv)
  flags.DEFINE_string('prompts', None, 'directory of source NAME.npy prompts', flag_values=fv)
  flags.DEFINE_list('names', [], 'prompt names to project (default: all)', flag_values=fv)
  flags.DEFINE_string('out', None, 'output directory (new or empty)', flag_values=fv)


def apply_projector(projector_dir: str, prompt_dir: str, out_dir: str,
                    names: Optional[Sequence[str]] = None) -> list[str]:
  """Writes `out_dir/NAME.npy` = Proj(`prompt_dir/NAME.npy`); all or nothing. Returns names."""
  from prompt_transfer_jax import files
  from prompt_transfer_jax.transfer import projector as projector_lib
  spec, params, _ = projector_lib.load(projector_dir)
  names, prompts = files.read_prompt_dir(prompt_dir, names or None)
  spec.check_source(prompts, f'prompts in {prompt_dir}')
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise ValueError(f'output directory {out_dir} exists and is not empty')
  projected = projector_lib.project(spec, params, prompts, names)
  with files.atomic_dir(out_dir) as tmp:
    for name, p in zip(names, projected):
      files.save_prompt(os.path.join(tmp, f'{name}.npy'), p)
  return names


def _apply(fv) -> int:
  """`ptj project apply`: project every prompt of a directory into the target model's space."""
  if not fv.projector or not fv.prompts or not fv.out:
    raise UsageError('--projector, --prompts and --out are required')
  names = apply_projector(fv.projector, fv.prompts, fv.out, fv.names)
  print(f'wrote {len(names)} projected prompts to {fv.out}')
  return 0


def _zero_shot_flags(fv: flags.FlagValues) -> None:
  command.gin_flags(fv)
  flags.DEFINE_multi_string('projector', [], 'projector directories (repeat for several)',
                            flag_values=fv)
  flags.DEFINE_string('source_prompts', None, 'directory of the source model\'s NAME.npy prompts',
                      flag_values=fv)
  flags.DEFINE_string('target_prompts', None, 'the target model\'s own prompts (for the relative '
                      'scores and as the matrix\'s reference columns)', flag_values=fv)
  flags.DEFINE_list('targets', [], 'target tasks (default: every training task of the projectors)',
                    flag_values=fv)
  flags.DEFINE_integer('batch_size', 32, 'examples per jitted call', flag_values=fv)
  flags.DEFINE_integer('max_examples', None, 'cap per target task', flag_values=fv)
  flags.DEFINE_string('split', 'validation', 'evaluation split', flag_values=fv)
  flags.DEFINE_integer('model_parallel', 1, 'model-parallel devices', flag_values=fv)
  flags.DEFINE_string('out', None, 'output JSON (the TPT runs go beside it)', flag_values=fv)
  flags.DEFINE_bool('tpt', False, 'also run TPT_MODEL and vanilla PT on every target task',
                    flag_values=fv)


def _column_name(config: dict) -> str:
  return f'{config.get("method", "?")}:{"+".join(config.get("train_tasks", []))}'


def project_task_prompts(model, projector_dirs: Sequence[str], source_prompt_dir: str,
                         targets: Sequence[str]) -> tuple:
  """Each projector's Proj(P_src_t) for every target task t: (one column record per projector,
  `[K, T, P, Et]`). Checks the source prompts and the target width against each projector."""
  import numpy as np
  from prompt_transfer_jax.transfer import cross_model
  from prompt_transfer_jax.transfer import projector as projector_lib
  if not projector_dirs:
    raise ValueError('no --projector given')
  sources = cross_model.read_task_prompts(source_prompt_dir, targets, 'source prompt directory')
  columns, prompts = [], []
  for d in projector_dirs:
    spec, params, config = projector_lib.load(d)
    spec.check_source(sources, f'source prompts in {source_prompt_dir}')
    if spec.target_dim != model.embed_dim:
      raise ValueError(f'projector {d} maps to width {spec.target_dim}, but the target model '
                       f'embeds in {model.embed_dim}')
    column = _column_name(config)
    if column in [c['name'] for c in columns]:
      column = f'{column}#{len(columns)}'
    columns.append({'name': column, 'dir': os.path.abspath(d), 'method': config.get('method'),
                    'train_tasks': config.get('train_tasks')})
    prompts.append(projector_lib.project(spec, params, sources))
  return columns, np.stack(prompts)


def cross_model_zero_shot(model, projector_dirs: Sequence[str], source_prompt_dir: str,
                          targets: Sequence[str], target_prompt_dir: Optional[str] = None,
                          lengths=None, projected=None, **zero_shot_kwargs) -> dict:
  """For every projector k and target task t: Proj_k(P_src_t) on t (`scores[t][k]`), and the
  full matrix of every projected prompt on every target (`matrix`, `transfer.zero_shot`).
  `projected`: `project_task_prompts`' result when the caller already has it."""
  import numpy as np
  from prompt_transfer_jax.transfer import cross_model, zero_shot
  targets = list(targets)
  columns, projected_prompts = projected or project_task_prompts(
      model, projector_dirs, source_prompt_dir, targets)
  names = [f'{c["name"]}/{t}' for c in columns for t in targets]
  prompts = projected_prompts.reshape((-1,) + projected_prompts.shape[2:])
  if target_prompt_dir:
    own = cross_model.read_task_prompts(target_prompt_dir, targets, 'target prompt directory')
    if own.shape[1:] != prompts.shape[1:]:
      raise ValueError(f'target prompts in {target_prompt_dir} have shape {own.shape[1:]}, the '
                       f'projected prompts {prompts.shape[1:]}')
    names, prompts = names + targets, np.concatenate([prompts, own])
  result = zero_shot.zero_shot_matrix(model, prompts, names, targets, lengths, **zero_shot_kwargs)
  matrix = result.to_json()
  scores = [[matrix['matrix'][i][names.index(f'{c["name"]}/{t}')] for c in columns]
            for i, t in enumerate(targets)]
  relative = None
  if target_prompt_dir:
    relative = [[matrix['relative'][i][names.index(f'{c["name"]}/{t}')] for c in columns]
                for i, t in enumerate(targets)]
  return {'kind': RESULT_KIND, 'targets': targets, 'projectors': columns, 'scores': scores,
          'relative': relative, 'metrics': matrix['metrics'], 'matrix': matrix,
          'target_model': getattr(model, 'source', None)}


def _tpt(fv, result: dict, out_dir: str) -> dict:
  """TPT_MODEL from Proj_k(P_src_t) and vanilla PT on every target t, with their speedups."""
  from prompt_transfer_jax import files
  from prompt_transfer_jax.transfer import cross_model, speedup
  from prompt_transfer_jax.transfer import projector as projector_lib
  gin_files, bindings = list(fv.gin_file), list(fv.gin_bindings)
  sources = cross_model.read_task_prompts(fv.source_prompts, result['targets'],
                                          'source prompt directory')
  out = {}
  for t_index, t in enumerate(result['targets']):
    vanilla = runs.train_run(gin_files, bindings + [
        f"MODEL_DIR = '{os.path.join(out_dir, 'pt', t)}'", f"MIXTURE_OR_TASK_NAME = '{t}'"])
    for column in result['projectors']:
      spec, params, _ = projector_lib.load(column['dir'])
      tag = column['name'].replace(':', '_').replace('+', '_').replace('#', '_')
      prompt_file = os.path.join(out_dir, 'projected', tag, f'{t}.npy')
      files.save_prompt(prompt_file, projector_lib.project(spec, params, sources[t_index]))
      transfer = runs.train_run(gin_files + ['prompts/from_file.gin'], bindings + [
          f"MODEL_DIR = '{os.path.join(out_dir, 'tpt', tag, t)}'",
          f"MIXTURE_OR_TASK_NAME = '{t}'", f"PROMPT_FILE = '{prompt_file}'"])
      comparison = speedup.compare_runs(speedup.load_history(vanilla['model_dir']),
                                        speedup.load_history(transfer['model_dir']))
      out.setdefault(t, {})[column['name']] = dict(
          comparison, pt_dir=vanilla['model_dir'], tpt_dir=transfer['model_dir'])
  return out


def _zero_shot(fv) -> int:
  """`ptj project zero-shot`: projected prompts on every target task (and `--tpt`: TPT_MODEL)."""
  if not fv.projector or not fv.source_prompts or not fv.out:
    raise UsageError('--projector, --source_prompts and --out are required')
  fv.gin_bindings.append('ptj.target_model.model = %MODEL')
  runs.setup_flags(fv)
  import gin
  from prompt_transfer_jax.files import write_json
  from prompt_transfer_jax.transfer import cross_model, projector as projector_lib
  model = runs.gin_call(cross_model.target_model)
  lengths = None
  try:
    lengths = gin.query_parameter('%TASK_FEATURE_LENGTHS')
  except ValueError:
    pass
  targets = list(fv.targets)
  if not targets:
    for d in fv.projector:
      targets += [t for t in projector_lib.load_spec(d)[1].get('train_tasks', [])
                  if t not in targets]
  gin.clear_config()
  result = cross_model_zero_shot(model, fv.projector, fv.source_prompts, targets,
                                 fv.target_prompts, lengths, batch_size=fv.batch_size,
                                 split=fv.split, max_examples=fv.max_examples,
                                 model_parallel=fv.model_parallel)
  if fv.tpt:
    result['tpt'] = _tpt(fv, result, os.path.splitext(os.path.abspath(fv.out))[0] + '_runs')
  write_json(fv.out, result)
  width = max(len(t) for t in result['targets'])
  print('zero-shot Proj(P_src_t) on t (columns: ' + ', '.join(
      c['name'] for c in result['projectors']) + ')')
  for i, t in enumerate(result['targets']):
    rel = '' if result['relative'] is None else '  relative ' + ' '.join(
        '  n/a' if v is None else f'{v:5.1f}%' for v in result['relative'][i])
    print(f'  {t:<{width}} ' + ' '.join(f'{v:6.1f}' for v in result['scores'][i]) + rel)
  for t, per in result.get('tpt', {}).items():
    for name, c in per.items():
      comp = c['comparable_result']
      print(f'  TPT_MODEL {t} from {name}: PT best {c["baseline_best"]:.1f} at step '
            f'{comp["baseline_step"]}, reached at step {comp["transfer_step"]} '
            f'(speedup {comp["steps_speedup"]}), convergence speedup '
            f'{c["convergence"]["steps_speedup"]}')
  print(f'wrote {fv.out}')
  return 0


COMMANDS = (
    command.Command('train', 'train a projector (task tuning or distance minimizing)',
                    command.gin_flags, _train),
    command.Command('apply', 'project every prompt of a directory into the target space',
                    _apply_flags, _apply),
    command.Command('zero-shot', 'projected prompts on every target task (--tpt: TPT_MODEL)',
                    _zero_shot_flags, _zero_shot),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
  return command.run_group('ptj project', list(sys.argv[1:] if argv is None else argv), __doc__,
                           COMMANDS)


if __name__ == '__main__':
  sys.exit(main())
