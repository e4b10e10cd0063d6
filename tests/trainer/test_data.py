"""SeqIO -> model batches: features, deterministic resumable stream, host shards, eval padding."""
import itertools

import numpy as np
import pytest

from prompt_transfer_jax import tasks
from prompt_transfer_jax.trainer import data as data_lib

LENGTHS = {'inputs': 16, 'targets': 2}
TASK = 'synth_sentiment_a'


def test_model_features_pad_shift_and_label():
  fn = data_lib.model_features({'inputs': 5, 'targets': 4}, pad_id=1, label_ids=np.array([7, 9]))
  ex = {'inputs': np.array([3, 4, 5], np.int32), 'targets': np.array([9, 2, 1], np.int32)}
  out = {k: v.numpy() for k, v in fn(ex).items()}
  np.testing.assert_array_equal(out['encoder_input_tokens'], [3, 4, 5, 1, 1])
  np.testing.assert_array_equal(out['decoder_target_tokens'], [9, 2, 1, 0])
  np.testing.assert_array_equal(out['decoder_input_tokens'], [0, 9, 2, 1])
  np.testing.assert_array_equal(out['decoder_loss_weights'], [1, 1, 1, 0])
  assert out['label'] == 1                      # looked up from the first target token
  assert fn({**ex, 'label': np.int32(0)})['label'].numpy() == 0
  assert fn({**ex, 'targets': np.array([8], np.int32)})['label'].numpy() == -1


def test_stream_is_deterministic_and_resumable():
  first = list(itertools.islice(data_lib.train_batches(TASK, LENGTHS, 8, seed=3), 5))
  again = list(itertools.islice(data_lib.train_batches(TASK, LENGTHS, 8, seed=3), 5))
  resumed = list(itertools.islice(data_lib.train_batches(TASK, LENGTHS, 8, seed=3, start_batch=3), 2))
  other = next(data_lib.train_batches(TASK, LENGTHS, 8, seed=4))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['encoder_input_tokens'], b['encoder_input_tokens'])
  for a, b in zip(first[3:], resumed):
    for k in data_lib.MODEL_FEATURES:
      np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(first[0]['encoder_input_tokens'], other['encoder_input_tokens'])
  assert first[0]['encoder_input_tokens'].shape == (8, 16)
  assert set(np.unique(first[0]['label'])) <= {0, 1}


def test_host_shards_partition_the_global_batch():
  """Two hosts' local batches (ShardInfo) hold exactly the rows of one host's global batch."""
  kw = dict(shuffle=False, seed=0)
  whole = next(data_lib.train_batches(TASK, LENGTHS, 8, process_index=0, process_count=1, **kw))
  parts = [next(data_lib.train_batches(TASK, LENGTHS, 8, process_index=i, process_count=2, **kw))
           for i in range(2)]
  assert all(p['encoder_input_tokens'].shape == (4, 16) for p in parts)
  rows = lambda a: sorted(map(tuple, a['encoder_input_tokens'].tolist()))  # noqa: E731
  assert rows(whole) == sorted(rows(parts[0]) + rows(parts[1]))
  with pytest.raises(ValueError, match='not divisible'):
    data_lib.local_batch_size(6, 4)


def test_padded_batches_keep_every_example():
  features = {'x': np.arange(10).reshape(10, 1), 'label': np.arange(10)}
  batches = list(data_lib.padded_batches(features, 4))
  assert [b['x'].shape for b in batches] == [(4, 1)] * 3
  np.testing.assert_array_equal(batches[-1]['example_mask'], [1, 1, 0, 0])
  kept = np.concatenate([b['label'][b['example_mask'] == 1] for b in batches])
  np.testing.assert_array_equal(kept, np.arange(10))


def test_eval_set_reads_the_whole_split_in_order():
  eval_set = data_lib.eval_set(TASK, LENGTHS)
  assert len(eval_set) == tasks.synthetic.VALIDATION_SIZE
  assert eval_set.features['encoder_input_tokens'].shape == (len(eval_set), 16)
  np.testing.assert_array_equal(eval_set.features['label'], eval_set.golds)
  expected = [ex['label'] for ex in tasks.synthetic.generate(TASK, 'validation')]
  assert eval_set.golds == expected
  with pytest.raises(ValueError, match='no split'):
    data_lib.eval_set(TASK, LENGTHS, split='dev')


def test_unknown_task_is_one_line():
  with pytest.raises(ValueError, match="unknown task or mixture 'synth_sentimnt_a'") as e:
    data_lib.provider('synth_sentimnt_a')
  assert '\n' not in str(e.value)
  assert data_lib.task_names_of('synth_type_sa') == ['synth_sentiment_a', 'synth_sentiment_b',
                                                     'synth_sentiment_c']
