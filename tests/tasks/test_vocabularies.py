"""Vocabularies: T5 SentencePiece label ids (paper-spec §1.3), RoBERTa BPE, bytes, synthetic words."""
import numpy as np
import pytest

from prompt_transfer_jax.tasks import settings
from prompt_transfer_jax.tasks import vocabularies
from prompt_transfer_jax.tasks._tf import tf

PAPER_T5_IDS = {'negative': 2841, 'positive': 1465, 'moderate': 8107, 'conflict': 4129,
                'contradiction': 27252, 'neutral': 7163, 'false': 6136, 'true': 1176,
                'unacceptable': 29452, 'acceptable': 9961}


@pytest.fixture
def real_t5(spm_model_path, tasks):
  settings.configure(t5_vocab=str(spm_model_path))
  yield tasks.get_vocabulary('t5')
  settings.reset('t5_vocab')


def test_t5_label_words_have_the_paper_ids(real_t5, tasks):
  for word, idx in PAPER_T5_IDS.items():
    assert real_t5.encode(word)[0] == idx, word
  assert real_t5.encode('entailment')[0] == 3  # the bare "▁" piece (paper-spec §1.3)
  assert real_t5.encode('<extra_id_0>') == [32099]
  assert tasks.label_targets('t5_mnli').tolist() == [
      [27252, 1, 0, 0, 0, 0, 0, 0], [7163, 1, 0, 0, 0, 0, 0, 0], [3, 35, 5756, 297, 1, 0, 0, 0]]
  assert tasks.label_targets('t5_mnli_v1').tolist() == [[27252, 0], [7163, 0], [3, 35]]
  assert tasks.label_targets('t5_ethics_justice_v1').tolist() == [[29452], [9961]]
  assert tasks.label_targets('t5_laptop_v1')[:, 0].tolist() == [2841, 8107, 1465, 4129]
  text = tf.constant('premise: A man sleeps. hypothesis: Nobody sleeps.')
  assert real_t5.encode_tf(text).numpy().tolist() == real_t5.encode(text.numpy().decode())


def test_missing_sentencepiece_model_is_a_one_line_error(tasks, tmp_path):
  settings.configure(t5_vocab=str(tmp_path / 'nope.model'))
  try:
    with pytest.raises(ValueError, match='nope.model.*PTJ_T5_VOCAB') as e:
      tasks.label_targets('t5_sst2')
    assert '\n' not in str(e.value)
  finally:
    settings.reset('t5_vocab')


def test_roberta_bpe_vocabulary(roberta_dir, tasks):
  import tokenizers
  vocab = tasks.get_vocabulary('roberta')
  reference = tokenizers.Tokenizer.from_file(str(roberta_dir / 'tokenizer.json'))
  assert (vocab.bos_id, vocab.pad_id, vocab.eos_id, vocab.unk_id, vocab.mask_id) == (0, 1, 2, 3, 4)
  text = 'alpha bravo charlie delta'
  ids = vocab.encode(text)
  assert ids == reference.encode(text).ids and vocab.decode(ids) == text
  assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids
  assert vocab.decode_tf(tf.constant(ids + [vocab.eos_id, 7])).numpy().decode() == text
  for name in ('roberta_mnli', 'roberta_ethics_deontology', 'roberta_tweeteval_sentiment'):
    words = tasks.get_task_info(name).label_words
    assert tasks.label_targets(name)[:, 0].tolist() == [reference.token_to_id(w) for w in words]
  # 1.0 scores ETHICS class 0 with the hard-coded id 897 (paper-spec §1.2).
  assert tasks.label_targets('roberta_ethics_justice_v1')[:, 0].tolist() == [
      897, reference.token_to_id('acceptable')]


def test_roberta_vocab_json_and_merges_directory(roberta_dir, tmp_path):
  import tokenizers
  reference = tokenizers.Tokenizer.from_file(str(roberta_dir / 'tokenizer.json'))
  reference.model.save(str(tmp_path))  # vocab.json + merges.txt, as in a HF model directory
  vocab = vocabularies.RobertaBPEVocabulary(tmp_path)
  text = 'echo foxtrot golf positive'
  assert vocab.encode(text) == reference.encode(text).ids
  assert vocab.eos_id == 2 and vocab.decode(vocab.encode(text)) == text
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='neither tokenizer.json nor') as e:
    vocabularies.RobertaBPEVocabulary(tmp_path / 'empty').encode('a')
  assert '\n' not in str(e.value)


def test_word_vocabulary_roundtrip(tasks):
  vocab = tasks.get_vocabulary('synth')
  text = 'premise: cat dog hypothesis: dog'
  ids = vocab.encode(text)
  assert min(ids) >= 3 and vocab.decode(ids + [1, 5]) == text
  assert vocab.encode('cat zebra')[1] == vocab.unk_id
  assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids
  assert vocab.decode_tf(tf.constant([ids + [1, 0]])).numpy()[0].decode() == text
  assert vocab.vocab_size == tasks.SYNTH_VOCAB_SIZE


def test_byt5_label_targets_are_bytes_plus_three(tasks):
  targets = tasks.label_targets('byt5_ethics_justice')
  word = 'unacceptable'
  assert targets[0, :len(word) + 1].tolist() == [b + 3 for b in word.encode()] + [1]
  assert np.all(targets[0, len(word) + 1:] == 0)
