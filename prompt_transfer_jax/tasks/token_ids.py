"""Token ids against a model's embedding table: every id a task brings into a model must be one.

JAX clamps an out-of-range embedding lookup instead of failing, so a task whose vocabulary (or
pad, EOS, decoder start or label ids) does not fit the model trains and scores silent nonsense.
`check_fits` refuses it with one line naming the id, the vocabulary and the model's vocab_size.
The model side enters as plain numbers: this layer knows no models.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import seqio


def describe(vocab: seqio.Vocabulary) -> str:
  """A short name of a vocabulary for error messages (its file, when it has one)."""
  spm = getattr(vocab, 'sentencepiece_model_file', None)
  if spm:
    return f'SentencePiece {spm}'
  text = str(vocab)
  return type(vocab).__name__ if text.startswith('<') else text


def check_fits(task_name: str, vocab_size: int, pad_id: int,
               decoder_start_id: Optional[int] = None,
               label_targets: Optional[np.ndarray] = None) -> None:
  """Raises ValueError unless the ids of task `task_name` index a `vocab_size` embedding table.

  Checked, in order: the model's input `pad_id`, the `decoder_start_id` (seq2seq models), each
  feature vocabulary's EOS id, the `label_targets` ids (classification), then each feature
  vocabulary's size (every token id a tokenizer can emit).
  """
  task = seqio.get_mixture_or_task(task_name)
  vocabs = {describe(f.vocabulary): f.vocabulary for f in task.output_features.values()}
  for name, vocab in vocabs.items():
    ids = [('pad id', pad_id)]
    if decoder_start_id is not None:
      ids.append(('decoder start id', decoder_start_id))
    ids.append(('EOS id', vocab.eos_id))
    if label_targets is not None:
      ids += [('label id', int(i)) for i in np.unique(np.asarray(label_targets))]
    for what, value in ids:
      if value is not None and not 0 <= int(value) < vocab_size:
        raise ValueError(f"task {task_name!r}: {what} {int(value)} (vocabulary {name}) is outside "
                         f"the model's vocabulary (vocab_size {vocab_size}); use a model built "
                         'for this vocabulary')
    if vocab.vocab_size > vocab_size:
      raise ValueError(f"task {task_name!r}: vocabulary {name} has {vocab.vocab_size} ids, more "
                       f"than the model's vocab_size {vocab_size} (ids {vocab_size} and above "
                       'would be read as other tokens); use a model built for this vocabulary')
