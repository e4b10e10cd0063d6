"""`ptj analyze ...` and `ptj bank ...`: indicators, Spearman, report, activations, prompt bank.

    ptj analyze indicators --prompts=PROMPT_DIR --transfer=transfer.json --out=OUT
    ptj bank recommend --bank=BANK --task=NEW_TASK --prompt=NEW.npy --by=C_average

Only `ptj analyze activations` (and `bank` options that run the model or, with `--short_run`,
the trainer) import JAX; everything else is numpy / scipy / matplotlib. Errors and exit codes
follow `prompt_transfer_jax.command` (2 bad input, 1 failure).
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np
from absl import flags

from prompt_transfer_jax import command
from prompt_transfer_jax.files import atomic_write, read_prompt, read_prompt_dir, read_json, write_json
from prompt_transfer_jax.analysis.indicators import INDICATORS


# ----------------------------------------------------------------------------- analyze

def _compute(fv) -> dict:
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.recommend import leave_one_out_hit_rates
  from prompt_transfer_jax.analysis.spearman import load_transfer_matrix
  from prompt_transfer_jax.analysis.transferability import analyze_transferability

  tasks, transfer = load_transfer_matrix(fv.transfer)
  _, prompts = read_prompt_dir(fv.prompts, tasks)
  activations = layer_ids = None
  if fv.activations:
    store = load_activations(fv.activations)
    activations, layer_ids = store.select(tasks), store.layers
  result = analyze_transferability(tasks, transfer, prompts, activations, layer_ids,
                                   fv.group_size, fv.bootstrap, fv.seed)
  result['hit_rates'] = {name: leave_one_out_hit_rates(transfer, m, (1, 3)).to_json(tasks)
                         for name, m in result['similarity'].items()}
  result['inputs'] = {'prompts': os.path.abspath(fv.prompts),
                      'transfer': os.path.abspath(fv.transfer),
                      'activations': os.path.abspath(fv.activations) if fv.activations else None}
  return result


def _compute_flags(fv: flags.FlagValues, required: bool = True) -> None:
  flags.DEFINE_string('prompts', None, 'directory of NAME.npy prompts, one per task',
                      flag_values=fv)
  flags.DEFINE_string('transfer', None, 'JSON {"tasks": [...], "matrix": [[...]]}, rows = '
                      'targets, columns = sources', flag_values=fv)
  flags.DEFINE_string('activations', None, 'activation .npz (ptj analyze activations) for ON',
                      flag_values=fv)
  flags.DEFINE_integer('group_size', 3, 'layers per layer group', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('bootstrap', 2000, 'bootstrap resamples (0 = none)', lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'bootstrap seed', flag_values=fv)
  flags.DEFINE_string('out', None, 'output directory', flag_values=fv)
  command.require(fv, 'out', *(('prompts', 'transfer') if required else ()))


def _print_summary(result: dict) -> None:
  from prompt_transfer_jax.analysis.transferability import spearman_table
  for warning in result.get('warnings', ()):
    print(f'warning: {warning}', file=sys.stderr)
  print(spearman_table(result))
  hits = result.get('hit_rates')
  if hits:
    print('\nleave-one-out recommendation (best zero-shot source found):')
    for name, h in hits.items():
      cells = [f'top-{k} {100 * v:.0f}% (chance {100 * h["chance"][k]:.0f}%)'
               for k, v in h['hit_rate'].items()]
      print(f'  {name:<10} ' + '  '.join(cells))


def _indicators(fv) -> int:
  result = _compute(fv)
  os.makedirs(fv.out, exist_ok=True)
  path = os.path.join(fv.out, 'indicators.json')
  write_json(path, result)
  _print_summary(result)
  print(f'\nwrote {path}')
  return 0


def _similarity(fv) -> int:
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.indicators import similarity_matrices
  names, prompts = read_prompt_dir(fv.prompts, fv.names.split(',') if fv.names else None)
  acts = load_activations(fv.activations).select(names) if fv.activations else None
  sims = similarity_matrices(prompts, acts)
  os.makedirs(fv.out, exist_ok=True)
  path = os.path.join(fv.out, 'similarity.json')
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


def _report(fv) -> int:
  from prompt_transfer_jax.analysis.report import render_report
  if fv.indicators:
    result = read_json(fv.indicators, 'indicators.json')
    missing = {'tasks', 'transfer', 'similarity', 'spearman', 'spearman_detail',
               'paper_spearman'} - set(result)
    if missing:
      raise ValueError(f'{fv.indicators}: not an indicators.json (missing {", ".join(sorted(missing))})')
  else:
    if not (fv.prompts and fv.transfer):
      raise ValueError('give --indicators FILE, or --prompts DIR and --transfer FILE')
    result = _compute(fv)
    os.makedirs(fv.out, exist_ok=True)
    write_json(os.path.join(fv.out, 'indicators.json'), result)
  if fv.cross_model:
    cross = read_json(fv.cross_model, 'cross-model result')
    if not isinstance(cross, dict) or cross.get('kind') != 'cross_model_zero_shot':
      raise ValueError(f'{fv.cross_model}: not a `ptj project zero-shot` result')
    result = dict(result, cross_model=cross)
  figures = render_report(result, fv.out, fv.title)
  print(f'wrote {len(figures)} figures, report.md and report.html to {fv.out}')
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
  """(backbone, parameters placed on a mesh with `--model_parallel`) from `--model` (a preset
  name or a checkpoint) for `--family`."""
  from prompt_transfer_jax.trainer import frozen_model
  model = frozen_model.load(args.model, args.family, args.config)
  return model.backbone, model.on_mesh(args.model_parallel)


def _model_flags(fv: flags.FlagValues) -> None:
  """Model and extraction options (shared by `analyze activations` and `bank recommend`)."""
  flags.DEFINE_string('model', None, 'preset name (random weights) or checkpoint: HF T5 / T5X / '
                      'Orbax for t5, HF directory for roberta', flag_values=fv)
  flags.DEFINE_enum('family', 't5', ['t5', 'roberta'], 'backbone family', flag_values=fv)
  flags.DEFINE_string('config', None, 'T5 preset describing a T5X checkpoint (default: inferred)',
                      flag_values=fv)
  flags.DEFINE_enum('stack', None, ['decoder', 'encoder'],
                    'default: decoder for t5, encoder for roberta', flag_values=fv)
  flags.DEFINE_string('position', None, 'first_step | mask_slot | after_prompt | prompt_mean | '
                      'INDEX (default: first_step for t5, mask_slot for roberta)', flag_values=fv)
  flags.DEFINE_enum('kind', 'ffn_pre_activation', ['ffn_pre_activation', 'ffn_hidden'],
                    'which FFN activation', flag_values=fv)
  flags.DEFINE_string('layers', None, 'comma-separated layer indices (default all)',
                      flag_values=fv)
  flags.DEFINE_integer('sentinel_id', 32099, 't5 input <extra_id_0> id', flag_values=fv)
  flags.DEFINE_bool('append_eos', False, 't5 input <extra_id_0> </s>', flag_values=fv)
  flags.DEFINE_string('inputs', None, '.npz of batch fields (encoder_input_tokens [M, L], '
                      'decoder_input_tokens [M, T]) to average over instead of the default input',
                      flag_values=fv)
  flags.DEFINE_integer('chunk_size', 8, 'prompts per jitted call', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('model_parallel', 1, "size of the mesh's model axis (the frozen model is "
                       'sharded over it, as in ptj train)', lower_bound=1, flag_values=fv)


def _extraction(fv):
  from prompt_transfer_jax.analysis import activations as act
  default = act.ROBERTA_SPEC if fv.family == 'roberta' else act.T5_SPEC
  spec = act.ExtractionSpec(fv.stack or default.stack,
                            default.position if fv.position is None else _position(fv.position),
                            fv.kind, _parse_layers(fv.layers))
  if fv.inputs:
    with np.load(fv.inputs, allow_pickle=False) as data:
      inputs = {k: data[k].astype(np.int32) for k in data.files}
  elif fv.family == 'roberta':
    inputs = act.roberta_bos_inputs()
  else:
    inputs = act.t5_sentinel_inputs(fv.sentinel_id, fv.append_eos)
  return spec, inputs


def _activations(fv) -> int:
  from prompt_transfer_jax.analysis.activations import extract_to_file
  names = fv.names.split(',') if fv.names else None
  names, prompts = read_prompt_dir(fv.prompts, names)
  spec, inputs = _extraction(fv)
  backbone, params = _load_model(fv)
  extract_to_file(fv.out, backbone, params, names, prompts, inputs, spec, fv.chunk_size,
                  meta={'model': fv.model, 'family': fv.family, 'config': fv.config})
  print(f'wrote activations of {len(names)} prompts to {fv.out}')
  return 0


def _similarity_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('prompts', None, 'directory of NAME.npy prompts', flag_values=fv)
  flags.DEFINE_string('names', None, 'comma-separated prompt names (default all)', flag_values=fv)
  flags.DEFINE_string('activations', None, 'activation .npz for ON', flag_values=fv)
  flags.DEFINE_string('out', None, 'output directory (similarity.json)', flag_values=fv)
  command.require(fv, 'prompts', 'out')


def _report_flags(fv: flags.FlagValues) -> None:
  _compute_flags(fv, required=False)
  flags.DEFINE_string('indicators', None, 'indicators.json from `ptj analyze indicators`',
                      flag_values=fv)
  flags.DEFINE_string('title', 'Prompt transferability', 'report title', flag_values=fv)
  flags.DEFINE_string('cross_model', None, 'a `ptj project zero-shot` result: adds the '
                      'cross-model heatmaps', flag_values=fv)


def _activations_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('prompts', None, 'directory of NAME.npy prompts', flag_values=fv)
  flags.DEFINE_string('names', None, 'comma-separated prompt names (default all)', flag_values=fv)
  _model_flags(fv)
  flags.DEFINE_string('out', None, 'output .npz', flag_values=fv)
  command.require(fv, 'prompts', 'model', 'out')


ANALYZE_COMMANDS = (
    command.Command('indicators', 'similarity indicators and their Spearman vs transfer',
                    _compute_flags, _indicators),
    command.Command('similarity', 'similarity matrices of prompts (no transfer matrix needed)',
                    _similarity_flags, _similarity),
    command.Command('report', 'PNG figures and a Markdown/HTML summary', _report_flags, _report),
    command.Command('activations', 'FFN activations of prompts on a frozen model (.npz)',
                    _activations_flags, _activations),
)


def analyze_main(argv: Sequence[str]) -> int:
  return command.run_group('ptj analyze', argv, __doc__.splitlines()[0], ANALYZE_COMMANDS)


# ----------------------------------------------------------------------------- bank

def _query_activations(path: str, entry: Optional[str]):
  """(activations [layers, d_ff], meta) of one entry of an activation file."""
  from prompt_transfer_jax.analysis.activation_store import load_activations
  store = load_activations(path)
  if entry is None:
    if len(store.names) != 1:
      raise ValueError(f'{path} holds {len(store.names)} prompts ({", ".join(store.names)}); '
                       'choose one with --activations_entry')
    entry = store.names[0]
  meta = {'spec': store.meta.get('spec'), 'layers': [int(i) for i in store.layers]}
  return store.select([entry])[0], meta


def _bank_add(fv) -> int:
  from prompt_transfer_jax.analysis.bank import PromptBank
  bank = PromptBank(fv.bank, create=True)
  prompt = read_prompt(fv.prompt)
  acts = meta = None
  if fv.activations:
    acts, meta = _query_activations(fv.activations, fv.activations_entry)
  name = fv.name or os.path.splitext(os.path.basename(fv.prompt))[0]
  entry = bank.add(name, prompt, fv.task, fv.backbone, fv.type, fv.score, fv.steps,
                   acts, meta, fv.overwrite)
  print(f'added {entry.name} (task {entry.task}, {entry.backbone}, shape {tuple(entry.shape)}'
        f'{", with activations" if acts is not None else ""}) to {fv.bank}')
  return 0


def _bank_list(fv) -> int:
  from prompt_transfer_jax.analysis.bank import PromptBank
  entries = [e for e in PromptBank(fv.bank).entries
             if fv.backbone is None or e.backbone == fv.backbone]
  rows = [('name', 'task', 'type', 'backbone', 'shape', 'score', 'steps', 'ON-ready')]
  rows += [(e.name, e.task, e.type or '', e.backbone, 'x'.join(map(str, e.shape)),
            '' if e.score is None else f'{e.score:g}', '' if e.steps is None else str(e.steps),
            'yes' if e.activation_meta else 'no') for e in entries]
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  for r in rows:
    print('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
  return 0


def _bank_recommend(fv) -> int:
  from prompt_transfer_jax.analysis.bank import PromptBank
  bank = PromptBank(fv.bank)
  if fv.short_run is not None and (fv.prompt or fv.activations):
    raise ValueError('give --short_run STEPS or --prompt / --activations, not both')
  if fv.short_run is not None and fv.by == 'ON' and not fv.model:
    raise ValueError('--by ON with --short_run needs --model (the checkpoint the bank activations '
                     'were extracted from)')
  prompt = read_prompt(fv.prompt) if fv.prompt else None
  if fv.short_run is not None:
    from prompt_transfer_jax.analysis.bank import short_run_prompt
    prompt = short_run_prompt(fv.task, fv.short_run, fv.gin_file, fv.gin_bindings,
                              fv.short_run_dir)
    print(f'query prompt: {fv.short_run} steps of prompt tuning on {fv.task}')
  acts = meta = None
  if fv.activations:
    acts, meta = _query_activations(fv.activations, fv.activations_entry)
  elif fv.by == 'ON' and prompt is not None and fv.model:
    acts, meta = _activations_of_prompt(fv, prompt)
  if fv.by == 'ON' and acts is None:
    raise ValueError('--by ON needs --activations FILE, or --prompt FILE / --short_run STEPS '
                     'with --model')
  if fv.by != 'ON' and prompt is None:
    raise ValueError(f'--by {fv.by} needs --prompt FILE (the new task\'s prompt) or '
                     '--short_run STEPS')
  ranked = bank.recommend(fv.by, prompt, acts, meta, fv.backbone,
                          None if fv.include_same_task else fv.task)
  if not ranked:
    raise ValueError(f'no bank prompt can be compared by {fv.by} with the given '
                     f'{"activations" if fv.by == "ON" else "prompt"} (check backbone / shapes)')
  print(f'bank prompts for task {fv.task} ranked by {fv.by}:')
  for i, r in enumerate(ranked[:fv.top], 1):
    print(f'  {i:>2}. {r.entry.name:<24} task {r.entry.task:<16} {fv.by} {r.similarity:.4f}')
  if fv.init_out:
    best = ranked[0].entry
    with open(os.path.join(bank.root, best.prompt_file), 'rb') as src, \
        atomic_write(fv.init_out, 'wb') as dst:
      dst.write(src.read())
    print(f'wrote {best.name} to {fv.init_out}; start prompt tuning from it with '
          f'PROMPT_FILE={fv.init_out}')
  return 0


def _activations_of_prompt(fv, prompt):
  """Runs the extractor on the new task's prompt, with the same model options as `analyze activations`."""
  from prompt_transfer_jax.analysis.activations import extract_activations
  spec, inputs = _extraction(fv)
  backbone, params = _load_model(fv)
  acts = extract_activations(backbone, params, prompt[None], inputs, spec, 1)[0]
  layers = list(spec.layers) if spec.layers is not None else list(range(acts.shape[0]))
  return acts, {'spec': spec.to_json(), 'layers': layers}


