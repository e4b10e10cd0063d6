"""Evaluation: rank / first-token classification and cached decoding against direct references."""
import contextlib
import dataclasses
import textwrap

import gin

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
from tests.fake_devices import run_script

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


def _texts(n, seed=1):
  vocab = tasks.get_vocabulary('synth')
  words = [w for w in tasks.synthetic.VOCAB_WORDS if w.isalpha()][:40]
  rng = np.random.default_rng(seed)
  texts = [' '.join(rng.choice(words, 5)) for _ in range(n)]
  tokens = np.zeros((len(texts), LENGTHS['inputs']), np.int32)
  for i, text in enumerate(texts):
    ids = list(vocab.encode(text)) + [vocab.eos_id]
    tokens[i, :len(ids)] = ids
  return texts, tokens


@contextlib.contextmanager
def _qa_task(monkeypatch, name, texts, golds, **info_fields):
  """A temporary QA-style generation task over `texts` (synth vocabulary, F1 metric)."""
  vocab = tasks.get_vocabulary('synth')

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({'inputs': texts, 'targets': golds})

  seqio.TaskRegistry.add(name, seqio.FunctionDataSource(dataset_fn, splits=['validation']),
                         preprocessors=[seqio.preprocessors.tokenize,
                                        seqio.preprocessors.append_eos_after_trim],
                         output_features={'inputs': seqio.Feature(vocab),
                                          'targets': seqio.Feature(vocab)},
                         postprocess_fn=tasks.postprocessors.qa)
  info = dataclasses.replace(tasks.get_task_info('synth_nli_a'), name=name, key=name,
                             task_type='QA', label_words=None, metric='f1', target_length=3,
                             is_classification=False, **info_fields)
  real = tasks.get_task_info
  monkeypatch.setattr(tasks, 'get_task_info', lambda n: info if n == name else real(n))
  try:
    yield name
  finally:
    seqio.TaskRegistry.remove(name)


def test_greedy_decoding_with_the_task_metric(setup, monkeypatch):
  model, mesh, shardings, params, prompt, placed_prompt = setup
  vocab = tasks.get_vocabulary('synth')
  texts, tokens = _texts(11)
  predicted = [vocab.decode(ids) for ids in _greedy_reference(model, prompt, tokens, vocab.eos_id)]
  golds = [p if i % 2 == 0 else 'zzz' for i, p in enumerate(predicted)]   # half of them right
  with _qa_task(monkeypatch, 'ptj_test_greedy_echo', texts, golds) as name:
    ev = evaluator_lib.Evaluator(model, [name], LENGTHS, 4, mesh, shardings)
    result = ev.evaluate(params, placed_prompt)
  expected = tasks.metrics.squad_f1_em(golds, predicted)
  assert result['tasks'][name] == pytest.approx(expected)
  assert result['metric'] == 'f1' and result['score'] == pytest.approx(expected['f1'])
  assert 30.0 < expected['f1'] < 100.0


def test_first_token_scoring_equals_a_hand_computation(setup):
  """1.0's rule: argmax of the first decoding step's logits over each label's first piece."""
  model, mesh, shardings, params, prompt, _ = setup
  options = evaluator_lib.EvalOptions(scoring='first_token')
  ev = evaluator_lib.Evaluator(model, ['synth_nli_a', 'synth_sentiment_a'], LENGTHS, 8, mesh,
                               shardings, max_examples=13, options=options)
  prompts = np.stack([prompt, 2.0 * prompt[::-1]])
  results = ev.evaluate_many(params, prompts)
  t5 = t5_lib.T5(model.config)
  for t in ev.tasks:
    features = t.eval_set.features
    first_ids = tasks.label_targets(t.info.name)[:, 0]
    for p, result in zip(prompts, results):
      logits = np.asarray(t5.apply({'params': model.params}, features['encoder_input_tokens'],
                                   np.zeros((len(t.eval_set), 1), np.int32), prompt=p))[:, 0]
      predicted = np.argmax(logits[:, first_ids], axis=-1)
      expected = 100.0 * np.mean(predicted == features['label'])
      assert result['tasks'][t.info.name]['accuracy'] == pytest.approx(expected)
  rank = evaluator_lib.Evaluator(model, ['synth_nli_a'], LENGTHS, 8, mesh, shardings,
                                 max_examples=13, options=evaluator_lib.EvalOptions())
  a = ev.outputs(ev.tasks[0], params, prompts)
  b = rank.outputs(rank.tasks[0], params, prompts)
  assert a.shape == b.shape == (2, 13, len(ev.tasks[0].label_targets))
  assert not np.allclose(a, b)


