"""Evaluation: rank classification and greedy decoding against direct per-example references."""
import dataclasses

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from prompt_transfer_jax import partitioning, tasks
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.trainer import evaluator as evaluator_lib
from prompt_transfer_jax.trainer import frozen_model
from prompt_transfer_jax.partitioning import place

LENGTHS = {'inputs': 16, 'targets': 3}
OVERRIDES = {'vocab_size': tasks.SYNTH_VOCAB_SIZE, 'emb_dim': 32, 'num_heads': 2, 'head_dim': 16,
             'mlp_dim': 64, 'dropout_rate': 0.0}


@pytest.fixture(scope='module')
def setup():
  model = frozen_model.t5_model(preset='t5_demo', config_overrides=OVERRIDES)
  mesh = partitioning.make_mesh()
  shardings = model.shardings(mesh)
  prompt = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
  replicated = partitioning.replicated(mesh)
  return model, mesh, shardings, place(model.params, shardings), prompt, place(prompt, replicated)


def test_rank_classification_scores_every_example(setup):
  model, mesh, shardings, params, prompt, placed_prompt = setup
  ev = evaluator_lib.Evaluator(model, ['synth_nli_a'], LENGTHS, 8, mesh, shardings,
                               max_examples=21)                 # 8 + 8 + 5 (padded)
  result = ev.evaluate(params, placed_prompt)
  features = ev.tasks[0].eval_set.features
  labels = tasks.label_targets('synth_nli_a')
  scores = jax.jit(model.backbone.score_labels)(model.params, prompt, features, labels)
  expected = 100.0 * np.mean(np.argmax(np.asarray(scores), -1) == features['label'])
  assert result['tasks']['synth_nli_a']['accuracy'] == pytest.approx(expected)
  assert result['score'] == pytest.approx(expected) and result['metric'] == 'accuracy'


def _greedy_reference(model, prompt, tokens, eos):
  """One example at a time, the full decoder re-run for every new token."""
  logits_fn = jax.jit(model.backbone.logits)
  out = []
  for row in tokens:
    ids = np.zeros((1, LENGTHS['targets']), np.int32)
    for i in range(LENGTHS['targets']):
      batch = {'encoder_input_tokens': row[None], 'decoder_input_tokens': np.asarray(t5_lib.shift_right(ids))}
      ids[0, i] = int(np.argmax(logits_fn(model.params, prompt, batch)[0, i]))
      if ids[0, i] == eos:
        break
    out.append([int(t) for t in ids[0]])
  return out


def test_greedy_decoding_with_the_task_metric(setup, monkeypatch):
  model, mesh, shardings, params, prompt, placed_prompt = setup
  vocab = tasks.get_vocabulary('synth')
  words = [w for w in tasks.synthetic.VOCAB_WORDS if w.isalpha()][:40]
  rng = np.random.default_rng(1)
  texts = [' '.join(rng.choice(words, 5)) for _ in range(11)]
  tokens = np.zeros((len(texts), LENGTHS['inputs']), np.int32)
  for i, text in enumerate(texts):
    ids = list(vocab.encode(text)) + [vocab.eos_id]
    tokens[i, :len(ids)] = ids
  predicted = [vocab.decode(ids) for ids in _greedy_reference(model, prompt, tokens, vocab.eos_id)]
  golds = [p if i % 2 == 0 else 'zzz' for i, p in enumerate(predicted)]   # half of them right

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({'inputs': texts, 'targets': golds})

  name = 'ptj_test_greedy_echo'
  seqio.TaskRegistry.add(name, seqio.FunctionDataSource(dataset_fn, splits=['validation']),
                         preprocessors=[seqio.preprocessors.tokenize,
                                        seqio.preprocessors.append_eos_after_trim],
                         output_features={'inputs': seqio.Feature(vocab),
                                          'targets': seqio.Feature(vocab)},
                         postprocess_fn=tasks.postprocessors.qa)
  info = dataclasses.replace(tasks.get_task_info('synth_nli_a'), name=name, key=name,
                             task_type='QA', label_words=None, metric='f1', target_length=3,
                             is_classification=False)
  real = tasks.get_task_info
  monkeypatch.setattr(tasks, 'get_task_info', lambda n: info if n == name else real(n))
  try:
    ev = evaluator_lib.Evaluator(model, [name], LENGTHS, 4, mesh, shardings)
    result = ev.evaluate(params, placed_prompt)
  finally:
    seqio.TaskRegistry.remove(name)
  expected = tasks.metrics.squad_f1_em(golds, predicted)
  assert result['tasks'][name] == pytest.approx(expected)
  assert result['metric'] == 'f1' and result['score'] == pytest.approx(expected['f1'])
  assert 30.0 < expected['f1'] < 100.0