def _bank_add_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('bank', None, 'bank directory (created if absent)', flag_values=fv)
  flags.DEFINE_string('prompt', None, 'prompt .npy [P, E]', flag_values=fv)
  flags.DEFINE_string('task', None, 'the task the prompt was trained on', flag_values=fv)
  flags.DEFINE_string('backbone', None, 'model the prompt was trained on, e.g. t5_1_1_base',
                      flag_values=fv)
  flags.DEFINE_string('name', None, 'entry name (default: the file name)', flag_values=fv)
  flags.DEFINE_string('type', None, 'task type, e.g. SA, NLI', flag_values=fv)
  flags.DEFINE_float('score', None, 'PT score of the prompt on its task', flag_values=fv)
  flags.DEFINE_integer('steps', None, 'training steps', flag_values=fv)
  flags.DEFINE_string('activations', None, 'activation .npz with this prompt (enables ON)',
                      flag_values=fv)
  flags.DEFINE_string('activations_entry', None, 'name of the prompt in the activation file',
                      flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'replace an entry of the same name', flag_values=fv)
  command.require(fv, 'bank', 'prompt', 'task', 'backbone')


def _bank_list_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('bank', None, 'bank directory', flag_values=fv)
  flags.DEFINE_string('backbone', None, 'only prompts of this backbone', flag_values=fv)
  command.require(fv, 'bank')


