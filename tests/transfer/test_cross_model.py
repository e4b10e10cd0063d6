"""Cross-model projector training: task tuning through a frozen target, distance minimizing,
resume, the `ptj project` CLI end to end on the synthetic tasks, and bad input."""
import errno
import json
import os
import signal

import jax
import numpy as np
import pytest

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.tasks import SYNTH_VOCAB_SIZE
from prompt_transfer_jax.trainer import checkpointing, frozen_model, preemption, run_lock, runs
from prompt_transfer_jax.trainer import step as step_lib
from prompt_transfer_jax.partitioning import host, place
from prompt_transfer_jax.transfer import cross_model, project_cli
from prompt_transfer_jax.transfer import projector as projector_lib
from tests.tasks.conftest import roberta_dir, tasks  # noqa: F401  (fixtures: a tiny RoBERTa BPE)

TINY = {'vocab_size': SYNTH_VOCAB_SIZE, 'emb_dim': 32, 'num_heads': 2, 'head_dim': 16,
        'mlp_dim': 64, 'dropout_rate': 0.0}
TINY_GIN = ("{'vocab_size': %ptj.SYNTH_VOCAB_SIZE, 'emb_dim': 32, 'num_heads': 2, "
            "'head_dim': 16, 'mlp_dim': 64, 'dropout_rate': 0.0}")
SHORT = ["TASK_FEATURE_LENGTHS = {'inputs': 16, 'targets': 2}", 'BATCH_SIZE = 8',
         'PROMPT_LENGTH = 4', 'ptj.train.max_eval_examples = 16']


def _t5_target():
  return frozen_model.t5_model(checkpoint=None, preset='t5_demo', config_overrides=TINY,
                               frozen_dtype=None, activation_dtype=None), None


def _roberta_target():
  model = frozen_model.roberta_model(preset='roberta_tiny', config_overrides={
      'hidden_dropout_prob': 0.0, 'attention_probs_dropout_prob': 0.0})
  return model, np.array([[100], [200]], np.int32)


def _batch(model, rng):
  """A fixed batch of 8 examples a frozen model can fit (T5: label word + EOS targets)."""
  tokens = rng.integers(5, 90, size=(8, 8)).astype(np.int32)
  labels = np.array([0, 1] * 4, np.int32)
  targets = np.stack([np.where(labels == 0, 10, 11), np.ones(8, np.int32)], 1).astype(np.int32)
  tokens[:, -1] = model.pad_id
  return {'encoder_input_tokens': tokens, 'label': labels, 'decoder_target_tokens': targets,
          'decoder_input_tokens': np.stack([np.zeros(8, np.int32), targets[:, 0]], 1),
          'decoder_loss_weights': np.ones((8, 2), np.int32)}


# A random RoBERTa-tiny (hidden 16) barely reacts to its prompt: its loss falls, but slowly.
@pytest.mark.parametrize('target,source_dim,fall', [(_t5_target, 16, 0.85),
                                                    (_roberta_target, 32, 1.0 - 1e-6)],
                         ids=['roberta_width_to_t5', 't5_width_to_roberta'])
def test_task_tuning_trains_the_projector_through_the_frozen_target(target, source_dim, fall):
  model, label_targets = target()
  backbone = model.for_task(label_targets)
  spec = projector_lib.ProjectorSpec(4, source_dim, model.embed_dim, hidden_dim=16)
  mesh = partitioning.make_mesh()
  shardings = model.shardings(mesh)
  frozen = place(model.params, shardings)
  rng = np.random.default_rng(0)
  source = rng.normal(size=(4, source_dim)).astype(np.float32)
  batch = _batch(model, rng)
  tx = cross_model.projector_optimizer('task_tuning')
  loss_cfg = step_lib.LossConfig(0.0, 0.0, 'mean')

  # End to end differentiable: every projector parameter gets a non-zero gradient.
  params = projector_lib.init_params(spec, seed=0)
  grads = jax.jit(jax.grad(lambda p: step_lib.batch_loss(
      backbone, frozen, spec.module.apply({'params': p}, source), batch, loss_cfg)[0]))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.abs(np.asarray(g)).max() > 0, path

  state = cross_model.init_state(params, tx)
  step = cross_model.jit_task_step(cross_model.make_task_step(spec, backbone, tx, loss_cfg),
                                   state, mesh, shardings)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch = {k: place(v, partitioning.data_sharding(mesh)) for k, v in batch.items()}
  losses, norms = [], []
  for _ in range(15):
    state, metrics = step(state, frozen, place(source, replicated), batch)
    losses.append(float(host(metrics['loss'])))
    norms.append(float(host(metrics['grad_norm'])))
  assert norms[0] > 0 and np.all(np.isfinite(losses))
  assert losses[-1] < fall * losses[0] and losses[-1] < min(losses[:5]), losses
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(host(a), b), frozen, model.params)


