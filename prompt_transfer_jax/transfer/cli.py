"""`ptj transfer zero-shot | speedup | study`: cross-task transfer of prompts (paper section 3).

    ptj transfer zero-shot --prompts PROMPT_DIR --model CHECKPOINT --out transfer.json
    ptj transfer speedup --baseline RUN_DIR --transfer TPT_RUN_DIR
    ptj transfer study --out study_out

`zero-shot` scores every `NAME.npy` of PROMPT_DIR on every target task (default: the prompt
names) and writes the matrix `ptj analyze indicators --transfer` reads. `speedup` compares a
prompt-tuning run from the default initialization with one started from a source prompt
(`ptj train ... --gin_file=prompts/from_file.gin --gin.PROMPT_FILE="'SOURCE.npy'"`).
`study` runs the synthetic transfer study end to end. Errors print one line and exit 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

_ERRORS = (ValueError, KeyError, FileNotFoundError, OSError, RuntimeError)


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


def _zero_shot(args) -> int:
  from prompt_transfer_jax.files import read_prompt_dir
  from prompt_transfer_jax.transfer import zero_shot
  sources, prompts = read_prompt_dir(args.prompts, _names(args.sources))
  targets = _names(args.targets) or sources
  if sorted(targets) == sorted(sources):     # same set: columns in target order (square file)
    order = [sources.index(t) for t in targets]
    sources, prompts = targets, prompts[order]
  lengths = None
  if args.inputs_length or args.targets_length:
    default = zero_shot.default_lengths(targets)
    lengths = {'inputs': args.inputs_length or default['inputs'],
               'targets': args.targets_length or default['targets']}
  model = load_frozen_model(args.model, args.family, args.config,
                            _json_arg(args.config_overrides, '--config-overrides'),
                            args.frozen_dtype)
  result = zero_shot.zero_shot_matrix(
      model, prompts, sources, targets, lengths, args.batch_size, args.prompt_chunk, args.split,
      args.max_examples, None if args.baseline == 'none' else args.baseline, args.baseline_seed,
      args.model_parallel, progress=True)
  result.save(args.out)
  width = max(len(t) for t in targets)
  print(f'zero-shot scores (rows = targets, columns = sources {", ".join(sources)}):')
  for i, t in enumerate(targets):
    base = f'  random {result.baseline["scores"][i]:6.1f}' if result.baseline else ''
    print(f'  {t:<{width}} ' + ' '.join(f'{v:6.1f}' for v in result.matrix[i]) + base)
  print(f'wrote {args.out} ({result.seconds:.0f} s)')
  return 0


def _speedup(args) -> int:
  from prompt_transfer_jax.files import write_json
  from prompt_transfer_jax.transfer import speedup
  result = speedup.compare_runs(speedup.load_history(args.baseline),
                                speedup.load_history(args.transfer), args.tol, args.fraction,
                                args.time_key)
  result.update(baseline=os.path.abspath(args.baseline), transfer=os.path.abspath(args.transfer))
  for kind in ('convergence', 'comparable_result'):
    s = result[kind]
    steps = s['steps_speedup']
    print(f'{kind.replace("_", "-")} speedup: '
          f'{"N/A" if steps is None else steps} (steps {s["baseline_step"]} vs '
          f'{"never" if s["transfer_step"] is None else s["transfer_step"]}), '
          f'wall time {"N/A" if s["time_speedup"] is None else s["time_speedup"]}')
  print(f'best score: baseline {result["baseline_best"]:.2f}, transfer '
        f'{result["transfer_best"]:.2f} (transfer run started at {result["transfer_start"]:.2f})')
  if args.out:
    write_json(args.out, result)
    print(f'wrote {args.out}')
  return 0


def _study(args) -> int:
  from prompt_transfer_jax.transfer import study
  result = study.run_study(args.out, _names(args.tasks), args.steps, args.eval_period,
                           args.batch_size, args.prompt_length, args.model_size, args.tpt,
                           args.baseline, args.bootstrap)
  print()
  print(study.summary(result))
  print(f'\ndone in {result["seconds"]:.0f} s; study.json, indicators.json and report/ in '
        f'{args.out}')
  return 0


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='ptj transfer', description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest='command', required=True)

  p = sub.add_parser('zero-shot', help='score source prompts on target tasks (nothing trained)')
  p.add_argument('--prompts', required=True, help='directory of NAME.npy source prompts')
  p.add_argument('--sources', help='comma-separated prompt names (default: all in --prompts)')
  p.add_argument('--targets', help='comma-separated target tasks (default: the source names)')
  p.add_argument('--model', required=True,
                 help='checkpoint (T5X / Orbax / HF directory) or preset name (random weights)')
  p.add_argument('--family', default='t5', choices=('t5', 'roberta'))
  p.add_argument('--config', help='preset the checkpoint is checked against (default: inferred)')
  p.add_argument('--config-overrides', help='JSON object of config fields to replace')
  p.add_argument('--frozen-dtype', help="e.g. 'bfloat16' for the frozen weights")
  p.add_argument('--inputs-length', type=int, help='default: the largest of the targets')
  p.add_argument('--targets-length', type=int, help='default: the largest of the targets')
  p.add_argument('--batch-size', type=int, default=32, help='examples per jitted call')
  p.add_argument('--prompt-chunk', type=int, default=8, help='prompts per jitted call')
  p.add_argument('--split', default='validation')
  p.add_argument('--max-examples', type=int, help='cap per target (default: every example)')
  p.add_argument('--baseline', default='uniform', choices=('uniform', 'zeros', 'none'),
                 help='random-prompt baseline column: U[0,1) (the 1.0 code), zeros, or none')
  p.add_argument('--baseline-seed', type=int, default=0)
  p.add_argument('--model-parallel', type=int, default=1)
  p.add_argument('--out', required=True, help='output JSON')
  p.set_defaults(fn=_zero_shot)

  p = sub.add_parser('speedup', help='TPT speedups of a transfer run over a baseline run')
  p.add_argument('--baseline', required=True, help='run directory (or metrics.json), default init')
  p.add_argument('--transfer', required=True, help='run directory (or metrics.json), source init')
  p.add_argument('--tol', type=float, default=0.0,
                 help='convergence point: first step within TOL points of the run\'s own best')
  p.add_argument('--fraction', type=float, default=1.0,
                 help='comparable result: FRACTION x the baseline\'s best score (default 1.0)')
  p.add_argument('--time-key', default='train_s', choices=('train_s', 'elapsed_s'))
  p.add_argument('--out', help='output JSON')
  p.set_defaults(fn=_speedup)

  p = sub.add_parser('study', help='the synthetic transfer study, end to end')
  p.add_argument('--out', required=True, help='output directory (finished runs are reused)')
  p.add_argument('--tasks', help='comma-separated synthetic tasks (default: all)')
  p.add_argument('--steps', type=int, default=300, help='prompt-tuning steps per task')
  p.add_argument('--eval-period', type=int, default=50)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--prompt-length', type=int, default=20)
  p.add_argument('--model-size', default='demo', choices=('demo', 'tiny'))
  p.add_argument('--tpt', action='store_true',
                 help='also run transfer by initialization from each best other source')
  p.add_argument('--baseline', default='uniform', choices=('uniform', 'zeros'))
  p.add_argument('--bootstrap', type=int, default=2000, help='bootstrap resamples for the CIs')
  p.set_defaults(fn=_study)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  try:
    return args.fn(args)
  except _ERRORS as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f'ptj transfer {args.command}: error: {message}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())
