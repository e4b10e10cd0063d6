"""`ptj bank add | list | recommend`: C_average and ON ranking, initial-prompt hand-off."""
import json

import numpy as np
import pytest

from prompt_transfer_jax import cli as ptj
from prompt_transfer_jax.analysis import indicators as ind
from prompt_transfer_jax.analysis.activation_store import save_activations
from prompt_transfer_jax.analysis.bank import PromptBank

TASKS = ['sst2', 'imdb', 'mnli', 'qqp']


@pytest.fixture
def bank(tmp_path):
  """A bank of 4 prompts (8 x 6) with activations; returns (dir, prompts, activations)."""
  rng = np.random.default_rng(0)
  prompts = rng.normal(size=(4, 8, 6)).astype(np.float32)
  acts = rng.normal(size=(4, 3, 10)).astype(np.float32)
  save_activations(str(tmp_path / 'acts.npz'), TASKS, acts, meta={'spec': {'stack': 'decoder'}})
  for i, task in enumerate(TASKS):
    np.save(tmp_path / f'{task}.npy', prompts[i])
    assert ptj.main(['bank', 'add', '--bank', str(tmp_path / 'bank'), '--prompt', str(tmp_path / f'{task}.npy'),
                     '--task', task, '--backbone', 'tiny', '--type', 'SA' if i < 2 else 'NLI',
                     '--score', str(80 + i), '--steps', '100', '--activations', str(tmp_path / 'acts.npz'),
                     '--activations_entry', task]) == 0
  return tmp_path, prompts, acts


