"""How each task's canonical fields become model inputs and targets: layouts and label words.

Two layouts per task (paper-spec §1.2, §1.3):
* `clean` (default): field-named, type-consistent T5 inputs (`premise: .. hypothesis: ..`), EOS on
  inputs and targets, whole label words as targets (rank classification scores every token);
  RoBERTa pairs premise-first.
* `v1`: the released 1.0 code exactly: T5 inputs as its formatters build them (hypothesis-first
  NLI, `s1 <extra_id_0> s2` for PI, ...), targets cut to the first `target_len` pieces with no EOS;
  RoBERTa hypothesis-first NLI and the hard-coded ETHICS class-0 id 897.
Where the spec is silent about an input EOS in `v1` (ETHICS, QA, SUM), none is added (UNCONFIRMED).

Canonical fields per type: SA `text` (+ `aspect`), NLI `premise`, `hypothesis`, PI `sentence1`,
`sentence2`, EJ `scenario` (+ `excuse`), QA `question` (+ `context`) and `answers`, SUM `document`,
`summary`; classification tasks carry an int `label` indexing `label_words`.
"""
from __future__ import annotations

import dataclasses
import string
from typing import Mapping, Optional

TASK_TYPES = ('SA', 'NLI', 'EJ', 'PI', 'QA', 'SUM')
CLASSIFICATION_TYPES = ('SA', 'NLI', 'EJ', 'PI')
METRIC_BY_TYPE = {'SA': 'accuracy', 'NLI': 'accuracy', 'EJ': 'accuracy', 'PI': 'accuracy',
                  'QA': 'f1', 'SUM': 'rouge_l'}


@dataclasses.dataclass(frozen=True)
class Template:
  """Formatting of one task. `seq2seq[layout] = (input template, add EOS to inputs)`;
  `mlm[layout]` = the RoBERTa text segments (one: `<s> a </s>`, two: `<s> a </s> b </s>`)."""
  key: str
  task_type: str
  seq2seq: Mapping[str, tuple[str, bool]]
  mlm: Optional[Mapping[str, tuple[str, ...]]] = None
  label_words: Optional[tuple[str, ...]] = None          # T5 family targets
  mlm_label_words: Optional[tuple[str, ...]] = None      # RoBERTa verbalizer (first BPE piece)
  mlm_label_id_overrides: Mapping[str, Mapping[int, int]] = dataclasses.field(default_factory=dict)
  v1_target_length: Optional[int] = None                 # 1.0's target_len (pieces, no EOS)

  @property
  def is_classification(self) -> bool:
    return self.task_type in CLASSIFICATION_TYPES

  @property
  def metric(self) -> str:
    return METRIC_BY_TYPE[self.task_type]


SENTIMENT2 = ('negative', 'positive')
SENTIMENT3 = ('negative', 'moderate', 'positive')     # 1.0 verbalises "neutral" as "moderate"
ABSA4 = ('negative', 'moderate', 'positive', 'conflict')
NLI3 = ('contradiction', 'neutral', 'entailment')
NLI2 = ('contradiction', 'entailment')
MLM_NLI3 = ('no', 'neutral', 'yes')
MLM_NLI2 = ('no', 'yes')
PI2 = ('false', 'true')
EJ2 = ('unacceptable', 'acceptable')

# Clean inputs shared by all tasks of a type (and by the synthetic tasks), so prompts see the
# same surface form within a type.
CLEAN_SEQ2SEQ = {
    'SA': 'sentence: {text}',
    'NLI': 'premise: {premise} hypothesis: {hypothesis}',
    'PI': 'sentence1: {sentence1} sentence2: {sentence2}',
}
CLEAN_MLM = {'SA': ('{text}',), 'NLI': ('{premise}', '{hypothesis}'),
             'PI': ('{sentence1}', '{sentence2}')}


def _sa(key, words=SENTIMENT2, v1_eos=True, absa=False) -> Template:
  text = '{text} {aspect}' if absa else '{text}'
  clean = 'sentence: {text} aspect: {aspect}' if absa else CLEAN_SEQ2SEQ['SA']
  both = {'clean': (text,), 'v1': (text,)}
  return Template(key, 'SA', {'clean': (clean, True), 'v1': (text, v1_eos)}, both, words, words,
                  v1_target_length=1)


