"""The task registry: the 17 paper tasks and the synthetic ones for every backbone family.

Names are `{family}_{key}` (layout `clean`) and `{family}_{key}_v1` (the 1.0 layouts, families
t5 and roberta); the `synth` family (word vocabulary) names its tasks by key alone
(`synth_sentiment_a`). RoBERTa gets the 13 classification tasks only (paper-spec §1).
Every example has `inputs`, `targets`, `inputs_pretokenized`, `targets_pretokenized`, plus an int32
`label` (classification) or the list of gold `answers` (QA).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Optional

import numpy as np
import seqio

from prompt_transfer_jax.tasks import metrics
from prompt_transfer_jax.tasks import postprocessors
from prompt_transfer_jax.tasks import preprocessors
from prompt_transfer_jax.tasks import settings
from prompt_transfer_jax.tasks import sources
from prompt_transfer_jax.tasks import synthetic
from prompt_transfer_jax.tasks import templates
from prompt_transfer_jax.tasks import vocabularies

FAMILY_LAYOUTS = {'t5': ('clean', 'v1'), 'mt5': ('clean',), 'byt5': ('clean',),
                  'roberta': ('clean', 'v1'), 'synth': ('clean',)}
# Clean-layout target lengths: label word + EOS must fit (checked by `label_targets`).
CLASSIFICATION_TARGET_LENGTH = {'t5': 8, 'mt5': 8, 'byt5': 16, 'synth': 2, 'roberta': 1}
GENERATION_TARGET_LENGTH = {'squad': 32, 'nq_open': 32, 'samsum': 64, 'multi_news': 128}
BYTE_LENGTH_FACTOR = 4   # byt5 sequences are ~4x longer than SentencePiece ones
# 1.0 text lengths (paper-spec §1.3): 127 pieces + </s> by default; IMDB 127 without </s>; NLI
# hypothesis+premise cut to 230 - 100 prompt slots; QA / SUM 384.
V1_INPUT_LENGTH = {'imdb': 127, 'mnli': 130, 'qnli': 130, 'snli': 130}
# Evaluation decode lengths of the generation tasks (1.0 code, paper-spec §1.3): (most new tokens,
# new tokens before EOS may end). 1.0's HF `generate` max_length 10/10/50/50 and min_length
# 2/3/2/2 count the decoder start token; EOS is forbidden while cur_len < min_length.
DECODE_LENGTHS = {'squad': (9, 1), 'nq_open': (9, 2), 'multi_news': (49, 1), 'samsum': (49, 1)}


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What the trainer / evaluator / analysis need to know about a task, without loading data."""
  name: str
  key: str
  family: str
  task_type: str                              # SA, NLI, EJ, PI, QA, SUM
  label_words: Optional[tuple[str, ...]]
  metric: str                                 # accuracy, f1, rouge_l
  target_length: int
  is_classification: bool
  layout: str = 'clean'                       # clean or v1
  input_length: int = 128                     # suggested inputs length (prompt not included)
  source: str = ''
  splits: tuple[str, ...] = sources.SPLITS
  max_decode_length: Optional[int] = None     # generation: most new tokens (None: targets length)
  min_decode_length: int = 0                  # generation: EOS forbidden at earlier steps

  def label_targets(self) -> np.ndarray:
    return label_targets(self.name)


_INFOS: dict[str, TaskInfo] = {}
_TEMPLATES: dict[str, templates.Template] = {}


def task_name(family: str, key: str, layout: str = 'clean') -> str:
  base = key if family == 'synth' else f'{family}_{key}'
  return base + ('_v1' if layout == 'v1' else '')


def _lengths(family: str, template: templates.Template, layout: str, synth: bool) -> tuple[int, int]:
  """(input_length, target_length) for a task."""
  scale = BYTE_LENGTH_FACTOR if family == 'byt5' else 1
  if family == 'roberta':
    return preprocessors.MLM_PAIR_MAX_TOKENS, 1
  if synth:
    return 32 * scale, CLASSIFICATION_TARGET_LENGTH[family]
  inputs = 128 if template.is_classification else 384
  if layout == 'v1':
    return V1_INPUT_LENGTH.get(template.key, inputs), template.v1_target_length
  if template.is_classification:
    return inputs, CLASSIFICATION_TARGET_LENGTH[family]
  return inputs * scale, GENERATION_TARGET_LENGTH[template.key] * scale


@functools.cache
def _paper_source(key: str) -> seqio.DataSource:
  if key in sources.TFDS_SPECS:
    return seqio.TfdsDataSource(sources.TFDS_SPECS[key].name, splits=sources.TFDS_SPECS[key].splits())
  return sources.local_source(key, templates.PAPER_TEMPLATES[key].task_type)


@functools.cache
def _synth_source(key: str) -> seqio.DataSource:
  return sources.synthetic_source(key)


def _synth_template(key: str) -> templates.Template:
  task_type = synthetic.SYNTH_SPECS[key].task_type
  return templates.type_template(key, task_type, synthetic.LABEL_WORDS[task_type],
                                 synthetic.MLM_LABEL_WORDS[task_type])


