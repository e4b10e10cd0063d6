"""`ptj transfer zero-shot | speedup`: cross-task transfer of prompts (paper section 3).

    ptj transfer zero-shot --prompts=PROMPT_DIR --model=CHECKPOINT --out=transfer.json
    ptj transfer speedup --baseline=RUN_DIR --transfer=TPT_RUN_DIR

`zero-shot` scores every `NAME.npy` of PROMPT_DIR on every target task (default: the prompt
names) and writes the matrix `ptj analyze indicators --transfer` reads. `speedup` compares a
prompt-tuning run from the default initialization with one started from a source prompt
(`ptj train ... --gin_file=prompts/from_file.gin --gin.PROMPT_FILE="'SOURCE.npy'"`). The whole
study is `ptj study` (`prompt_transfer_jax/study`). Errors and exit codes follow
`prompt_transfer_jax.command` (2 bad input, 1 failure).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

from absl import flags

from prompt_transfer_jax import command


def _names(text: Optional[str]) -> Optional[list]:
  return [n for n in text.split(',') if n] if text else None


def load_frozen_model(model: str, family: str = 't5', config: Optional[str] = None,
                      overrides: Optional[dict] = None, frozen_dtype: Optional[str] = None):
  """A `FrozenModel` from a checkpoint or a preset name (random): `frozen_model.load`."""
  from prompt_transfer_jax.trainer import frozen_model
  return frozen_model.load(model, family, config, overrides, frozen_dtype)


def _json_arg(text: Optional[str], flag: str) -> Optional[dict]:
  if not text:
    return None
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'{flag} must be a JSON object, got {text!r} ({e})') from None
  if not isinstance(value, dict):
    raise ValueError(f'{flag} must be a JSON object, got {text!r}')
  return value


def _zero_shot(fv) -> int:
  from prompt_transfer_jax.files import read_prompt_dir
  from prompt_transfer_jax.transfer import zero_shot
  sources, prompts = read_prompt_dir(fv.prompts, _names(fv.sources))
  targets = _names(fv.targets) or sources
  if sorted(targets) == sorted(sources):     # same set: columns in target order (square file)
    order = [sources.index(t) for t in targets]
    sources, prompts = targets, prompts[order]
  lengths = None
  if fv.inputs_length or fv.targets_length:
    default = zero_shot.default_lengths(targets)
    lengths = {'inputs': fv.inputs_length or default['inputs'],
               'targets': fv.targets_length or default['targets']}
  model = load_frozen_model(fv.model, fv.family, fv.config,
                            _json_arg(fv.config_overrides, '--config_overrides'),
                            fv.frozen_dtype)
  result = zero_shot.zero_shot_matrix(
      model, prompts, sources, targets, lengths, fv.batch_size, fv.prompt_chunk, fv.split,
      fv.max_examples, None if fv.baseline == 'none' else fv.baseline, fv.baseline_seed,
      fv.model_parallel, progress=True)
  result.save(fv.out)
  width = max(len(t) for t in targets)
  print(f'zero-shot scores (rows = targets, columns = sources {", ".join(sources)}):')
  for i, t in enumerate(targets):
    base = f'  random {result.baseline["scores"][i]:6.1f}' if result.baseline else ''
    print(f'  {t:<{width}} ' + ' '.join(f'{v:6.1f}' for v in result.matrix[i]) + base)
  print(f'wrote {fv.out} ({result.seconds:.0f} s)')
  return 0


def _speedup(fv) -> int:
  from prompt_transfer_jax.files import write_json
  from prompt_transfer_jax.transfer import speedup
  result = speedup.compare_runs(speedup.load_history(fv.baseline),
                                speedup.load_history(fv.transfer), fv.tol, fv.fraction,
                                fv.time_key)
  result.update(baseline=os.path.abspath(fv.baseline), transfer=os.path.abspath(fv.transfer))
  for kind in ('convergence', 'comparable_result'):
    s = result[kind]
    steps = s['steps_speedup']
    print(f'{kind.replace("_", "-")} speedup: '
          f'{"N/A" if steps is None else steps} (steps {s["baseline_step"]} vs '
          f'{"never" if s["transfer_step"] is None else s["transfer_step"]}), '
          f'wall time {"N/A" if s["time_speedup"] is None else s["time_speedup"]}')
  print(f'best score: baseline {result["baseline_best"]:.2f}, transfer '
        f'{result["transfer_best"]:.2f} (transfer run started at {result["transfer_start"]:.2f})')
  if fv.out:
    write_json(fv.out, result)
    print(f'wrote {fv.out}')
  return 0


def _zero_shot_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('prompts', None, 'directory of NAME.npy source prompts', flag_values=fv)
  flags.DEFINE_string('sources', None, 'comma-separated prompt names (default: all in --prompts)',
                      flag_values=fv)
  flags.DEFINE_string('targets', None, 'comma-separated target tasks (default: the source names)',
                      flag_values=fv)
  flags.DEFINE_string('model', None, 'checkpoint (T5X / Orbax / HF directory) or preset name '
                      '(random weights)', flag_values=fv)
  flags.DEFINE_enum('family', 't5', ['t5', 'roberta'], 'backbone family', flag_values=fv)
  flags.DEFINE_string('config', None, 'preset the checkpoint is checked against (default: '
                      'inferred)', flag_values=fv)
  flags.DEFINE_string('config_overrides', None, 'JSON object of config fields to replace',
                      flag_values=fv)
  flags.DEFINE_string('frozen_dtype', None, "e.g. 'bfloat16' for the frozen weights",
                      flag_values=fv)
  flags.DEFINE_integer('inputs_length', None, 'default: the largest of the targets',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('targets_length', None, 'default: the largest of the targets',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('batch_size', 32, 'examples per jitted call', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('prompt_chunk', 8, 'prompts per jitted call', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_string('split', 'validation', 'split of the target tasks', flag_values=fv)
  flags.DEFINE_integer('max_examples', None, 'cap per target (default: every example)',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_enum('baseline', 'uniform', ['uniform', 'zeros', 'none'],
                    'random-prompt baseline column: U[0,1) (the 1.0 code), zeros, or none',
                    flag_values=fv)
  flags.DEFINE_integer('baseline_seed', 0, 'seed of the random-prompt baseline', flag_values=fv)
  flags.DEFINE_integer('model_parallel', 1, 'model-parallel mesh axis size', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_string('out', None, 'output JSON', flag_values=fv)
  command.require(fv, 'prompts', 'model', 'out')


def _speedup_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('baseline', None, 'run directory (or metrics.json), default init',
                      flag_values=fv)
  flags.DEFINE_string('transfer', None, 'run directory (or metrics.json), source init',
                      flag_values=fv)
  flags.DEFINE_float('tol', 0.0, "convergence point: first step within TOL points of the run's "
                     'own best', flag_values=fv)
  flags.DEFINE_float('fraction', 1.0, "comparable result: FRACTION x the baseline's best score",
                     flag_values=fv)
  flags.DEFINE_enum('time_key', 'train_s', ['train_s', 'elapsed_s'], 'which time to compare',
                    flag_values=fv)
  flags.DEFINE_string('out', None, 'output JSON', flag_values=fv)
  command.require(fv, 'baseline', 'transfer')


COMMANDS = (
    command.Command('zero-shot', 'score source prompts on target tasks (nothing trained)',
                    _zero_shot_flags, _zero_shot),
    command.Command('speedup', 'TPT speedups of a transfer run over a baseline run',
                    _speedup_flags, _speedup),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
  return command.run_group('ptj transfer', list(sys.argv[1:] if argv is None else argv),
                           __doc__.splitlines()[0], COMMANDS)


if __name__ == '__main__':
  sys.exit(main())
