"""`ptj tasks list | show NAME | preview NAME [--n 3]`: what is registered, and what it yields."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import seqio

from prompt_transfer_jax import tasks
from prompt_transfer_jax.tasks import sources
from prompt_transfer_jax.tasks import vocabularies


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='ptj tasks', description=__doc__)
  sub = parser.add_subparsers(dest='command', required=True)
  lst = sub.add_parser('list', help='every registered task: type, metric, label words, source, splits')
  lst.add_argument('--family', choices=vocabularies.FAMILIES, help='only this backbone family')
  lst.add_argument('--mixtures', action='store_true', help='list the mixtures instead')
  show = sub.add_parser('show', help='everything about one task or mixture')
  show.add_argument('name')
  preview = sub.add_parser('preview', help='print preprocessed examples of a task')
  preview.add_argument('name')
  preview.add_argument('--n', type=int, default=3, help='number of examples (default 3)')
  preview.add_argument('--split', default='validation', help='split (default validation)')
  for p in (show, preview):
    p.add_argument('--data-dir', help='local data dir (else $PTJ_DATA_DIR, default ./data)')
    p.add_argument('--t5-vocab', help='T5 SentencePiece model (else $PTJ_T5_VOCAB)')
    p.add_argument('--roberta-tokenizer', help='RoBERTa tokenizer dir (else $PTJ_ROBERTA_TOKENIZER)')
  return parser


def _splits(info) -> str:
  mapping = sources.split_map(info.key)
  return ' '.join(f'{ours}={theirs}' if ours != theirs else ours for ours, theirs in mapping.items()
                  if not ours.startswith('heldout_')) + ' +heldout'


def _list(args) -> int:
  if args.mixtures:
    for name in tasks.mixture_names():
      if args.family is None or name.startswith(f'{args.family}_'):
        print(f'{name:<28} {", ".join(tasks.mixture_tasks(name))}')
    return 0
  rows = [('NAME', 'TYPE', 'METRIC', 'LABEL WORDS', 'SOURCE', 'SPLITS')]
  for name in tasks.task_names(args.family):
    info = tasks.get_task_info(name)
    rows.append((name, info.task_type, info.metric, '/'.join(info.label_words or ('-',)),
                 info.source, _splits(info)))
  widths = [max(len(r[i]) for r in rows) for i in range(5)]
  for row in rows:
    print('  '.join(c.ljust(w) for c, w in zip(row, widths)) + '  ' + row[5])
  print(f'{len(rows) - 1} tasks; splits: train, validation (the one the paper reports), test '
        '(= validation where no labeled test exists), heldout_train / heldout_validation '
        f'(first {100 - sources.HELDOUT_PERCENT}% / last {sources.HELDOUT_PERCENT}% of train)')
  return 0


def _show(args) -> int:
  if args.name in tasks.mixture_names():
    print(f'mixture {args.name}: {", ".join(tasks.mixture_tasks(args.name))}')
    return 0
  info = tasks.get_task_info(args.name)
  for field in ('name', 'key', 'family', 'task_type', 'layout', 'metric', 'label_words',
                'target_length', 'input_length', 'is_classification', 'source'):
    print(f'{field:<18} {getattr(info, field)}')
  print(f'{"splits":<18} ' + ', '.join(f'{k} <- {v}' for k, v in sources.split_map(info.key).items()))
  if info.key in sources.LOCAL_SPECS:
    files = sorted({str(sources.local_path(info.key, s)) for s in ('train', 'validation', 'test')})
    print(f'{"data files":<18} {", ".join(files)}')
  if info.is_classification:
    try:
      print(f'{"label_targets":<18} {tasks.label_targets(info.name).tolist()}')
    except ValueError as e:
      print(f'{"label_targets":<18} unavailable: {e}')
  return 0


def _preview(args) -> int:
  info = tasks.get_task_info(args.name)
  task = seqio.get_mixture_or_task(args.name)
  lengths = {'inputs': info.input_length, 'targets': info.target_length}
  ds = task.get_dataset(lengths, split=args.split, shuffle=False).take(args.n)
  for i, ex in enumerate(ds.as_numpy_iterator()):
    print(f'--- {args.name} [{args.split}] example {i}')
    for key in sorted(ex):
      value = ex[key]
      if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
      elif hasattr(value, 'tolist'):
        value = value.tolist()
      print(f'  {key}: {value}')
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  try:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  except SystemExit as e:  # --help or a usage error (already printed by argparse)
    return int(e.code or 0)
  try:
    if args.command == 'list':
      return _list(args)
    tasks.configure(data_dir=args.data_dir, t5_vocab=args.t5_vocab,
                    roberta_tokenizer=args.roberta_tokenizer)
    if args.command == 'show':
      return _show(args)
    return _preview(args)
  except Exception as e:  # noqa: BLE001 - report any failure as one line, exit non-zero
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    print(f'ptj tasks {args.command}: {first_line}', file=sys.stderr)
    return 2 if isinstance(e, ValueError) and 'unknown' in first_line else 1
