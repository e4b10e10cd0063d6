"""SeqIO preprocessors: canonical fields -> model inputs / targets for both backbone kinds.

Seq2seq (T5 family): `format_seq2seq` fills the layout's template into `inputs` and puts the label
word / first gold answer / summary into `targets`; seqio then tokenizes (and appends EOS where the
layout asks for it). MLM (RoBERTa): `format_mlm` keeps the text segments apart and `tokenize_mlm`
builds `<s> a </s>` or `<s> a </s> b </s>` (paper-spec §1.2) with `targets` = the label word's id.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import seqio

from prompt_transfer_jax.tasks import templates
from prompt_transfer_jax.tasks._tf import tf

MLM_SINGLE_TEXT_TOKENS = 128     # single sentence: text cut to 128 pieces before <s> / </s>
MLM_PAIR_MAX_TOKENS = 131        # pair: 231 - 100 prompt slots; longer -> first 130 + </s>


def fill_template(template: str, ex) -> tf.Tensor:
  parts = []
  for literal, field in templates.template_fields(template):
    if literal:
      parts.append(literal)
    if field:
      parts.append(tf.strings.strip(ex[field]))
  return tf.strings.join(parts)


def _targets_and_extras(ex, task_type: str, label_words: Optional[Sequence[str]]):
  if task_type == 'QA':
    answers = ex['answers']
    first = tf.cond(tf.size(answers) > 0, lambda: answers[0], lambda: tf.constant(''))
    return first, {'answers': answers}
  if task_type == 'SUM':
    return ex['summary'], {}
  label = tf.cast(ex['label'], tf.int32)
  return tf.gather(tf.constant(label_words), label), {'label': label}


def format_seq2seq(template: str, task_type: str, label_words: Optional[Sequence[str]]) -> Callable:
  @seqio.map_over_dataset
  def fn(ex):
    targets, extras = _targets_and_extras(ex, task_type, label_words)
    return {'inputs': fill_template(template, ex), 'targets': targets, **extras}
  return fn


def format_mlm(segments: Sequence[str], task_type: str, label_words: Sequence[str]) -> Callable:
  @seqio.map_over_dataset
  def fn(ex):
    targets, extras = _targets_and_extras(ex, task_type, label_words)
    out = {f'segment_{i}': fill_template(s, ex) for i, s in enumerate(segments)}
    out['inputs'] = tf.strings.join([out[f'segment_{i}'] for i in range(len(segments))],
                                    separator=' </s> ')
    return {**out, 'targets': targets, **extras}
  return fn


def tokenize_mlm(label_ids: Callable[[], Sequence[int]], num_segments: int) -> Callable:
  """`<s> a </s>` (a cut to 128 pieces) or `<s> a </s> b </s>` (cut to 130 + `</s>` past 131);
  `targets` = [the label word's id]. `label_ids()` is evaluated when the dataset is built."""
  def preprocess(dataset, output_features):
    vocab = output_features['inputs'].vocabulary
    bos, eos = tf.constant([vocab.bos_id]), tf.constant([vocab.eos_id])
    ids_by_label = tf.constant(list(label_ids()), tf.int32)

    def fn(ex):
      segs = [vocab.encode_tf(ex[f'segment_{i}']) for i in range(num_segments)]
      if num_segments == 1:
        ids = tf.concat([bos, segs[0][:MLM_SINGLE_TEXT_TOKENS], eos], 0)
      else:
        ids = tf.concat([bos, segs[0], eos, segs[1], eos], 0)
        ids = tf.cond(tf.size(ids) > MLM_PAIR_MAX_TOKENS,
                      lambda: tf.concat([ids[:MLM_PAIR_MAX_TOKENS - 1], eos], 0), lambda: ids)
      out = {k: v for k, v in ex.items() if not k.startswith('segment_')}
      out.update(inputs=ids, inputs_pretokenized=ex['inputs'],
                 targets=ids_by_label[ex['label']][None], targets_pretokenized=ex['targets'])
      return out
    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
  return preprocess


def truncate_targets(length: int) -> Callable:
  """1.0 layout: keep the first `length` target pieces (no EOS is added afterwards)."""
  @seqio.map_over_dataset
  def fn(ex):
    return {**ex, 'targets': ex['targets'][:length]}
  return fn
