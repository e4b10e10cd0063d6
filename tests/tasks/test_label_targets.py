"""Label targets are measured unpadded (the README's t5_sst2 with 'targets': 4) and their ids are
checked against the vocabulary."""
import numpy as np
import pytest

from prompt_transfer_jax.tasks import registry


def test_t5_sst2_fits_four_target_tokens(t5_spm, tasks):
  vocab = tasks.get_vocabulary('t5')
  targets = tasks.label_targets('t5_sst2', 4)
  assert targets.shape == (2, 4)
  for row, word in zip(targets, ('negative', 'positive')):
    ids = [*vocab.encode(word), vocab.eos_id]
    assert row.tolist() == ids + [0] * (4 - len(ids))
  np.testing.assert_array_equal(tasks.label_targets('t5_sst2')[:, :4], targets)
  assert tasks.label_targets('t5_sst2').shape == (2, 8)          # default: target_length
  longest = max(int((tasks.label_targets('t5_mnli') > 0).sum(1).max()), 2)
  with pytest.raises(ValueError, match=r"of task 't5_mnli' is \d+ tokens, more than "
                                       rf"TASK_FEATURE_LENGTHS\['targets'\]={longest - 1}"):
    tasks.label_targets('t5_mnli', longest - 1)


def test_label_ids_outside_the_vocabulary_are_refused(tasks, monkeypatch):
  real = registry.vocabularies.get_vocabulary

  class Truncated:
    """The synthetic vocabulary claiming only 3 ids."""
    vocab_size = 3

    def __init__(self, family):
      self._vocab = real(family)

    def __getattr__(self, name):
      return getattr(self._vocab, name)

  monkeypatch.setattr(registry.vocabularies, 'get_vocabulary', Truncated)
  registry._label_rows.cache_clear()
  try:
    with pytest.raises(ValueError, match=r"label word 'negative' of task 'synth_sentiment_a' has "
                                         r'token id \d+, outside its vocabulary of 3'):
      tasks.label_targets('synth_sentiment_a')
  finally:
    monkeypatch.undo()
    registry._label_rows.cache_clear()


def test_synth_label_ids_are_in_the_vocabulary(tasks):
  vocab = tasks.get_vocabulary('synth')
  for name in tasks.task_names('synth'):
    if tasks.get_task_info(name).is_classification:
      assert tasks.label_targets(name).max() < vocab.vocab_size
