"""The task table: names, types, label words, metrics, lengths; lookup errors; idempotence."""
import importlib

import numpy as np
import pytest
import seqio

PAPER_TYPES = {  # paper-spec §1 table
    'imdb': 'SA', 'sst2': 'SA', 'laptop': 'SA', 'restaurant': 'SA', 'movie_rationales': 'SA',
    'tweeteval_sentiment': 'SA', 'mnli': 'NLI', 'qnli': 'NLI', 'snli': 'NLI',
    'ethics_deontology': 'EJ', 'ethics_justice': 'EJ', 'qqp': 'PI', 'mrpc': 'PI', 'squad': 'QA',
    'nq_open': 'QA', 'multi_news': 'SUM', 'samsum': 'SUM'}
T5_WORDS = {  # paper-spec §1.3
    'imdb': 'negative positive', 'laptop': 'negative moderate positive conflict',
    'tweeteval_sentiment': 'negative moderate positive', 'mnli': 'contradiction neutral entailment',
    'qnli': 'contradiction entailment', 'qqp': 'false true', 'ethics_justice': 'unacceptable acceptable'}
ROBERTA_WORDS = {  # paper-spec §1.2
    'sst2': 'negative positive', 'restaurant': 'negative moderate positive conflict',
    'tweeteval_sentiment': 'negative moderate positive', 'snli': 'no neutral yes', 'qnli': 'no yes',
    'mrpc': 'false true', 'ethics_deontology': 'unacceptable acceptable'}
V1_TARGET_LENGTHS = {'sst2': 1, 'mnli': 2, 'qnli': 2, 'qqp': 1, 'ethics_justice': 1, 'squad': 20,
                     'nq_open': 20, 'multi_news': 30, 'samsum': 50}


def test_every_family_registers_the_paper_tasks(tasks):
  for family in ('t5', 'mt5', 'byt5'):
    for key, task_type in PAPER_TYPES.items():
      info = tasks.get_task_info(f'{family}_{key}')
      assert (info.key, info.family, info.task_type, info.layout) == (key, family, task_type, 'clean')
      assert seqio.get_mixture_or_task(info.name).name == info.name
  roberta = {tasks.get_task_info(n).key for n in tasks.task_names('roberta')}
  assert roberta == {k for k, t in PAPER_TYPES.items() if t not in ('QA', 'SUM')} | {
      k for k in roberta if k.startswith('synth_')}
  assert len([k for k in roberta if not k.startswith('synth_')]) == 13


def test_task_info_fields_follow_the_paper(tasks):
  for key, words in T5_WORDS.items():
    assert tasks.get_task_info(f't5_{key}').label_words == tuple(words.split())
  for key, words in ROBERTA_WORDS.items():
    info = tasks.get_task_info(f'roberta_{key}')
    assert info.label_words == tuple(words.split()) and info.target_length == 1
  for key, task_type in PAPER_TYPES.items():
    info = tasks.get_task_info(f't5_{key}')
    assert info.metric == {'QA': 'f1', 'SUM': 'rouge_l'}.get(task_type, 'accuracy')
    assert info.is_classification == (task_type not in ('QA', 'SUM'))
    assert (info.label_words is None) == (not info.is_classification)
  for key, length in V1_TARGET_LENGTHS.items():
    assert tasks.get_task_info(f't5_{key}_v1').target_length == length
  assert tasks.get_task_info('t5_mnli').source == 'tfds:glue/mnli:2.0.0'
  assert tasks.get_task_info('t5_laptop').source.startswith('local:')


def test_synthetic_tasks_in_every_family(tasks):
  for key in ('synth_sentiment_a', 'synth_nli_b', 'synth_paraphrase_a'):
    infos = [tasks.get_task_info(tasks.task_name(f, key)) for f in ('synth', 't5', 'roberta')]
    assert [i.name for i in infos] == [key, f't5_{key}', f'roberta_{key}']
    assert len({i.task_type for i in infos}) == 1
  assert tasks.get_task_info('roberta_synth_nli_a').label_words == ('no', 'yes')
  assert tasks.get_task_info('synth_nli_a').label_words == ('contradiction', 'entailment')
  assert tasks.SYNTH_VOCAB_SIZE % 128 == 0


def test_unknown_names_give_one_line_errors(tasks):
  with pytest.raises(ValueError, match=r"unknown task 't5_mnlii'; close matches: t5_mnli") as e:
    tasks.get_task_info('t5_mnlii')
  assert '\n' not in str(e.value)
  with pytest.raises(ValueError, match='unknown mixture') as e:
    tasks.mixture_tasks('t5_typ_sa')
  assert '\n' not in str(e.value)
  with pytest.raises(ValueError, match='only for classification'):
    tasks.label_targets('t5_squad')


def test_import_twice_is_idempotent(tasks):
  names, mixtures = list(tasks.task_names()), list(tasks.mixture_names())
  n_seqio = len(seqio.TaskRegistry.names())
  importlib.reload(importlib.import_module('prompt_transfer_jax.tasks'))
  from prompt_transfer_jax.tasks import mixtures as mixtures_lib, registry
  registry.register_all()
  mixtures_lib.register_all()
  assert tasks.task_names() == names and tasks.mixture_names() == mixtures
  assert len(seqio.TaskRegistry.names()) == n_seqio


def test_label_targets_for_the_synth_family(tasks):
  vocab = tasks.get_vocabulary('synth')
  targets = tasks.label_targets('synth_sentiment_b')
  assert targets.dtype == np.int32 and targets.shape == (2, 2)
  for row, word in zip(targets, ('negative', 'positive')):
    assert row.tolist() == [*vocab.encode(word), vocab.eos_id]