def _register(family: str, template: templates.Template, layout: str, synth: bool) -> None:
  name = task_name(family, template.key, layout)
  mlm = family == 'roberta'
  label_words = template.mlm_label_words if mlm else template.label_words
  input_length, target_length = _lengths(family, template, layout, synth)
  scale = BYTE_LENGTH_FACTOR if family == 'byt5' else 1
  max_decode, min_decode = DECODE_LENGTHS.get(template.key, (None, 0)) if not synth else (None, 0)
  _INFOS[name] = TaskInfo(
      name=name, key=template.key, family=family, task_type=template.task_type,
      label_words=label_words, metric=template.metric, target_length=target_length,
      is_classification=template.is_classification, layout=layout, input_length=input_length,
      source=sources.describe(template.key),
      max_decode_length=None if max_decode is None else max_decode * scale,
      min_decode_length=min_decode * scale)
  _TEMPLATES[name] = template
  if name in seqio.TaskRegistry.names():
    return
  vocab = vocabularies.get_vocabulary(family)
  source = _synth_source(template.key) if synth else _paper_source(template.key)
  steps = []
  if not synth and template.key in sources.TFDS_SPECS:
    steps.append(sources.tfds_adapter(sources.TFDS_SPECS[template.key]))
  if mlm:
    segments = template.mlm[layout]
    steps += [preprocessors.format_mlm(segments, template.task_type, label_words),
              preprocessors.tokenize_mlm(lambda: label_targets(name)[:, 0], len(segments)),
              seqio.CacheDatasetPlaceholder()]
    features = {'inputs': seqio.Feature(vocab, add_eos=False),
                'targets': seqio.Feature(vocab, add_eos=False)}
  else:
    text, inputs_eos = template.seq2seq[layout]
    steps += [preprocessors.format_seq2seq(text, template.task_type, label_words),
              seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder()]
    if layout == 'v1':
      steps.append(preprocessors.truncate_targets(target_length))
    steps.append(seqio.preprocessors.append_eos_after_trim)
    features = {'inputs': seqio.Feature(vocab, add_eos=inputs_eos),
                'targets': seqio.Feature(vocab, add_eos=layout == 'clean')}
  if template.is_classification:
    decoded = lambda: [vocab.decode(row) for row in label_targets(name)]  # noqa: E731
    postprocess = postprocessors.ClassificationPostprocessor(label_words, decoded)
  else:
    postprocess = postprocessors.qa if template.task_type == 'QA' else postprocessors.text
  seqio.TaskRegistry.add(name, source=source, preprocessors=steps, output_features=features,
                         postprocess_fn=postprocess,
                         metric_fns=[metrics.METRIC_FNS[template.metric]])


def register_all() -> None:
  """Registers every task of every family (idempotent)."""
  for family, layouts in FAMILY_LAYOUTS.items():
    if family != 'synth':
      for layout in layouts:
        for template in templates.PAPER_TEMPLATES.values():
          if family != 'roberta' or template.is_classification:
            _register(family, template, layout, synth=False)
    for key in synthetic.SYNTH_KEYS:
      _register(family, _synth_template(key), 'clean', synth=True)


def task_names(family: Optional[str] = None) -> list[str]:
  return [n for n, info in _INFOS.items() if family is None or info.family == family]


def _unknown(name: str, kind: str, known) -> ValueError:
  close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
  hint = f'; close matches: {", ".join(close)}' if close else '; run `ptj tasks list`'
  return ValueError(f'unknown {kind} {name!r}{hint}')


def get_task_info(name: str) -> TaskInfo:
  if name not in _INFOS:
    raise _unknown(name, 'task', _INFOS)
  return _INFOS[name]


def label_targets(name: str, length: Optional[int] = None) -> np.ndarray:
  """`[K, T]` int32 ids of each label word exactly as the task's `targets` feature holds them
  (EOS included in the clean seq2seq layout), zero-padded to `T = length` (default: the task's
  target_length). Labels are measured unpadded: "negative</s>" fits `'targets': 4`."""
  info = get_task_info(name)
  if not info.is_classification:
    raise ValueError(f'task {name!r} is a {info.task_type} task; label targets exist only for '
                     'classification tasks')
  vocab_id = {'t5': 't5_vocab', 'mt5': 'mt5_vocab', 'roberta': 'roberta_tokenizer'}.get(info.family)
  rows = _label_rows(name, settings.get(vocab_id) if vocab_id else '')
  length = info.target_length if length is None else int(length)
  out = np.zeros((len(rows), length), np.int32)
  for k, ids in enumerate(rows):
    if len(ids) > length:
      raise ValueError(f'label word {info.label_words[k]!r} of task {name!r} is {len(ids)} tokens, '
                       f"more than TASK_FEATURE_LENGTHS['targets']={length}")
    out[k, :len(ids)] = ids
  return out


@functools.lru_cache(maxsize=None)
def _label_rows(name: str, vocab_path: str) -> tuple[tuple[int, ...], ...]:
  """The unpadded label ids of each label word, checked against the vocabulary size."""
  del vocab_path  # part of the cache key only
  info, template = _INFOS[name], _TEMPLATES[name]
  vocab = vocabularies.get_vocabulary(info.family)
  rows = []
  for k, word in enumerate(info.label_words):
    ids = list(vocab.encode(word))
    bad = [i for i in ids if not 0 <= i < vocab.vocab_size]
    if bad:
      raise ValueError(f'label word {word!r} of task {name!r} has token id {bad[0]}, outside its '
                       f'vocabulary of {vocab.vocab_size}')
    if info.family == 'roberta':   # a fixed id of the 1.0 code, checked by the backbone
      ids = [template.mlm_label_id_overrides.get(info.layout, {}).get(k, ids[0])]
    elif info.layout == 'v1':
      ids = ids[:info.target_length]
    else:
      ids = ids + [vocab.eos_id]
    if len(ids) > info.target_length:
      raise ValueError(f'label word {word!r} of task {name!r} is {len(ids)} tokens, more than '
                       f'its target_length {info.target_length}')
    rows.append(tuple(int(i) for i in ids))
  return tuple(rows)