def test_distance_fits_a_held_in_pair_and_resumes_bit_identically(tmp_path):
  rng = np.random.default_rng(1)
  for name, shape in (('src', (4, 8)), ('tgt', (4, 12))):
    (tmp_path / name).mkdir()
    np.save(tmp_path / name / 'synth_sentiment_a.npy', rng.normal(size=shape).astype(np.float32))
  kwargs = dict(method='distance', train_tasks=['synth_sentiment_a'],
                source_prompt_dir=str(tmp_path / 'src'), target_prompt_dir=str(tmp_path / 'tgt'),
                hidden_dim=32, layer_norm=False, batch_size=4, eval_period=100,
                optimizer=cross_model.projector_optimizer('distance', learning_rate=1e-2))
  full = cross_model.train_projector(model_dir=str(tmp_path / 'full'), train_steps=300, **kwargs)
  history = [h['score'] for h in full['history']]
  assert [h['step'] for h in full['history']] == [0, 100, 200, 300]
  assert -history[-1] < 1e-4 * -history[0], history        # MSE to ~0 from ~1
  spec, params, config = projector_lib.load(full['projector_dir'])
  assert config['method'] == 'distance' and config['step'] == 300
  target = np.load(tmp_path / 'tgt' / 'synth_sentiment_a.npy')
  projected = projector_lib.project(spec, params, np.load(tmp_path / 'src' / 'synth_sentiment_a.npy'))
  assert np.mean((projected - target) ** 2) < 1e-4

  cut = str(tmp_path / 'cut')
  cross_model.train_projector(model_dir=cut, train_steps=200, **kwargs)
  resumed = cross_model.train_projector(model_dir=cut, train_steps=300, **kwargs)
  assert [h['step'] for h in resumed['history']] == [0, 100, 200, 300]
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(host(a), host(b)),
               resumed['final_params'], full['final_params'])


def _distance_kwargs(tmp_path, **extra):
  rng = np.random.default_rng(1)
  for name, shape in (('src', (4, 8)), ('tgt', (4, 12))):
    (tmp_path / name).mkdir(exist_ok=True)
    np.save(tmp_path / name / 'synth_sentiment_a.npy', rng.normal(size=shape).astype(np.float32))
  return dict(method='distance', train_tasks=['synth_sentiment_a'],
              source_prompt_dir=str(tmp_path / 'src'), target_prompt_dir=str(tmp_path / 'tgt'),
              hidden_dim=32, layer_norm=False, batch_size=4, eval_period=10, train_steps=30,
              optimizer=cross_model.projector_optimizer('distance', learning_rate=1e-2), **extra)


