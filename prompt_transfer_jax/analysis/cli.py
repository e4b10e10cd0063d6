"""`ptj analyze ...` and `ptj bank ...`: indicators, Spearman, report, activations, prompt bank.

Only `ptj analyze activations` (and `bank` options that run the model or, with `--short-run`,
the trainer) import JAX; everything else is numpy / scipy / matplotlib.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Optional

import numpy as np

from prompt_transfer_jax.files import atomic_path, read_prompt, read_prompt_dir, write_json
from prompt_transfer_jax.analysis.indicators import INDICATORS

_ERRORS = (ValueError, KeyError, FileNotFoundError, OSError)


def _fail(prog: str, error: Exception) -> int:
  message = error.args[0] if isinstance(error, KeyError) and error.args else error
  print(f'{prog}: error: {message}', file=sys.stderr)
  return 2


# ----------------------------------------------------------------------------- analyze

def _compute(args) -> dict:
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.recommend import leave_one_out_hit_rates
  from prompt_transfer_jax.analysis.spearman import load_transfer_matrix
  from prompt_transfer_jax.analysis.transferability import analyze_transferability

  tasks, transfer = load_transfer_matrix(args.transfer)
  _, prompts = read_prompt_dir(args.prompts, tasks)
  activations = layer_ids = None
  if args.activations:
    store = load_activations(args.activations)
    activations, layer_ids = store.select(tasks), store.layers
  result = analyze_transferability(tasks, transfer, prompts, activations, layer_ids,
                                   args.group_size, args.bootstrap, args.seed)
  result['hit_rates'] = {name: leave_one_out_hit_rates(transfer, m, (1, 3)).to_json(tasks)
                         for name, m in result['similarity'].items()}
  result['inputs'] = {'prompts': os.path.abspath(args.prompts),
                      'transfer': os.path.abspath(args.transfer),
                      'activations': os.path.abspath(args.activations) if args.activations else None}
  return result


def _add_compute_args(p, required: bool) -> None:
  p.add_argument('--prompts', required=required, help='directory of NAME.npy prompts, one per task')
  p.add_argument('--transfer', required=required,
                 help='JSON {"tasks": [...], "matrix": [[...]]}, rows = targets, columns = sources')
  p.add_argument('--activations', help='activation .npz (ptj analyze activations) for ON')
  p.add_argument('--group-size', type=int, default=3, help='layers per layer group (default 3)')
  p.add_argument('--bootstrap', type=int, default=2000, help='bootstrap resamples (0 = none)')
  p.add_argument('--seed', type=int, default=0)


def _print_summary(result: dict) -> None:
  from prompt_transfer_jax.analysis.transferability import spearman_table
  print(spearman_table(result))
  hits = result.get('hit_rates')
  if hits:
    print('\nleave-one-out recommendation (best zero-shot source found):')
    for name, h in hits.items():
      cells = [f'top-{k} {100 * v:.0f}% (chance {100 * h["chance"][k]:.0f}%)'
               for k, v in h['hit_rate'].items()]
      print(f'  {name:<10} ' + '  '.join(cells))


def _indicators(args) -> int:
  result = _compute(args)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'indicators.json')
  write_json(path, result)
  _print_summary(result)
  print(f'\nwrote {path}')
  return 0


def _similarity(args) -> int:
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.indicators import similarity_matrices
  names, prompts = read_prompt_dir(args.prompts, args.names.split(',') if args.names else None)
  acts = load_activations(args.activations).select(names) if args.activations else None
  sims = similarity_matrices(prompts, acts)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'similarity.json')
  write_json(path, {'tasks': names, 'similarity': {k: m.tolist() for k, m in sims.items()}})
  print('most similar other prompt, by indicator:')
  print(('  ' + 'prompt'.ljust(max(map(len, names))) + ''.join(f'  {k:<18}' for k in sims)).rstrip())
  for i, name in enumerate(names):
    cells = []
    for m in sims.values():
      row = np.where(np.arange(len(names)) == i, -np.inf, m[i])
      cells.append(f'  {names[int(np.argmax(row))]:<18}')
    print(('  ' + name.ljust(max(map(len, names))) + ''.join(cells)).rstrip())
  print(f'\nwrote {path}')
  return 0


def _report(args) -> int:
  import json

  from prompt_transfer_jax.analysis.report import render_report
  if args.indicators:
    try:
      with open(args.indicators) as f:
        result = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{args.indicators}: not valid JSON ({e})') from None
    missing = {'tasks', 'transfer', 'similarity', 'spearman', 'spearman_detail',
               'paper_spearman'} - set(result)
    if missing:
      raise ValueError(f'{args.indicators}: not an indicators.json (missing {", ".join(sorted(missing))})')
  else:
    if not (args.prompts and args.transfer):
      raise ValueError('give --indicators FILE, or --prompts DIR and --transfer FILE')
    result = _compute(args)
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, 'indicators.json'), result)
  figures = render_report(result, args.out, args.title)
  print(f'wrote {len(figures)} figures, report.md and report.html to {args.out}')
  return 0


def _parse_layers(text: Optional[str]):
  if not text:
    return None
  try:
    return tuple(int(x) for x in text.split(','))
  except ValueError:
    raise ValueError(f'--layers must be comma-separated integers, got {text!r}') from None


def _position(text: str):
  return int(text) if text.lstrip('-').isdigit() else text


def _load_model(args):
  """(backbone, params) from `--model` (a preset name or a checkpoint) for `--family`."""
  from prompt_transfer_jax.trainer import frozen_model
  model = frozen_model.load(args.model, args.family, args.config)
  return model.backbone, model.params


def _model_args(p, required: bool) -> None:
  """Model and extraction options (shared by `analyze activations` and `bank recommend`)."""
  p.add_argument('--model', required=required,
                 help='preset name (random weights) or checkpoint: HF T5 / T5X / Orbax for t5, '
                 'HF directory for roberta')
  p.add_argument('--family', default='t5', choices=('t5', 'roberta'))
  p.add_argument('--config', help='T5 preset describing a T5X checkpoint (default: inferred)')
  p.add_argument('--stack', choices=('decoder', 'encoder'),
                 help='default: decoder for t5, encoder for roberta')
  p.add_argument('--position', type=_position,
                 help='first_step | mask_slot | after_prompt | prompt_mean | INDEX '
                 '(default: first_step for t5, mask_slot for roberta)')
  p.add_argument('--kind', default='ffn_pre_activation', choices=('ffn_pre_activation', 'ffn_hidden'))
  p.add_argument('--layers', help='comma-separated layer indices (default all)')
  p.add_argument('--sentinel-id', type=int, default=32099,
                 help='t5 input <extra_id_0> id (default 32099)')
  p.add_argument('--append-eos', action='store_true', help='t5 input <extra_id_0> </s>')
  p.add_argument('--inputs', help='.npz of batch fields (encoder_input_tokens [M, L], '
                 'decoder_input_tokens [M, T]) to average over instead of the default input')
  p.add_argument('--chunk-size', type=int, default=8, help='prompts per jitted call')


def _extraction(args):
  from prompt_transfer_jax.analysis import activations as act
  default = act.ROBERTA_SPEC if args.family == 'roberta' else act.T5_SPEC
  spec = act.ExtractionSpec(args.stack or default.stack,
                            default.position if args.position is None else args.position,
                            args.kind, _parse_layers(args.layers))
  if args.inputs:
    with np.load(args.inputs, allow_pickle=False) as data:
      inputs = {k: data[k].astype(np.int32) for k in data.files}
  elif args.family == 'roberta':
    inputs = act.roberta_bos_inputs()
  else:
    inputs = act.t5_sentinel_inputs(args.sentinel_id, args.append_eos)
  return spec, inputs


def _activations(args) -> int:
  from prompt_transfer_jax.analysis.activations import extract_to_file
  names = args.names.split(',') if args.names else None
  names, prompts = read_prompt_dir(args.prompts, names)
  spec, inputs = _extraction(args)
  backbone, params = _load_model(args)
  extract_to_file(args.out, backbone, params, names, prompts, inputs, spec, args.chunk_size,
                  meta={'model': args.model, 'family': args.family, 'config': args.config})
  print(f'wrote activations of {len(names)} prompts to {args.out}')
  return 0


def analyze_main(argv) -> int:
  parser = argparse.ArgumentParser(prog='ptj analyze', description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest='command', required=True)
  p = sub.add_parser('indicators', help='similarity indicators and their Spearman vs transfer')
  _add_compute_args(p, required=True)
  p.add_argument('--out', required=True, help='output directory (indicators.json)')
  p.set_defaults(fn=_indicators)
  p = sub.add_parser('similarity', help='similarity matrices of prompts (no transfer matrix needed)')
  p.add_argument('--prompts', required=True, help='directory of NAME.npy prompts')
  p.add_argument('--names', help='comma-separated prompt names (default all)')
  p.add_argument('--activations', help='activation .npz for ON')
  p.add_argument('--out', required=True, help='output directory (similarity.json)')
  p.set_defaults(fn=_similarity)
  p = sub.add_parser('report', help='PNG figures and a Markdown/HTML summary')
  p.add_argument('--indicators', help='indicators.json from `ptj analyze indicators`')
  _add_compute_args(p, required=False)
  p.add_argument('--title', default='Prompt transferability')
  p.add_argument('--out', required=True, help='output directory')
  p.set_defaults(fn=_report)
  p = sub.add_parser('activations', help='FFN activations of prompts on a frozen model (.npz)')
  p.add_argument('--prompts', required=True, help='directory of NAME.npy prompts')
  p.add_argument('--names', help='comma-separated prompt names (default all)')
  _model_args(p, required=True)
  p.add_argument('--out', required=True, help='output .npz')
  p.set_defaults(fn=_activations)
  args = parser.parse_args(argv)
  try:
    return args.fn(args)
  except _ERRORS as e:
    return _fail(f'ptj analyze {args.command}', e)


# ----------------------------------------------------------------------------- bank

def _query_activations(path: str, entry: Optional[str]):
  """(activations [layers, d_ff], meta) of one entry of an activation file."""
  from prompt_transfer_jax.analysis.activation_store import load_activations
  store = load_activations(path)
  if entry is None:
    if len(store.names) != 1:
      raise ValueError(f'{path} holds {len(store.names)} prompts ({", ".join(store.names)}); '
                       'choose one with --activations-entry')
    entry = store.names[0]
  meta = {'spec': store.meta.get('spec'), 'layers': [int(i) for i in store.layers]}
  return store.select([entry])[0], meta


def _bank_add(args) -> int:
  from prompt_transfer_jax.analysis.bank import PromptBank
  bank = PromptBank(args.bank, create=True)
  prompt = read_prompt(args.prompt)
  acts = meta = None
  if args.activations:
    acts, meta = _query_activations(args.activations, args.activations_entry)
  name = args.name or os.path.splitext(os.path.basename(args.prompt))[0]
  entry = bank.add(name, prompt, args.task, args.backbone, args.type, args.score, args.steps,
                   acts, meta, args.overwrite)
  print(f'added {entry.name} (task {entry.task}, {entry.backbone}, shape {tuple(entry.shape)}'
        f'{", with activations" if acts is not None else ""}) to {args.bank}')
  return 0


def _bank_list(args) -> int:
  from prompt_transfer_jax.analysis.bank import PromptBank
  entries = [e for e in PromptBank(args.bank).entries
             if args.backbone is None or e.backbone == args.backbone]
  rows = [('name', 'task', 'type', 'backbone', 'shape', 'score', 'steps', 'ON-ready')]
  rows += [(e.name, e.task, e.type or '', e.backbone, 'x'.join(map(str, e.shape)),
            '' if e.score is None else f'{e.score:g}', '' if e.steps is None else str(e.steps),
            'yes' if e.activation_meta else 'no') for e in entries]
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  for r in rows:
    print('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
  return 0


def _bank_recommend(args) -> int:
  from prompt_transfer_jax.analysis.bank import PromptBank
  bank = PromptBank(args.bank)
  if args.short_run is not None and (args.prompt or args.activations):
    raise ValueError('give --short-run STEPS or --prompt / --activations, not both')
  if args.short_run is not None and args.by == 'ON' and not args.model:
    raise ValueError('--by ON with --short-run needs --model (the checkpoint the bank activations '
                     'were extracted from)')
  prompt = read_prompt(args.prompt) if args.prompt else None
  if args.short_run is not None:
    from prompt_transfer_jax.analysis.bank import short_run_prompt
    prompt = short_run_prompt(args.task, args.short_run, args.gin_file, args.gin,
                              args.short_run_dir)
    print(f'query prompt: {args.short_run} steps of prompt tuning on {args.task}')
  acts = meta = None
  if args.activations:
    acts, meta = _query_activations(args.activations, args.activations_entry)
  elif args.by == 'ON' and prompt is not None and args.model:
    acts, meta = _activations_of_prompt(args, prompt)
  if args.by == 'ON' and acts is None:
    raise ValueError('--by ON needs --activations FILE, or --prompt FILE / --short-run STEPS '
                     'with --model')
  if args.by != 'ON' and prompt is None:
    raise ValueError(f'--by {args.by} needs --prompt FILE (the new task\'s prompt) or '
                     '--short-run STEPS')
  ranked = bank.recommend(args.by, prompt, acts, meta, args.backbone,
                          None if args.include_same_task else args.task)
  if not ranked:
    raise ValueError(f'no bank prompt can be compared by {args.by} with the given '
                     f'{"activations" if args.by == "ON" else "prompt"} (check backbone / shapes)')
  print(f'bank prompts for task {args.task} ranked by {args.by}:')
  for i, r in enumerate(ranked[:args.top], 1):
    print(f'  {i:>2}. {r.entry.name:<24} task {r.entry.task:<16} {args.by} {r.similarity:.4f}')
  if args.init_out:
    best = ranked[0].entry
    tmp = atomic_path(args.init_out)
    shutil.copyfile(os.path.join(bank.root, best.prompt_file), tmp)
    os.replace(tmp, args.init_out)
    print(f'wrote {best.name} to {args.init_out}; start prompt tuning from it with '
          f'PROMPT_FILE={args.init_out}')
  return 0


def _activations_of_prompt(args, prompt):
  """Runs the extractor on the new task's prompt, with the same model options as `analyze activations`."""
  from prompt_transfer_jax.analysis.activations import extract_activations
  spec, inputs = _extraction(args)
  backbone, params = _load_model(args)
  acts = extract_activations(backbone, params, prompt[None], inputs, spec, 1)[0]
  layers = list(spec.layers) if spec.layers is not None else list(range(acts.shape[0]))
  return acts, {'spec': spec.to_json(), 'layers': layers}