def test_add_and_list(bank, capsys):
  tmp_path, prompts, acts = bank
  b = PromptBank(str(tmp_path / 'bank'))
  assert [e.name for e in b.entries] == TASKS
  e = b.get('mnli')
  assert (e.task, e.type, e.score, e.steps, e.shape) == ('mnli', 'NLI', 82.0, 100, [8, 6])
  np.testing.assert_array_equal(b.prompt(e), prompts[2])
  np.testing.assert_array_equal(b.activations(e), acts[2])
  assert e.activation_meta == {'spec': {'stack': 'decoder'}, 'layers': [0, 1, 2]}
  capsys.readouterr()
  assert ptj.main(['bank', 'list', '--bank', str(tmp_path / 'bank')]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 5 and lines[3].split()[:4] == ['mnli', 'mnli', 'NLI', 'tiny']


def test_recommend_by_c_average_hands_best_prompt_to_trainer(bank, capsys):
  tmp_path, prompts, _ = bank
  query = prompts[2] + 0.3 * np.random.default_rng(1).normal(size=prompts[2].shape).astype(np.float32)
  np.save(tmp_path / 'new.npy', query)
  init = tmp_path / 'init' / 'prompt.npy'
  init.parent.mkdir()
  capsys.readouterr()
  assert ptj.main(['bank', 'recommend', '--bank', str(tmp_path / 'bank'), '--task', 'rte',
                   '--prompt', str(tmp_path / 'new.npy'), '--init_out', str(init)]) == 0
  out = capsys.readouterr().out
  sims = ind.c_average(query[None], prompts)[0]
  order = [TASKS[i] for i in np.argsort(-sims)]
  assert order[0] == 'mnli'
  listed = [line.split()[1] for line in out.splitlines() if line.strip()[:2].rstrip('.').isdigit()]
  assert listed == order
  np.testing.assert_array_equal(np.load(init), prompts[2])
  assert f'PROMPT_FILE={init}' in out


def test_recommend_skips_same_task_and_other_shapes(bank):
  tmp_path, prompts, _ = bank
  b = PromptBank(str(tmp_path / 'bank'))
  b.add('wide', np.zeros((8, 7), np.float32), 'sst2', 'tiny')
  ranked = b.recommend('C_concat', prompt=prompts[0], exclude_task='sst2')
  sims = ind.c_concat(prompts[:1], prompts)[0]
  assert [r.entry.name for r in ranked] == [TASKS[i] for i in np.argsort(-sims) if TASKS[i] != 'sst2']
  assert [r.similarity for r in ranked] == pytest.approx(sorted(sims[1:], reverse=True))
  assert [r.entry.name for r in b.recommend('C_concat', prompt=prompts[0], backbone='other')] == []


def test_recommend_by_on_from_activation_file(bank, capsys):
  tmp_path, _, acts = bank
  query = acts[3] * np.where(np.random.default_rng(2).random(acts[3].shape) < 0.2, -1, 1)
  save_activations(str(tmp_path / 'q.npz'), ['new'], query[None], meta={'spec': {'stack': 'decoder'}})
  capsys.readouterr()
  assert ptj.main(['bank', 'recommend', '--bank', str(tmp_path / 'bank'), '--task', 'new',
                   '--by', 'ON', '--activations', str(tmp_path / 'q.npz')]) == 0
  first = capsys.readouterr().out.splitlines()[1].split()
  want = ind.overlap_of_activated_neurons(query[None], others=acts)[0]
  assert first[1] == TASKS[int(np.argmax(want))] == 'qqp'
  assert float(first[-1]) == pytest.approx(want.max(), abs=1e-4)
  # Activations from other extraction settings are not compared.
  save_activations(str(tmp_path / 'enc.npz'), ['new'], query[None], meta={'spec': {'stack': 'encoder'}})
  assert ptj.main(['bank', 'recommend', '--bank', str(tmp_path / 'bank'), '--task', 'new',
                   '--by', 'ON', '--activations', str(tmp_path / 'enc.npz')]) == 2
  assert 'no bank prompt can be compared by ON' in capsys.readouterr().err
  assert ptj.main(['bank', 'recommend', '--bank', str(tmp_path / 'bank'), '--task', 'new', '--by', 'ON']) == 2
  assert '--by ON needs --activations FILE' in capsys.readouterr().err


def test_recommend_by_on_runs_the_extractor(tmp_path, tiny_model, capsys):
  """Bank activations from `ptj analyze activations`; the query's computed on the fly, same model."""
  from prompt_transfer_jax.checkpoints import save_hf_t5
  backbone, params = tiny_model
  model_dir = save_hf_t5(tmp_path / 'model', backbone.config, params)
  rng = np.random.default_rng(3)
  (tmp_path / 'prompts').mkdir()
  prompts = rng.normal(size=(3, 4, backbone.embed_dim)).astype(np.float32)
  for i, p in enumerate(prompts):
    np.save(tmp_path / 'prompts' / f'task{i}.npy', p)
  model = ['--model', model_dir]
  assert ptj.main(['analyze', 'activations', '--prompts', str(tmp_path / 'prompts'), *model,
                   '--out', str(tmp_path / 'acts.npz')]) == 0
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.activations import extract_activations
  stored = load_activations(str(tmp_path / 'acts.npz'))
  assert stored.meta['model'] == model_dir and stored.names == ['task0', 'task1', 'task2']
  np.testing.assert_allclose(stored.activations, extract_activations(backbone, params, prompts), atol=1e-5)
  for i in range(3):
    assert ptj.main(['bank', 'add', '--bank', str(tmp_path / 'bank'), '--prompt',
                     str(tmp_path / 'prompts' / f'task{i}.npy'), '--task', f'task{i}', '--backbone',
                     't5x_tiny', '--activations', str(tmp_path / 'acts.npz'),
                     '--activations_entry', f'task{i}']) == 0
  capsys.readouterr()
  assert ptj.main(['bank', 'recommend', '--bank', str(tmp_path / 'bank'), '--task', 'task1',
                   '--include_same_task', '--by', 'ON', '--prompt',
                   str(tmp_path / 'prompts' / 'task1.npy'), *model]) == 0
  first = capsys.readouterr().out.splitlines()[1].split()
  assert first[1] == 'task1' and float(first[-1]) == pytest.approx(1.0)  # its own activations


def test_bank_errors(tmp_path, capsys):
  assert ptj.main(['bank', 'list', '--bank', str(tmp_path / 'none')]) == 2
  assert 'no prompt bank at' in capsys.readouterr().err
  np.save(tmp_path / 'p.npy', np.zeros((3,), np.float32))
  assert ptj.main(['bank', 'add', '--bank', str(tmp_path / 'b'), '--prompt', str(tmp_path / 'p.npy'),
                   '--task', 't', '--backbone', 'x']) == 2
  assert 'must be a 2-D [P, E] array' in capsys.readouterr().err
  b = PromptBank(str(tmp_path / 'b'), create=True)
  with pytest.raises(ValueError, match='must be letters'):
    b.add('../evil', np.zeros((2, 2)), 't', 'x')
  b.add('ok', np.zeros((2, 2)), 't', 'x')
  with pytest.raises(ValueError, match='already has a prompt named'):
    b.add('ok', np.zeros((2, 2)), 't', 'x')
  assert json.loads((tmp_path / 'b' / 'index.json').read_text())['prompts'][0]['name'] == 'ok'


def test_recommend_after_a_short_prompt_tuning_run(tmp_path, capsys):
  """`--short_run=STEPS`: the trainer tunes a query prompt on the new task, then ON / C_average rank."""
  from prompt_transfer_jax import tasks
  from prompt_transfer_jax.analysis.activation_store import load_activations
  from prompt_transfer_jax.analysis.activations import extract_activations, t5_sentinel_inputs
  from prompt_transfer_jax.checkpoints import save_hf_t5
  from prompt_transfer_jax.trainer import checkpointing, frozen_model, prompt_init
  model = frozen_model.t5_model(checkpoint=None, preset='t5_demo', config_overrides={
      'vocab_size': tasks.SYNTH_VOCAB_SIZE, 'emb_dim': 32, 'num_heads': 2, 'head_dim': 16,
      'mlp_dim': 64, 'dropout_rate': 0.0}, frozen_dtype=None, activation_dtype=None)
  ckpt = save_hf_t5(tmp_path / 'model', model.config, model.params)
  names = ['synth_sentiment_a', 'synth_nli_a', 'synth_paraphrase_a']
  prompts = np.random.default_rng(4).normal(size=(3, 4, 32)).astype(np.float32)
  (tmp_path / 'prompts').mkdir()
  for name, p in zip(names, prompts):
    np.save(tmp_path / 'prompts' / f'{name}.npy', p)
  extraction = ['--model', ckpt, '--sentinel_id', '2']    # <unk>: no <extra_id_0> in this vocabulary
  assert ptj.main(['analyze', 'activations', '--prompts', str(tmp_path / 'prompts'), *extraction,
                   '--out', str(tmp_path / 'acts.npz')]) == 0
  bank_dir = str(tmp_path / 'bank')
  for name in names:
    assert ptj.main(['bank', 'add', '--bank', bank_dir, '--prompt', str(tmp_path / 'prompts' / f'{name}.npy'),
                     '--task', name, '--backbone', 'tiny', '--activations', str(tmp_path / 'acts.npz'),
                     '--activations_entry', name]) == 0
  run = ['--short_run', '3', '--gin_file', 'models/t5_synth_prompt.gin',
         f"--gin.INITIAL_CHECKPOINT_PATH='{ckpt}'", '--gin.MODEL_PRESET=None',
         "--gin.ptj.t5_model.config_overrides={'dropout_rate': 0.0}", '--gin.PROMPT_LENGTH=4',
         '--gin.BATCH_SIZE=8', "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 2}",
         '--gin.ptj.train.max_eval_examples=16']
  init = tmp_path / 'init.npy'
  capsys.readouterr()
  assert ptj.main(['bank', 'recommend', '--bank', bank_dir, '--task', 'synth_sentiment_b', *run,
                   '--short_run_dir', str(tmp_path / 'run'), '--by', 'ON', *extraction,
                   '--init_out', str(init)]) == 0
  out = capsys.readouterr().out
  assert 'query prompt: 3 steps of prompt tuning on synth_sentiment_b' in out
  query = np.load(checkpointing.numpy_prompt_path(str(tmp_path / 'run'), 3))
  start = prompt_init.sampled_vocab_init(200)(model, ['synth_sentiment_b'], 4, 0)  # the gin's init
  assert query.shape == (4, 32) and not np.allclose(query, start)                   # it was tuned
  history = json.loads((tmp_path / 'run' / 'metrics.json').read_text())['history']
  assert [h['step'] for h in history] == [0, 3]
  acts = extract_activations(model.backbone, model.params, query[None], t5_sentinel_inputs(2))
  on = ind.overlap_of_activated_neurons(acts, others=load_activations(str(tmp_path / 'acts.npz')).select(names))[0]
  listed = [line.split()[1] for line in out.splitlines() if line.strip()[:2].rstrip('.').isdigit()]
  assert listed == [names[i] for i in np.argsort(-on, kind='stable')]
  np.testing.assert_array_equal(np.load(init), prompts[int(np.argmax(on))])
  assert prompt_init.load_checked(str(init), 4, 32).shape == (4, 32)     # what PROMPT_FILE reads
  # C_average, from a temporary run (removed afterwards): the same deterministic query prompt.
  assert ptj.main(['bank', 'recommend', '--bank', bank_dir, '--task', 'synth_sentiment_b', *run,
                   '--by', 'C_average']) == 0
  listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()
            if line.strip()[:2].rstrip('.').isdigit()]
  assert listed == [names[i] for i in np.argsort(-ind.c_average(query[None], prompts)[0], kind='stable')]
  assert ptj.main(['bank', 'recommend', '--bank', bank_dir, '--task', 'x', *run, '--by', 'ON']) == 2
  assert '--by ON with --short_run needs --model' in capsys.readouterr().err
  assert ptj.main(['bank', 'recommend', '--bank', bank_dir, '--task', 'x', *run,
                   '--prompt', str(init)]) == 2
  assert 'not both' in capsys.readouterr().err


def test_recommend_never_ranks_non_finite_scores(bank, capsys, monkeypatch):
  tmp_path, prompts, _ = bank
  real = ind.embedding_similarity

  def with_nan(name, query, others):
    sims = np.array(real(name, query, others), np.float64)
    sims[0, 1] = np.nan
    return sims
  monkeypatch.setattr(ind, 'embedding_similarity', with_nan)
  np.save(tmp_path / 'new.npy', prompts[2])
  init = tmp_path / 'init.npy'
  capsys.readouterr()
  assert ptj.main(['bank', 'recommend', '--bank', str(tmp_path / 'bank'), '--task', 'rte',
                   '--prompt', str(tmp_path / 'new.npy'), '--init_out', str(init)]) == 2
  err = capsys.readouterr().err
  assert err.startswith('ptj bank recommend: error: C_average scores of bank prompt(s) imdb are '
                        'not finite'), err
  assert not init.exists()