def test_sigterm_saves_the_current_step_and_the_resume_is_bit_identical(tmp_path, monkeypatch):
  kwargs = _distance_kwargs(tmp_path)
  full = cross_model.train_projector(model_dir=str(tmp_path / 'full'), **kwargs)
  real = cross_model._Trainer._distance_batch

  def batch(self, step):         # the batch of step 14 (steps count from 1)
    if step == 13:
      os.kill(os.getpid(), signal.SIGTERM)
    return real(self, step)
  monkeypatch.setattr(cross_model._Trainer, '_distance_batch', batch)
  cut = tmp_path / 'cut'
  with pytest.raises(preemption.Interrupted, match='interrupted by SIGTERM at step 14; saved '
                     'checkpoint_14; run the same command to resume') as raised:
    cross_model.train_projector(model_dir=str(cut), **kwargs)
  assert raised.value.exit_code == 143
  assert checkpointing.committed_steps(str(cut)) == [14]
  assert not (cut / run_lock.LOCK_FILE).exists()
  monkeypatch.undo()
  resumed = cross_model.train_projector(model_dir=str(cut), **kwargs)
  assert [h['step'] for h in resumed['history']] == [0, 10, 20, 30]
  assert [h['score'] for h in resumed['history']] == [h['score'] for h in full['history']]
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(host(a), host(b)),
               resumed['final_params'], full['final_params'])


def test_a_second_run_is_refused_and_a_failed_run_keeps_its_committed_work(tmp_path,
                                                                           monkeypatch):
  kwargs = _distance_kwargs(tmp_path)
  busy = tmp_path / 'busy'
  lock = run_lock.RunLock(str(busy))
  lock.acquire()
  try:
    with pytest.raises(run_lock.LockedError, match=f'{busy} is in use by pid {os.getpid()}'):
      cross_model.train_projector(model_dir=str(busy), **kwargs)
  finally:
    lock.release()
  assert os.listdir(busy) == []

  def full_disk(self, step, state, meta):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(checkpointing.Checkpointer, 'save', full_disk)
  failed = tmp_path / 'failed'
  with pytest.raises(OSError, match='No space left'):
    cross_model.train_projector(model_dir=str(failed), **kwargs)
  assert (failed / cross_model.BEST_PROJECTOR / 'projector.json').exists()   # step 0 and 10
  monkeypatch.undo()

  def broken(self, step):
    raise RuntimeError('broken batch')
  monkeypatch.setattr(cross_model._Trainer, '_distance_batch', broken)
  with pytest.raises(RuntimeError, match='broken batch'):   # nothing committed: nothing kept
    cross_model.train_projector(model_dir=str(tmp_path / 'none'), eval_at_start=False, **kwargs)
  assert not (tmp_path / 'none').exists()


@pytest.fixture(scope='module')
def source_prompts(tmp_path_factory, roberta_dir):
  """SOURCE: RoBERTa-tiny prompts of two sentiment tasks (files named by the RoBERTa task, found
  by task key for the T5 tasks); the TARGET T5's own prompt of the second. Briefly tuned."""
  root = tmp_path_factory.mktemp('xmodel')
  (root / 'src').mkdir()
  (root / 'own').mkdir()
  for key in ('synth_sentiment_a', 'synth_sentiment_b'):
    summary = runs.train_run(['models/roberta_tiny.gin', 'runs/prompt_train.gin'], SHORT[1:] + [
        f"MODEL_DIR = '{root}/pt_src_{key}'", f"MIXTURE_OR_TASK_NAME = 'roberta_{key}'",
        "TASK_FEATURE_LENGTHS = {'inputs': 24, 'targets': 1}", 'TRAIN_STEPS = 2',
        'EVAL_PERIOD = 2'])
    np.save(root / 'src' / f'roberta_{key}.npy', summary['best_prompt'])
    if key == 'synth_sentiment_a':
      continue
    summary = runs.train_run(['models/t5_synth_prompt.gin', 'runs/prompt_train.gin'], SHORT + [
        f"MODEL_DIR = '{root}/pt_own_{key}'", f"MIXTURE_OR_TASK_NAME = '{key}'",
        'TRAIN_STEPS = 2', 'EVAL_PERIOD = 2', f'ptj.t5_model.config_overrides = {TINY_GIN}'])
    np.save(root / 'own' / f'{key}.npy', summary['best_prompt'])
  return root


def _gin(*extra):
  return ['--gin_file=models/t5_synth_prompt.gin', f'--gin.ptj.t5_model.config_overrides={TINY_GIN}',
          '--noprogress'] + list(extra)