def bank_main(argv) -> int:
  parser = argparse.ArgumentParser(prog='ptj bank', description='A bank of trained prompts.')
  sub = parser.add_subparsers(dest='command', required=True)
  p = sub.add_parser('add', help='store a trained prompt with its metadata')
  p.add_argument('--bank', required=True, help='bank directory (created if absent)')
  p.add_argument('--prompt', required=True, help='prompt .npy [P, E]')
  p.add_argument('--task', required=True)
  p.add_argument('--backbone', required=True, help='model the prompt was trained on, e.g. t5_1_1_base')
  p.add_argument('--name', help='entry name (default: the file name)')
  p.add_argument('--type', help='task type, e.g. SA, NLI')
  p.add_argument('--score', type=float, help='PT score of the prompt on its task')
  p.add_argument('--steps', type=int, help='training steps')
  p.add_argument('--activations', help='activation .npz with this prompt (enables ON)')
  p.add_argument('--activations-entry', help='name of the prompt in the activation file')
  p.add_argument('--overwrite', action='store_true')
  p.set_defaults(fn=_bank_add)
  p = sub.add_parser('list', help='list the bank')
  p.add_argument('--bank', required=True)
  p.add_argument('--backbone')
  p.set_defaults(fn=_bank_list)
  p = sub.add_parser('recommend', help='rank bank prompts as the initial prompt for a new task')
  p.add_argument('--bank', required=True)
  p.add_argument('--task', required=True, help='the new task (its own bank entries are skipped)')
  p.add_argument('--by', default='C_average', choices=INDICATORS)
  p.add_argument('--prompt', help="the new task's prompt (e.g. from a short prompt-tuning run)")
  p.add_argument('--activations', help="activation .npz with the new task's prompt (for ON)")
  p.add_argument('--activations-entry')
  p.add_argument('--backbone', help='only prompts of this backbone')
  p.add_argument('--include-same-task', action='store_true')
  p.add_argument('--top', type=int, default=5)
  p.add_argument('--init-out', metavar='PROMPT_FILE', help='copy the best prompt here (.npy)')
  _model_args(p.add_argument_group('extract the ON activations of --prompt (instead of --activations)'),
              required=False)
  g = p.add_argument_group('make the query prompt with a short prompt-tuning run on --task '
                           '(instead of --prompt)')
  g.add_argument('--short-run', type=int, metavar='STEPS', help='steps of `ptj train` on --task')
  g.add_argument('--gin_file', action='append', default=[],
                 help='model gin file(s) for the run, e.g. models/t5_1_1_base_prompt.gin')
  g.add_argument('--gin', action='append', default=[], metavar='NAME=VALUE',
                 help="gin binding for the run, e.g. INITIAL_CHECKPOINT_PATH=\"'/ckpt'\"")
  g.add_argument('--short-run-dir', help='keep the run here (default: a removed temporary dir)')
  p.set_defaults(fn=_bank_recommend)
  args = parser.parse_args(argv)
  try:
    return args.fn(args)
  except _ERRORS as e:
    return _fail(f'ptj bank {args.command}', e)
