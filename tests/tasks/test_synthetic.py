"""Synthetic tasks: deterministic, labels follow their rule, in-vocabulary, transfer within type."""
import collections

import numpy as np
import seqio

from prompt_transfer_jax.tasks import synthetic


def _rule(key, row):
  spec = synthetic.SYNTH_SPECS[key]
  if spec.task_type == 'SA':
    words = row['text'].split()
    pos = sum(w in synthetic.SHARED_POSITIVE + spec.positive for w in words)
    neg = sum(w in synthetic.SHARED_NEGATIVE + spec.negative for w in words)
    assert pos + neg in (1, 3)
    return int(pos > neg)
  if spec.task_type == 'NLI':
    pole = {w: p for dim in synthetic.ADJECTIVES for p, words in enumerate(dim) for w in words}
    noun, adjective = row['hypothesis'].split()
    premise = row['premise'].split()
    assert noun in premise and sum(w in pole for w in premise) == 1
    return int(pole[adjective] == next(pole[w] for w in premise if w in pole))
  half = len(spec.words) // 2
  topic = lambda text: {spec.words.index(w) < half for w in text.split()}  # noqa: E731
  assert len(topic(row['sentence1'])) == len(topic(row['sentence2'])) == 1
  return int(topic(row['sentence1']) == topic(row['sentence2']))


def test_generation_is_deterministic_balanced_and_follows_the_rule():
  for key, spec in synthetic.SYNTH_SPECS.items():
    for split in ('train', 'validation', 'test'):
      rows = synthetic.generate(key, split)
      assert rows == synthetic.generate(key, split)
      assert len(rows) == synthetic.split_size(key, split)
      assert sum(r['label'] for r in rows) == len(rows) // 2
      assert all(_rule(key, r) == r['label'] for r in rows)
    assert synthetic.generate(key, 'validation') != synthetic.generate(key, 'test')


def test_words_are_in_vocabulary_and_domains_disjoint(tasks):
  vocab = tasks.get_vocabulary('synth')
  domains = [set(s.words + s.positive + s.negative) for s in synthetic.SYNTH_SPECS.values()]
  assert sum(map(len, domains)) == len(set().union(*domains))
  shared = set(synthetic.SHARED_POSITIVE + synthetic.SHARED_NEGATIVE)
  shared |= {w for dim in synthetic.ADJECTIVES for pole in dim for w in pole}
  assert not shared & set().union(*domains)
  for key in synthetic.SYNTH_KEYS:
    for row in synthetic.generate(key, 'validation'):
      text = ' '.join(v for k, v in row.items() if k != 'label')
      assert vocab.unk_id not in vocab.encode(text)


def _bag_of_words(rows):
  index = {w: i for i, w in enumerate(synthetic.VOCAB_WORDS)}
  x = np.zeros((len(rows), len(index)))
  for i, row in enumerate(rows):
    for w in row['text'].split():
      x[i, index[w]] += 1
  return x, np.array([r['label'] for r in rows])


def test_sentiment_transfers_across_domains():
  """A linear model trained on one SA domain is far above chance on its siblings (shared words)
  but not perfect (domain words), like the paper's within-type transfer."""
  x, y = _bag_of_words(synthetic.generate('synth_sentiment_a', 'train'))
  w, b = np.zeros(x.shape[1]), 0.0
  for _ in range(300):
    grad = 1 / (1 + np.exp(-(x @ w + b))) - y
    w, b = w - 0.5 * x.T @ grad / len(y), b - 0.5 * grad.mean()
  accuracy = {}
  for key in ('synth_sentiment_a', 'synth_sentiment_b', 'synth_sentiment_c'):
    xv, yv = _bag_of_words(synthetic.generate(key, 'validation'))
    accuracy[key] = np.mean((xv @ w + b > 0) == yv)
  assert accuracy['synth_sentiment_a'] > 0.95
  assert 0.6 < accuracy['synth_sentiment_b'] < 0.95 and 0.6 < accuracy['synth_sentiment_c'] < 0.95


def test_synth_tasks_yield_encdec_batches(tasks):
  for name in ('synth_sentiment_c', 'synth_nli_b', 'synth_paraphrase_a'):
    info = tasks.get_task_info(name)
    ds = seqio.get_dataset(name, {'inputs': info.input_length, 'targets': info.target_length},
                           dataset_split='heldout_validation', shuffle=False, batch_size=8,
                           feature_converter=seqio.EncDecFeatureConverter(pack=False))
    batches = list(ds.as_numpy_iterator())
    heldout = round(0.05 * synthetic.SYNTH_SPECS[name].train_size)
    assert sum(len(b['encoder_input_tokens']) for b in batches) == heldout // 8 * 8  # drop_remainder
    labels = {tuple(r) for r in tasks.label_targets(name).tolist()}
    counts = collections.Counter(tuple(r) for b in batches for r in b['decoder_target_tokens'].tolist())
    assert set(counts) == labels
    assert all(b['encoder_input_tokens'].shape[1] == info.input_length for b in batches)
    assert not any((b['encoder_input_tokens'] == 2).any() for b in batches)   # no <unk>
