"""Zero-shot matrix: batched prompts equal the trainer's Evaluator run on each prompt alone."""
import dataclasses
import json

import numpy as np
import pytest
import seqio
import tensorflow as tf

from prompt_transfer_jax import partitioning, tasks
from prompt_transfer_jax.analysis.spearman import load_transfer_matrix
from prompt_transfer_jax.checkpoints import save_hf_t5
from prompt_transfer_jax.trainer import evaluator as evaluator_lib
from prompt_transfer_jax.trainer import frozen_model
from prompt_transfer_jax.partitioning import place
from prompt_transfer_jax.transfer import cli, zero_shot

TINY = {'vocab_size': tasks.SYNTH_VOCAB_SIZE, 'emb_dim': 32, 'num_heads': 2, 'head_dim': 16,
        'mlp_dim': 64, 'dropout_rate': 0.0}
LENGTHS = {'inputs': 16, 'targets': 2}
TARGETS = ['synth_nli_a', 'synth_paraphrase_a']
SOURCES = ['src_a', 'src_b', 'src_c']


@pytest.fixture(scope='module')
def model():
  return frozen_model.t5_model(checkpoint=None, preset='t5_demo', config_overrides=TINY,
                               frozen_dtype=None, activation_dtype=None)


@pytest.fixture(scope='module')
def prompts():
  return 3.0 * np.random.default_rng(0).normal(size=(3, 4, 32)).astype(np.float32)


def evaluate_each(model, prompts, targets, lengths, batch_size):
  """The trainer's Evaluator on one prompt at a time: [{task: metrics}] per prompt."""
  mesh = partitioning.make_mesh()
  shardings = model.shardings(mesh)
  ev = evaluator_lib.Evaluator(model, targets, lengths, batch_size, mesh, shardings)
  params = place(model.params, shardings)
  replicated = partitioning.replicated(mesh)
  return [ev.evaluate(params, place(p, replicated))['tasks'] for p in prompts]


def test_cli_matrix_equals_evaluator_per_prompt(tmp_path, model, prompts, capsys):
  """200 examples in batches of 64 (last one padded), 3 prompts + baseline in chunks of 3."""
  ckpt = save_hf_t5(tmp_path / 'model', model.config, model.params)
  (tmp_path / 'prompts').mkdir()
  for name, p in zip(SOURCES, prompts):
    np.save(tmp_path / 'prompts' / f'{name}.npy', p)
  out = tmp_path / 'zs.json'
  assert cli.main(['zero-shot', '--prompts', str(tmp_path / 'prompts'), '--targets', ','.join(TARGETS),
                   '--model', ckpt, '--inputs_length', '16', '--batch_size', '64',
                   '--prompt_chunk', '3', '--out', str(out)]) == 0
  assert f'wrote {out}' in capsys.readouterr().out
  data = json.loads(out.read_text())
  assert data['tasks'] == TARGETS and data['sources'] == SOURCES
  assert data['num_examples'] == {t: 200 for t in TARGETS}
  assert data['relative'] is None                     # no target has its own prompt here
  baseline = zero_shot.baseline_prompt('uniform', 4, 32, 0)
  assert baseline.min() >= 0 and baseline.max() < 1
  expected = evaluate_each(model, np.concatenate([prompts, baseline[None]]), TARGETS, LENGTHS, 64)
  for i, target in enumerate(TARGETS):
    for j, source in enumerate(SOURCES):
      assert data['details'][target][source] == pytest.approx(expected[j][target])
      assert data['matrix'][i][j] == pytest.approx(expected[j][target]['accuracy'])
    assert data['baseline']['scores'][i] == pytest.approx(expected[3][target]['accuracy'])
  scores = np.asarray(data['matrix'])
  assert len(np.unique(scores)) > 2           # the prompts really differ on these targets


def test_square_matrix_feeds_the_analysis(tmp_path, model, prompts):
  """Sources = targets: the file `load_transfer_matrix` reads; relative = score / diagonal."""
  names = ['synth_nli_a', 'synth_paraphrase_a', 'synth_sentiment_a']
  result = zero_shot.zero_shot_matrix(model, prompts, names, names, LENGTHS, batch_size=128,
                                      prompt_chunk=2, max_examples=40, baseline='zeros')
  path = tmp_path / 'transfer.json'
  result.save(str(path))
  tasks_read, matrix = load_transfer_matrix(str(path))
  assert tasks_read == names and matrix.shape == (3, 3)
  np.testing.assert_allclose(matrix, result.matrix)
  assert result.num_examples == {n: 40 for n in names}
  data = json.loads(path.read_text())
  diag = np.diag(result.matrix)
  np.testing.assert_allclose(np.asarray(data['relative'], float), 100 * result.matrix / diag[:, None])
  np.testing.assert_allclose(data['baseline']['relative'], 100 * np.asarray(data['baseline']['scores']) / diag)
  mesh = partitioning.make_mesh()
  ev = evaluator_lib.Evaluator(model, names, LENGTHS, 16, mesh, model.shardings(mesh), max_examples=40)
  zeros = ev.evaluate(place(model.params, model.shardings(mesh)),
                      place(np.zeros((4, 32), np.float32),
                            partitioning.replicated(mesh)))
  assert data['baseline']['scores'] == pytest.approx([zeros['tasks'][n]['accuracy'] for n in names])


def test_generation_target_decodes_every_prompt(model, prompts, monkeypatch):
  """A QA-style target: greedy decoding per prompt, the target's postprocessor and F1."""
  vocab = tasks.get_vocabulary('synth')
  words = [w for w in tasks.synthetic.VOCAB_WORDS if w.isalpha()][:30]
  rng = np.random.default_rng(1)
  texts = [' '.join(rng.choice(words, 4)) for _ in range(13)]
  golds = [' '.join(rng.choice(words, 1)) for _ in range(13)]

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({'inputs': texts, 'targets': golds})

  name = 'ptj_test_zero_shot_generation'
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
  lengths = {'inputs': 16, 'targets': 3}
  try:
    result = zero_shot.zero_shot_matrix(model, prompts, SOURCES, [name], lengths, batch_size=4,
                                        prompt_chunk=2)
    expected = evaluate_each(model, prompts, [name], lengths, 4)
  finally:
    seqio.TaskRegistry.remove(name)
  assert result.metrics == {name: 'f1'}
  for j, source in enumerate(SOURCES):
    assert result.details[name][source] == pytest.approx(expected[j][name])


def test_bad_input(model, prompts, tmp_path, capsys):
  with pytest.raises(ValueError, match=r'prompts must be \[N, P, 32\]'):
    zero_shot.zero_shot_matrix(model, prompts[..., :8], SOURCES, TARGETS)
  with pytest.raises(ValueError, match='2 source names for 3 prompts'):
    zero_shot.zero_shot_matrix(model, prompts, SOURCES[:2], TARGETS)
  with pytest.raises(ValueError, match='unknown baseline'):
    zero_shot.baseline_prompt('gauss', 4, 32)
  (tmp_path / 'p').mkdir()
  np.save(tmp_path / 'p' / 'a.npy', prompts[0])
  assert cli.main(['zero-shot', '--prompts', str(tmp_path / 'p'), '--model', 't5_demo',
                   '--targets', 'synth_nli_a', '--config_overrides', '[1]', '--out', 'x.json']) == 2
  assert '--config_overrides must be a JSON object' in capsys.readouterr().err