def test_cli_train_apply_zero_shot_and_tpt(source_prompts, tmp_path, capsys):
  root = source_prompts
  code = project_cli.main(['train'] + _gin(
      '--gin_file=runs/projector_task_tuning.gin', f"--gin.MODEL_DIR='{tmp_path}/proj'",
      "--gin.TRAIN_TASKS=['synth_sentiment_a']", f"--gin.SOURCE_PROMPT_DIR='{root}/src'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 2}", '--gin.HIDDEN_DIM=16',
      '--gin.TRAIN_STEPS=4', '--gin.EVAL_PERIOD=2', '--gin.BATCH_SIZE=8',
      '--gin.ptj.train_projector.max_eval_examples=16'))
  out, err = capsys.readouterr()
  assert code == 0, err
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary['method'] == 'task_tuning' and summary['final_step'] == 4
  record = json.loads((tmp_path / 'proj' / 'metrics.json').read_text())
  assert [h['step'] for h in record['history']] == [0, 2, 4]
  projector = summary['projector_dir']
  spec, _, config = projector_lib.load(projector)
  assert spec.source_shape == (4, 16) and spec.target_dim == 32      # RoBERTa-tiny -> tiny T5
  assert config['train_tasks'] == ['synth_sentiment_a']

  assert project_cli.main(['apply', f'--projector={projector}', f'--prompts={root}/src',
                           f'--out={tmp_path}/projected']) == 0
  assert sorted(os.listdir(tmp_path / 'projected')) == ['roberta_synth_sentiment_a.npy',
                                                        'roberta_synth_sentiment_b.npy']
  projected_b = np.load(tmp_path / 'projected' / 'roberta_synth_sentiment_b.npy')
  spec, params, _ = projector_lib.load(projector)
  np.testing.assert_allclose(projected_b, projector_lib.project(
      spec, params, np.load(root / 'src' / 'roberta_synth_sentiment_b.npy')), atol=1e-5)

  result_file = tmp_path / 'cross.json'
  code = project_cli.main(['zero-shot'] + _gin(
      '--gin_file=runs/prompt_train.gin', *[f'--gin.{b.replace(" = ", "=")}' for b in SHORT],
      '--gin.TRAIN_STEPS=2', '--gin.EVAL_PERIOD=2',
      f'--projector={projector}', f'--source_prompts={root}/src', f'--target_prompts={root}/own',
      '--targets=synth_sentiment_b', '--max_examples=16', '--batch_size=8',
      f'--out={result_file}', '--tpt'))
  out, err = capsys.readouterr()
  assert code == 0, err
  result = json.loads(result_file.read_text())
  column = 'task_tuning:synth_sentiment_a'
  assert result['kind'] == 'cross_model_zero_shot' and result['projectors'][0]['name'] == column
  # Proj(P_src of roberta_synth_sentiment_b) and the target's own prompt, on synth_sentiment_b
  assert result['matrix']['sources'] == [f'{column}/synth_sentiment_b', 'synth_sentiment_b']
  (projected, own), = result['matrix']['matrix']
  assert result['scores'] == [[projected]]
  if own:
    assert result['relative'][0][0] == pytest.approx(100 * projected / own)
  # TPT_MODEL starts from the same projected prompt: its step-0 score is the zero-shot score
  tpt = result['tpt']['synth_sentiment_b'][column]
  assert tpt['transfer_start'] == pytest.approx(projected)
  assert os.path.isdir(tpt['tpt_dir']) and os.path.isdir(tpt['pt_dir'])
  assert 'TPT_MODEL synth_sentiment_b' in out


