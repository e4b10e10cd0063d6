"""Mixtures: membership, example-count rates (capped), and sampling at those rates."""
import collections

import pytest
import seqio

from prompt_transfer_jax.tasks import mixtures
from prompt_transfer_jax.tasks import synthetic


def test_mixture_membership(tasks):
  assert set(tasks.mixture_tasks('t5_type_nli')) == {'t5_mnli', 't5_qnli', 't5_snli'}
  assert set(tasks.mixture_tasks('t5_type_sum_v1')) == {'t5_multi_news_v1', 't5_samsum_v1'}
  assert len(tasks.mixture_tasks('t5_all')) == 17
  assert len(tasks.mixture_tasks('t5_classification')) == 13
  assert len(tasks.mixture_tasks('roberta_all')) == 13
  assert set(tasks.mixture_tasks('synth_type_sa')) == {
      'synth_sentiment_a', 'synth_sentiment_b', 'synth_sentiment_c'}
  assert len(tasks.mixture_tasks('t5_synth_all')) == len(synthetic.SYNTH_KEYS)
  assert seqio.get_mixture_or_task('byt5_type_pi').name == 'byt5_type_pi'


def test_rates_are_capped_example_counts(tasks):
  mixture = seqio.get_mixture_or_task('synth_all')
  for task in mixture.tasks:
    assert mixture.get_rate(task) == synthetic.SYNTH_SPECS[task.name].train_size
  task = seqio.get_mixture_or_task('synth_sentiment_a')
  assert mixtures.rate(task, cap=1000) == 1000 and mixtures.rate(task, cap=None) == 4000


def test_mixture_draws_at_its_rates(tasks):
  domain = {w: key for key, spec in synthetic.SYNTH_SPECS.items() for w in spec.words}
  ds = seqio.get_mixture_or_task('synth_type_sa').get_dataset(
      {'inputs': 32, 'targets': 2}, split='train', shuffle=True, seed=0, copy_pretokenized=True)
  n = 1800
  counts = collections.Counter()
  for ex in ds.take(n).as_numpy_iterator():
    keys = {domain[w] for w in ex['inputs_pretokenized'].decode().split() if w in domain}
    assert len(keys) == 1
    counts[keys.pop()] += 1
  total = sum(synthetic.SYNTH_SPECS[k].train_size for k in counts)
  for key, count in counts.items():
    assert count / n == pytest.approx(synthetic.SYNTH_SPECS[key].train_size / total, abs=0.04)