def test_per_task_decode_lengths_and_beam_option(setup, monkeypatch):
  """max_decode_length / min_decode_length of the task win over the targets length."""
  model, mesh, shardings, params, prompt, _ = setup
  texts, tokens = _texts(6, seed=2)
  bb = model.backbone
  with _qa_task(monkeypatch, 'ptj_test_decode_lengths', texts, ['x'] * 6,
                max_decode_length=5, min_decode_length=3) as name:
    greedy = evaluator_lib.Evaluator(model, [name], LENGTHS, 4, mesh, shardings,
                                     options=evaluator_lib.EvalOptions())
    beam = evaluator_lib.Evaluator(model, [name], LENGTHS, 4, mesh, shardings,
                                   options=evaluator_lib.EvalOptions(decoding='beam', beam_size=3,
                                                                     alpha=0.8))
    got_greedy = greedy.outputs(greedy.tasks[0], params, prompt[None])[0]
    got_beam = beam.outputs(beam.tasks[0], params, prompt[None])[0]
  eos = tasks.get_vocabulary('synth').eos_id
  want = np.asarray(bb.greedy_decode_uncached(model.params, prompt, tokens, 5, eos, 3))
  np.testing.assert_array_equal(got_greedy, want)
  assert got_greedy.shape == (6, 5) and not np.any(got_greedy[:, :3] == eos)
  want = np.asarray(bb.beam_search(model.params, prompt, tokens, 5, eos, 3, 0.8, 3))
  np.testing.assert_array_equal(got_beam, want)


def test_paper_generation_tasks_carry_the_1_0_decode_lengths():
  """1.0's HF max_length 10/10/50/50, min_length 2/3/2/2 (both count the start token)."""
  for key, (most, least) in {'squad': (9, 1), 'nq_open': (9, 2), 'multi_news': (49, 1),
                             'samsum': (49, 1)}.items():
    for name in (f't5_{key}', f't5_{key}_v1'):
      info = tasks.get_task_info(name)
      assert (info.max_decode_length, info.min_decode_length) == (most, least), name
  assert tasks.get_task_info('t5_sst2').max_decode_length is None


def test_options_come_from_gin_and_bad_values_fail(setup):
  model, mesh, shardings, *_ = setup
  with gin.unlock_config():
    gin.bind_parameter('ptj.eval_options.scoring', 'first_token')
    gin.bind_parameter('ptj.eval_options.beam_size', 2)
  try:
    ev = evaluator_lib.Evaluator(model, ['synth_nli_a'], LENGTHS, 8, mesh, shardings,
                                 max_examples=8)
  finally:
    gin.clear_config()
  assert ev.options == evaluator_lib.EvalOptions(scoring='first_token', beam_size=2)
  with pytest.raises(ValueError, match="scoring='best'"):
    evaluator_lib.EvalOptions(scoring='best')
  with pytest.raises(ValueError, match='beam_size must be >= 1'):
    evaluator_lib.EvalOptions(decoding='beam', beam_size=0)


def test_a_backbone_that_cannot_generate_is_refused(setup, monkeypatch):
  model, mesh, shardings, *_ = setup

  @dataclasses.dataclass(frozen=True)
  class ClassifierOnly:
    embed_dim: int = 32

    def score_labels(self, params, prompt, batch, label_targets):
      raise AssertionError('not called')

  frozen = dataclasses.replace(model, backbone=ClassifierOnly())
  texts, _ = _texts(2)
  with _qa_task(monkeypatch, 'ptj_test_no_generation', texts, ['x', 'y']) as name:
    with pytest.raises(ValueError, match="'ptj_test_no_generation' needs generation.*"
                                         'ClassifierOnly.*no greedy_decode'):
      evaluator_lib.Evaluator(frozen, [name], LENGTHS, 4, mesh, shardings)



_MESH_SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from prompt_transfer_jax import partitioning, tasks
    from prompt_transfer_jax.trainer import data as data_lib, evaluator as evaluator_lib
    from prompt_transfer_jax.trainer import frozen_model
    overrides = dict(vocab_size=tasks.SYNTH_VOCAB_SIZE, emb_dim=32, num_heads=2, head_dim=16,
                     mlp_dim=64, dropout_rate=0.0)
    model = frozen_model.t5_model(preset='t5_demo', config_overrides=overrides)
    prompts = np.random.default_rng(0).normal(size=(2, 4, 32)).astype(np.float32)
    scores = []
    for mp in (1, 2):
      mesh, shardings, params = model.on_mesh(mp)
      ev = evaluator_lib.Evaluator(model, ['synth_nli_a'], {'inputs': 16, 'targets': 3}, 8,
                                   mesh, shardings, max_examples=16)
      t = ev.tasks[0]
      fn, extra = ev._task_fn(t)
      batch = next(iter(data_lib.padded_batches(t.eval_set.features, 8)))
      batch.pop('example_mask')
      placed = partitioning.place(prompts, partitioning.replicated(mesh))
      text = fn.lower(params, placed, batch, *extra).as_text()
      heads = [l for l in text.splitlines()
               if 'sharding_constraint' in l and '{?}, {"data"}, {}, {"model"}, {}]' in l]
      print('CONSTRAINED', mp, len(heads))
      scores.append(ev.outputs(t, params, placed))
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-5)
    print('OK')
''')


def test_evaluator_constrains_activations_on_a_mesh():
  """Like the train step, the evaluator's compiled calls lower under the mesh and the logical
  rules (prompts vmapped: examples over 'data', attention heads over 'model'), and a 4x2 mesh
  scores like one device. (One-device meshes cannot show it: JAX's vmap rule leaves a
  replicated constraint unbatched.)"""
  out = run_script(_MESH_SCRIPT)
  assert 'OK' in out, out
  counts = dict(line.split()[1:] for line in out.splitlines() if line.startswith('CONSTRAINED'))
  assert int(counts['2']) > 0, out