def _nli(key, words, mlm_words, qnli=False) -> Template:
  v1 = 'hypothesis: {hypothesis} [SEP] sentence: premise: {premise}'
  # QNLI: hypothesis = question, premise = sentence; RoBERTa keeps question first in both layouts.
  mlm = ({'clean': ('{hypothesis}', '{premise}'), 'v1': ('{hypothesis}', '{premise}')} if qnli else
         {'clean': ('{premise}', '{hypothesis}'), 'v1': ('{hypothesis}', '{premise}')})
  return Template(key, 'NLI', {'clean': (CLEAN_SEQ2SEQ['NLI'], True), 'v1': (v1, False)}, mlm,
                  words, mlm_words, v1_target_length=2)


def _pi(key) -> Template:
  pair = ('{sentence1}', '{sentence2}')
  return Template(key, 'PI', {'clean': (CLEAN_SEQ2SEQ['PI'], True),
                              'v1': ('{sentence1} <extra_id_0> {sentence2}', True)},
                  {'clean': pair, 'v1': pair}, PI2, PI2, v1_target_length=1)


def _ej(key, excuse: bool) -> Template:
  clean = 'scenario: {scenario} excuse: {excuse}' if excuse else 'scenario: {scenario}'
  v1 = '{scenario} {excuse}' if excuse else '{scenario}'
  segs = ('{scenario}', '{excuse}') if excuse else ('{scenario}',)
  # 1.0 scores RoBERTa class 0 with id 897 although its comment names "un" (879), the first piece
  # of "unacceptable" that the clean layout uses (paper-spec §1.2, UNCONFIRMED which one was used).
  return Template(key, 'EJ', {'clean': (clean, True), 'v1': (v1, False)},
                  {'clean': segs, 'v1': segs}, EJ2, EJ2, {'v1': {0: 897}}, v1_target_length=1)


PAPER_TEMPLATES: dict[str, Template] = {t.key: t for t in [
    _sa('imdb', v1_eos=False),
    _sa('sst2'),
    _sa('laptop', ABSA4, absa=True),
    _sa('restaurant', ABSA4, absa=True),
    _sa('movie_rationales'),
    _sa('tweeteval_sentiment', SENTIMENT3),
    _nli('mnli', NLI3, MLM_NLI3),
    _nli('qnli', NLI2, MLM_NLI2, qnli=True),
    _nli('snli', NLI3, MLM_NLI3),
    _ej('ethics_deontology', excuse=True),
    _ej('ethics_justice', excuse=False),
    _pi('qqp'),
    _pi('mrpc'),
    Template('squad', 'QA', {'clean': ('question: {question} context: {context}', True),
                             'v1': ('context: {context} SEP question:{question}', False)},
             v1_target_length=20),
    Template('nq_open', 'QA', {'clean': ('question: {question}', True),
                               'v1': ('context: {question}', False)}, v1_target_length=20),
    Template('multi_news', 'SUM', {'clean': ('summarize: {document}', True),
                                   'v1': ('{document}', False)}, v1_target_length=30),
    Template('samsum', 'SUM', {'clean': ('summarize: {document}', True),
                               'v1': ('context: {document}', False)}, v1_target_length=50),
]}
PAPER_KEYS = tuple(PAPER_TEMPLATES)


def type_template(key: str, task_type: str, label_words, mlm_label_words) -> Template:
  """A clean-only template shared by every task of `task_type` (used by the synthetic tasks)."""
  mlm = CLEAN_MLM[task_type]
  return Template(key, task_type, {'clean': (CLEAN_SEQ2SEQ[task_type], True)}, {'clean': mlm},
                  tuple(label_words), tuple(mlm_label_words))


def template_fields(template: str) -> list[tuple[str, Optional[str]]]:
  """Splits 'a {x} b' into [('a ', 'x'), (' b', None)]: literal text, then a field name."""
  return [(lit, field) for lit, field, _, _ in string.Formatter().parse(template)]
