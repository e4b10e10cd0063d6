"""A SeqIO feature converter for the masked-LM (RoBERTa) tasks.

`EncDecFeatureConverter` pads with 0, which is `<s>` in RoBERTa's vocabulary, and drops `label`.
`MlmFeatureConverter` pads `inputs` with RoBERTa's `<pad>` (1) and keeps the class index, giving
the batch `RobertaBackbone` reads: `encoder_input_tokens [B, L]`, `label [B]`, plus the label
word id as `decoder_target_tokens [B, 1]` (what `label_targets` holds for the class).
"""
from __future__ import annotations

from typing import Mapping

import seqio

from prompt_transfer_jax.tasks._tf import tf

_Spec = seqio.FeatureConverter.FeatureSpec


class MlmFeatureConverter(seqio.FeatureConverter):
  """inputs -> encoder_input_tokens (right-padded with `pad_id`); targets -> decoder_target_tokens;
  the task's int32 `label` -> label. Task feature lengths: {'inputs': L, 'targets': 1}."""

  TASK_FEATURES = {'inputs': _Spec(dtype=tf.int32), 'targets': _Spec(dtype=tf.int32)}
  MODEL_FEATURES = {'encoder_input_tokens': _Spec(dtype=tf.int32),
                    'decoder_target_tokens': _Spec(dtype=tf.int32),
                    'label': _Spec(dtype=tf.int32, rank=0)}
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, pad_id: int = 1, **kwargs):
    if kwargs.pop('pack', False):
      raise ValueError('MlmFeatureConverter does not pack: one prompt per sequence')
    self._pad_id = pad_id
    super().__init__(pack=False, **kwargs)

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    if 'label' not in ds.element_spec:
      raise ValueError('MlmFeatureConverter needs the int32 `label` feature of a classification task')
    length = task_feature_lengths['inputs']

    def convert(ex):
      ids = ex['inputs'][:length]
      ids = tf.pad(ids, [[0, length - tf.size(ids)]], constant_values=self._pad_id)
      targets = ex['targets'][:task_feature_lengths['targets']]
      targets = tf.pad(targets, [[0, task_feature_lengths['targets'] - tf.size(targets)]])
      return {'encoder_input_tokens': tf.ensure_shape(ids, [length]),
              'decoder_target_tokens': tf.ensure_shape(targets, [task_feature_lengths['targets']]),
              'label': tf.cast(ex['label'], tf.int32)}
    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    return {'encoder_input_tokens': task_feature_lengths['inputs'],
            'decoder_target_tokens': task_feature_lengths['targets'], 'label': 1}
