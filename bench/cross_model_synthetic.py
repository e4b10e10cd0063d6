"""Cross-model transfer on the synthetic tasks, end to end (the measurement behind issue 9).

Source T5 (d_model 128) -> target T5 (the t5_synth_prompt.gin model, d_model 256), both random
frozen networks over the synthetic vocabulary:
1. prompt-tune the source on the three sentiment tasks;
2. task-tune a projector on ONE sentiment task (synth_sentiment_a);
3. zero-shot: Proj(P_src_t) on the target's task t for every sentiment task (chance = 50);
4. TPT_MODEL: prompt-tune the target on t from Proj(P_src_t) and from the default init (vanilla
   PT), and compare the steps to the vanilla best (transfer/speedup.py).

    PYTHONPATH=. python bench/cross_model_synthetic.py --out /tmp/xmodel --steps 300

Finished runs in --out are reused. Prints one JSON summary line at the end.

Measured (defaults, 2 shared CPU cores, 45 min; eval on 200 validation examples, chance 50):
source PT best 83.0 / 88.0 / 87.5 (a / b / c); projector task-tuned on a: 98.0 on a.
Zero-shot Proj(P_src_t) on the target: a 98.0, b 70.0, c 69.5. Vanilla PT best (at step 300,
its last evaluation, so still improving) a 94.0, b 93.5, c 96.5; TPT_MODEL reaches it at step
0 / 250 / 275 (best 98.0 / 98.5 / 97.5): comparable-result speedup 1.2x on b, 1.09x on c.
"""
import argparse
import json
import os
import time

import numpy as np

SENTIMENT = ['synth_sentiment_a', 'synth_sentiment_b', 'synth_sentiment_c']
SOURCE_MODEL = ("{'vocab_size': %ptj.SYNTH_VOCAB_SIZE, 'emb_dim': 128, 'num_heads': 2, "
                "'head_dim': 64, 'mlp_dim': 256, 'dropout_rate': 0.0}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--projector_steps', type=int, default=300)
  parser.add_argument('--eval_period', type=int, default=25)
  parser.add_argument('--prompt_length', type=int, default=20)
  args = parser.parse_args()
  from prompt_transfer_jax.files import save_prompt
  from prompt_transfer_jax.trainer import runs
  from prompt_transfer_jax.transfer import cross_model, speedup
  from prompt_transfer_jax.transfer import projector as projector_lib
  start = time.time()
  base = ['models/t5_synth_prompt.gin', 'runs/prompt_train.gin']
  common = ["TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 2}", f'TRAIN_STEPS = {args.steps}',
            f'EVAL_PERIOD = {args.eval_period}', f'PROMPT_LENGTH = {args.prompt_length}',
            'ptj.train.max_eval_examples = 200']
  src_dir = os.path.join(args.out, 'source_prompts')
  os.makedirs(src_dir, exist_ok=True)
  source_scores = {}
  for t in SENTIMENT:
    s = runs.train_run(base, common + [f"MODEL_DIR = '{args.out}/source_pt/{t}'",
                                       f"MIXTURE_OR_TASK_NAME = '{t}'",
                                       f'ptj.t5_model.config_overrides = {SOURCE_MODEL}'])
    save_prompt(os.path.join(src_dir, f'{t}.npy'), s['best_prompt'])
    source_scores[t] = s['best_score']
    print(f'source PT {t}: best {s["best_score"]:.1f} at step {s["best_step"]}', flush=True)

  proj_dir = os.path.join(args.out, 'projector')
  summary = runs.run_gin(
      lambda: cross_model.train_projector(log=print), base + ['runs/projector_task_tuning.gin'],
      common + [f"MODEL_DIR = '{proj_dir}'", "TRAIN_TASKS = ['synth_sentiment_a']",
                f"SOURCE_PROMPT_DIR = '{src_dir}'", 'HIDDEN_DIM = 256',
                f'TRAIN_STEPS = {args.projector_steps}'])
  spec, params, _ = projector_lib.load(summary['projector_dir'])
  names, projected = SENTIMENT, projector_lib.project(
      spec, params, np.stack([np.load(os.path.join(src_dir, f'{t}.npy')) for t in SENTIMENT]))
  proj_prompts = os.path.join(args.out, 'projected')
  os.makedirs(proj_prompts, exist_ok=True)
  zero_shot, tpt = {}, {}
  for t, p in zip(names, projected):
    path = os.path.join(proj_prompts, f'{t}.npy')
    save_prompt(path, p)
    vanilla = runs.train_run(base, common + [f"MODEL_DIR = '{args.out}/target_pt/{t}'",
                                             f"MIXTURE_OR_TASK_NAME = '{t}'"])
    transfer = runs.train_run(base + ['prompts/from_file.gin'],
                              common + [f"MODEL_DIR = '{args.out}/target_tpt/{t}'",
                                        f"MIXTURE_OR_TASK_NAME = '{t}'", f"PROMPT_FILE = '{path}'"])
    zero_shot[t] = transfer['history'][0]['score']      # step 0: Proj(P_src_t), nothing tuned
    tpt[t] = speedup.compare_runs(speedup.load_history(vanilla['model_dir']),
                                  speedup.load_history(transfer['model_dir']))
    c = tpt[t]['comparable_result']
    print(f'{t}: zero-shot {zero_shot[t]:.1f}; PT best {tpt[t]["baseline_best"]:.1f} at step '
          f'{c["baseline_step"]}, TPT_MODEL reaches it at step {c["transfer_step"]} (best '
          f'{tpt[t]["transfer_best"]:.1f})', flush=True)
  print(json.dumps({'source_best': source_scores, 'projector_best': summary['best_score'],
                    'zero_shot': zero_shot,
                    'steps_to_vanilla_best': {t: [v['comparable_result']['baseline_step'],
                                                  v['comparable_result']['transfer_step']]
                                              for t, v in tpt.items()},
                    'seconds': round(time.time() - start)}))


if __name__ == '__main__':
  main()