def _one_line_error(code, err, *patterns):
  assert code != 0
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  for p in patterns:
    assert p in lines[0], lines[0]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
  spec = projector_lib.ProjectorSpec(4, 8, 12, hidden_dim=8)
  proj = projector_lib.save(tmp_path / 'proj', spec, projector_lib.init_params(spec))
  for name, shape, words in (('wide', (4, 9), '(2, 4, 9)'), ('long', (5, 8), '(2, 5, 8)')):
    (tmp_path / name).mkdir()
    for t in ('a', 'b'):
      np.save(tmp_path / name / f'{t}.npy', np.zeros(shape, np.float32))
    code = project_cli.main(['apply', f'--projector={proj}', f'--prompts={tmp_path / name}',
                             f'--out={tmp_path / "out"}'])
    _one_line_error(code, capsys.readouterr().err, 'ptj project apply: error:', words, '[4, 8]')
    assert not (tmp_path / 'out').exists()

  os.remove(os.path.join(proj, 'projector.json'))
  code = project_cli.main(['apply', f'--projector={proj}', f'--prompts={tmp_path / "wide"}',
                           f'--out={tmp_path / "out"}'])
  _one_line_error(code, capsys.readouterr().err, 'has no projector.json')
  assert not (tmp_path / 'out').exists()

  (tmp_path / 'src').mkdir()
  (tmp_path / 'tgt').mkdir()
  np.save(tmp_path / 'src' / 'synth_sentiment_a.npy', np.zeros((4, 8), np.float32))
  np.save(tmp_path / 'tgt' / 'synth_sentiment_a.npy', np.zeros((5, 8), np.float32))
  base = ['train', '--gin_file=runs/projector_distance.gin', f"--gin.MODEL_DIR='{tmp_path}/run'",
          "--gin.TRAIN_TASKS=['synth_sentiment_a']", f"--gin.SOURCE_PROMPT_DIR='{tmp_path}/src'",
          f"--gin.TARGET_PROMPT_DIR='{tmp_path}/tgt'", '--noprogress']
  code = project_cli.main(base + ["--gin.PROJECTOR_METHOD='mapping'"])
  _one_line_error(code, capsys.readouterr().err, "unknown projector training method 'mapping'")
  assert not (tmp_path / 'run').exists()
  code = project_cli.main(base)
  _one_line_error(code, capsys.readouterr().err, 'target prompts in', '(5, 8)', '4 rows')
  assert not (tmp_path / 'run').exists()
  assert project_cli.main(['bogus']) == 2


def test_report_adds_cross_model_heatmaps(tmp_path, capsys):
  from prompt_transfer_jax import cli as ptj
  from prompt_transfer_jax.analysis.spearman import save_transfer_matrix
  names = ['sst2', 'imdb', 'mnli', 'qnli']
  rng = np.random.default_rng(0)
  (tmp_path / 'prompts').mkdir()
  for n in names:
    np.save(tmp_path / 'prompts' / f'{n}.npy', rng.normal(size=(5, 8)).astype(np.float32))
  save_transfer_matrix(str(tmp_path / 'transfer.json'), names, rng.uniform(40, 90, (4, 4)))
  cross = {'kind': 'cross_model_zero_shot', 'targets': names,
           'projectors': [{'name': 'task_tuning:laptop'}, {'name': 'distance:mnli'}],
           'scores': rng.uniform(40, 90, (4, 2)).tolist(),
           'relative': [[80.0, None]] * 4}
  (tmp_path / 'cross.json').write_text(json.dumps(cross))
  args = ['analyze', 'report', '--prompts', str(tmp_path / 'prompts'), '--transfer',
          str(tmp_path / 'transfer.json'), '--bootstrap', '50', '--out', str(tmp_path / 'r')]
  assert ptj.main(args + ['--cross_model', str(tmp_path / 'cross.json')]) == 0
  for name in ('cross_model_raw', 'cross_model_relative'):
    assert (tmp_path / 'r' / f'{name}.png').read_bytes()[:4] == b'\x89PNG'
    assert f'![{name}]' in (tmp_path / 'r' / 'report.md').read_text()
  assert ptj.main(args + ['--out', str(tmp_path / 'r2')]) == 0
  assert not (tmp_path / 'r2' / 'cross_model_raw.png').exists()
  (tmp_path / 'bad.json').write_text('{"tasks": []}')
  assert ptj.main(args + ['--cross_model', str(tmp_path / 'bad.json')]) != 0
  assert 'not a `ptj project zero-shot` result' in capsys.readouterr().err
