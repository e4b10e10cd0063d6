"""`ptj tasks list | show NAME | preview NAME [--n=3]`: what is registered, and what it yields."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

import seqio
from absl import flags

from prompt_transfer_jax import command
from prompt_transfer_jax import tasks
from prompt_transfer_jax.tasks import sources
from prompt_transfer_jax.tasks import vocabularies


def _list_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum('family', None, list(vocabularies.FAMILIES), 'only this backbone family',
                    flag_values=fv)
  flags.DEFINE_bool('mixtures', False, 'list the mixtures instead', flag_values=fv)


def _data_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('data_dir', None, 'local data dir (else $PTJ_DATA_DIR, default ./data)',
                      flag_values=fv)
  flags.DEFINE_string('t5_vocab', None, 'T5 SentencePiece model (else $PTJ_T5_VOCAB)',
                      flag_values=fv)
  flags.DEFINE_string('roberta_tokenizer', None,
                      'RoBERTa tokenizer dir (else $PTJ_ROBERTA_TOKENIZER)', flag_values=fv)


def _preview_flags(fv: flags.FlagValues) -> None:
  _data_flags(fv)
  flags.DEFINE_integer('n', 3, 'number of examples', lower_bound=1, flag_values=fv)
  flags.DEFINE_string('split', 'validation', 'split', flag_values=fv)


def _configure(fv) -> None:
  tasks.configure(data_dir=fv.data_dir, t5_vocab=fv.t5_vocab,
                  roberta_tokenizer=fv.roberta_tokenizer)


def _splits(info) -> str:
  mapping = sources.split_map(info.key)
  return ' '.join(f'{ours}={theirs}' if ours != theirs else ours for ours, theirs in mapping.items()
                  if not ours.startswith('heldout_')) + ' +heldout'


def _list(fv) -> int:
  if fv.mixtures:
    for name in tasks.mixture_names():
      if fv.family is None or name.startswith(f'{fv.family}_'):
        print(f'{name:<28} {", ".join(tasks.mixture_tasks(name))}')
    return 0
  rows = [('NAME', 'TYPE', 'METRIC', 'LABEL WORDS', 'SOURCE', 'SPLITS')]
  for name in tasks.task_names(fv.family):
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


def _show(fv, name: str) -> int:
  _configure(fv)
  if name in tasks.mixture_names():
    print(f'mixture {name}: {", ".join(tasks.mixture_tasks(name))}')
    return 0
  info = tasks.get_task_info(name)
  for field in ('name', 'key', 'family', 'task_type', 'layout', 'metric', 'label_words',
                'target_length', 'input_length', 'is_classification', 'source'):
    print(f'{field:<18} {getattr(info, field)}')
  print(f'{"splits":<18} ' + ', '.join(f'{k} <- {v}' for k, v in sources.split_map(info.key).items()))
  if info.key in sources.LOCAL_SPECS:
    files = sorted({str(sources.local_path(info.key, s)) for s in ('train', 'validation', 'test')})
    print(f'{"data files":<18} {", ".join(files)}')
  from prompt_transfer_jax.tasks import prepare
  layout = prepare.local_format(info.key)
  if layout is not None:
    print(f'{"file format":<18} {layout}')
  if info.is_classification:
    try:
      print(f'{"label_targets":<18} {tasks.label_targets(info.name).tolist()}')
    except ValueError as e:
      print(f'{"label_targets":<18} unavailable: {e}')
  return 0


def _preview(fv, name: str) -> int:
  _configure(fv)
  info = tasks.get_task_info(name)
  task = seqio.get_mixture_or_task(name)
  lengths = {'inputs': info.input_length, 'targets': info.target_length}
  ds = task.get_dataset(lengths, split=fv.split, shuffle=False).take(fv.n)
  for i, ex in enumerate(ds.as_numpy_iterator()):
    print(f'--- {name} [{fv.split}] example {i}')
    for key in sorted(ex):
      value = ex[key]
      if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
      elif hasattr(value, 'tolist'):
        value = value.tolist()
      print(f'  {key}: {value}')
  return 0


COMMANDS = (
    command.Command('list', 'every registered task: type, metric, label words, source, splits',
                    _list_flags, _list),
    command.Command('show', 'everything about one task or mixture', _data_flags, _show, ('name',)),
    command.Command('preview', 'print preprocessed examples of a task', _preview_flags, _preview,
                    ('name',)),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
  return command.run_group('ptj tasks', list(sys.argv[1:] if argv is None else argv), __doc__,
                           COMMANDS)