def _bank_recommend_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('bank', None, 'bank directory', flag_values=fv)
  flags.DEFINE_string('task', None, 'the new task (its own bank entries are skipped)',
                      flag_values=fv)
  flags.DEFINE_enum('by', 'C_average', list(INDICATORS), 'indicator to rank by', flag_values=fv)
  flags.DEFINE_string('prompt', None, "the new task's prompt (e.g. from a short prompt-tuning "
                      'run)', flag_values=fv)
  flags.DEFINE_string('activations', None, "activation .npz with the new task's prompt (for ON)",
                      flag_values=fv)
  flags.DEFINE_string('activations_entry', None, 'name of the prompt in the activation file',
                      flag_values=fv)
  flags.DEFINE_string('backbone', None, 'only prompts of this backbone', flag_values=fv)
  flags.DEFINE_bool('include_same_task', False, "also rank the new task's own entries",
                    flag_values=fv)
  flags.DEFINE_integer('top', 5, 'how many to print', lower_bound=1, flag_values=fv)
  flags.DEFINE_string('init_out', None, 'copy the best prompt here (.npy, a PROMPT_FILE)',
                      flag_values=fv)
  _model_flags(fv)   # extract the ON activations of --prompt (instead of --activations)
  # Make the query prompt with a short prompt-tuning run on --task (instead of --prompt):
  flags.DEFINE_integer('short_run', None, 'steps of prompt tuning on --task for the query prompt',
                       lower_bound=1, flag_values=fv)
  command.gin_file_flags(fv)
  flags.DEFINE_string('short_run_dir', None, 'keep the run here (default: a removed temporary '
                      'dir)', flag_values=fv)
  command.require(fv, 'bank', 'task')


BANK_COMMANDS = (
    command.Command('add', 'store a trained prompt with its metadata', _bank_add_flags,
                    _bank_add),
    command.Command('list', 'list the bank', _bank_list_flags, _bank_list),
    command.Command('recommend', 'rank bank prompts as the initial prompt for a new task',
                    _bank_recommend_flags, _bank_recommend),
)


def bank_main(argv: Sequence[str]) -> int:
  return command.run_group('ptj bank', argv, 'A bank of trained prompts.', BANK_COMMANDS)
