"""`ptj demo`: prompt tuning end to end on the synthetic tasks, in a few minutes on a CPU.

1. `ptj train`: tune a 20-token prompt on a frozen random T5 (d_model 256) for one synthetic
   sentiment task, evaluating every 50 steps and keeping the best prompt;
2. `ptj eval`: score the best prompt on every synthetic task (zero-shot cross-task transfer:
   the sibling sentiment tasks share the rule and label words, the others do not);
3. `ptj export`: write the best prompt as a PEFT adapter and in prompt-tuning's numpy layout.

All three go through the same entry points (gin files + flags) a user would type.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from typing import Sequence

LENGTHS = "{'inputs': 16, 'targets': 2}"
MODEL_GIN = 'models/t5_synth_prompt.gin'


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='ptj demo', description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', default='demo_out', help='output directory (default: demo_out)')
  parser.add_argument('--task', default='synth_sentiment_a', help='synthetic task to tune on')
  parser.add_argument('--steps', type=int, default=300, help='training steps (default: 300)')
  parser.add_argument('--eval_period', type=int, default=50, help='steps between evaluations')
  return parser


def _quietly(fn, argv):
  """Runs a CLI entry point, returning (exit code, its stdout)."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = fn(argv)
  return code, out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  from prompt_transfer_jax.trainer import cli
  start = time.perf_counter()
  out = os.path.abspath(args.out)
  model_dir = os.path.join(out, f'train_{args.task}')
  print(f'ptj demo: prompt tuning a frozen random T5 (d_model 256) on {args.task!r}, '
        f'{args.steps} steps -> {out}', flush=True)

  print('[1/3] train (ptj train)', flush=True)
  code, stdout = _quietly(cli.train_main, [
      f'--gin_file={MODEL_GIN}', '--gin_file=runs/prompt_train.gin',
      f"--gin.MODEL_DIR='{model_dir}'", f"--gin.MIXTURE_OR_TASK_NAME='{args.task}'",
      f'--gin.TASK_FEATURE_LENGTHS={LENGTHS}', f'--gin.TRAIN_STEPS={args.steps}',
      f'--gin.EVAL_PERIOD={args.eval_period}'])
  if code:
    return code
  summary = json.loads(stdout.strip().splitlines()[-1])
  best_prompt = os.path.join(model_dir, 'best_prompt.npy')
  print(f'      best step {summary["best_step"]}: {summary["metric"]} '
        f'{summary["best_score"]:.1f} (chance 50.0); history in {model_dir}/metrics.json',
        flush=True)

  print('[2/3] evaluate the best prompt on every synthetic task (ptj eval)', flush=True)
  from prompt_transfer_jax import tasks
  scores = {}
  for name in tasks.task_names('synth'):
    code, stdout = _quietly(cli.eval_main, [
        f'--gin_file={MODEL_GIN}', '--gin_file=runs/prompt_eval.gin',
        f"--gin.PROMPT_FILE='{best_prompt}'", f"--gin.MIXTURE_OR_TASK_NAME='{name}'",
        f'--gin.TASK_FEATURE_LENGTHS={LENGTHS}'])
    if code:
      return code
    scores[name] = json.loads(stdout.strip().splitlines()[-1])['score']
    kind = 'trained on' if name == args.task else (
        'same type' if tasks.get_task_info(name).task_type ==
        tasks.get_task_info(args.task).task_type else 'other type')
    print(f'      {name:<20} accuracy {scores[name]:5.1f}  ({kind})', flush=True)

  print('[3/3] export (ptj export)', flush=True)
  peft_dir, numpy_dir = os.path.join(out, 'peft_adapter'), os.path.join(out, 'prompt_tuning')
  for fmt, target in (('peft', peft_dir), ('numpy', numpy_dir)):
    code, stdout = _quietly(cli.export_main, [f'--prompt={model_dir}', f'--format={fmt}',
                                              f'--out={target}'])
    if code:
      return code
    print(f'      {fmt:<5} -> {stdout.strip()}', flush=True)
  with open(os.path.join(out, 'demo_scores.json'), 'w') as f:
    json.dump({'task': args.task, 'train': summary, 'zero_shot_accuracy': scores}, f, indent=1)
  print(f'done in {time.perf_counter() - start:.0f} s; scores in {out}/demo_scores.json',
        flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
