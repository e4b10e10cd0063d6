"""`ptj study`: gin configs build, and a study SIGKILLed in the middle finishes, when started again,
with the same tables as an uninterrupted one, redoing only the unfinished stage."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import pytest

from prompt_transfer_jax import tasks as tasks_lib
from prompt_transfer_jax.trainer import runs
from prompt_transfer_jax.study import cross_model
from prompt_transfer_jax.study import stages as study

REPO = pathlib.Path(__file__).resolve().parents[2]
STUDIES = sorted(p.name for p in (REPO / 'gin_configs' / 'studies').glob('*.gin'))
TASKS = ['synth_sentiment_a', 'synth_sentiment_b', 'synth_nli_a']
TINY = ("\"ptj.t5_model.config_overrides = {'vocab_size': %ptj.SYNTH_VOCAB_SIZE, 'emb_dim': 32, "
        "'num_heads': 2, 'head_dim': 16, 'mlp_dim': 64, 'dropout_rate': 0.0}\"")


def _flags(out):
  return ['study', '--gin_file=studies/synth.gin', f"--gin.STUDY_DIR='{out}'",
          '--gin.ptj.study.backbones=[@t5/ptj.study_backbone()]',
          f'--gin.t5/ptj.study_backbone.tasks={TASKS}',
          f'--gin.t5/ptj.study_backbone.bindings=[{TINY}, "PROMPT_LENGTH = 4"]',
          '--gin.STEPS=10', '--gin.EVAL_PERIOD=5', '--gin.ptj.study.bootstrap=20',
          '--gin.ptj.study.max_examples=40', '--gin.ptj.study.tpt=True']


def _start(out):
  # One compilation cache for the three studies of a test: same shapes, nothing compiled twice.
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_backend_optimization_level=0', PYTHONPATH=str(REPO),
             JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(out).parent / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  return subprocess.Popen([sys.executable, '-m', 'prompt_transfer_jax.cli'] + _flags(out),
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)


def _finish(out):
  proc = _start(out)
  log, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, log[-2000:]
  return log


def _tables(out):
  directory = pathlib.Path(out) / 't5' / 'tables'
  return {p.name: p.read_text() for p in sorted(directory.glob('*'))}


CHECKPOINTS = {'synth.gin': [],      # random backbones take no checkpoint
               'roberta_large_to_t5_xxl.gin': ['ROBERTA_CHECKPOINT', 'T5_CHECKPOINT']}


@pytest.mark.parametrize('name', STUDIES)
def test_study_configs_build(name):
  runs.register_configurables()
  try:
    bindings = ["STUDY_DIR = '/unused'"] + [
        f"{macro} = '/ckpt'" for macro in CHECKPOINTS.get(name, ['INITIAL_CHECKPOINT_PATH'])]
    runs.parse_gin([f'studies/{name}'], bindings)
    config = study.study()
  finally:
    gin.clear_config()
  registered = set(tasks_lib.task_names())
  for backbone in config.backbones:
    assert set(backbone.tasks) <= registered, set(backbone.tasks) - registered
    for gin_file in backbone.gin_files:
      assert (REPO / 'gin_configs' / gin_file).is_file()
  if name != 'synth.gin':
    assert all(b.prompt_seeds == 'shared' for b in config.backbones)
    assert all(b.checkpoint == '/ckpt' and all(t.endswith('_v1') for t in b.tasks)
               for b in config.backbones)
  backbones = {b.name: b for b in config.backbones}
  for x in config.cross_model:        # built and checked against the backbones by study()
    targets = cross_model.target_tasks(backbones[x.source], backbones[x.target])
    assert set(x.train_tasks) <= set(targets)
  if name == 'roberta_large_to_t5_xxl.gin':
    assert [b.name for b in config.backbones] == ['roberta_large', 't5_1_1_xxl_lm']
    assert {(x.method, x.train_tasks, x.tpt) for x in config.cross_model} == {
        ('task_tuning', ('t5_laptop_v1',), True), ('task_tuning', ('t5_mnli_v1',), True),
        ('distance', ('t5_laptop_v1',), False), ('distance', ('t5_mnli_v1',), False)}
    assert len(cross_model.target_tasks(*config.backbones)) == 13   # the classification tasks
  if name == 'synth.gin':
    assert [(x.source, x.target, x.train_tasks) for x in config.cross_model] == [
        ('roberta', 't5', ('synth_sentiment_a',))]


def test_per_task_prompt_seeds():
  shared = study.Backbone('b', ('m.gin',), tuple(TASKS))
  per_task = study.Backbone('b', ('m.gin',), tuple(TASKS), prompt_seeds='per_task')
  assert {study.prompt_seed(shared, t) for t in TASKS} == {0}
  seeds = [study.prompt_seed(per_task, t) for t in TASKS]
  assert len(set(seeds)) == 3 and seeds == [study.prompt_seed(per_task, t) for t in TASKS]


def test_killed_study_resumes_to_the_same_tables(tmp_path):
  reference = tmp_path / 'reference'
  log = _finish(reference)
  assert 'skipped' not in log and '[10/10] t5: tables' in log and 'ETA' in log

  out = tmp_path / 'killed'
  prompts = out / 't5' / 'prompts'
  proc = _start(out)
  deadline = time.monotonic() + 600
  while not (prompts / f'{TASKS[1]}.npy').exists():   # two PT stages done, the third under way
    assert proc.poll() is None and time.monotonic() < deadline, 'the study ended too early'
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (out / 't5' / 'transfer.json').exists()
  done = {t: (prompts / f'{t}.npy').stat().st_mtime_ns for t in TASKS[:2]}

  log = _finish(out)
  for task in TASKS[:2]:
    assert f't5: PT {task}: done before, skipped' in log
    assert (prompts / f'{task}.npy').stat().st_mtime_ns == done[task]   # not redone
  assert f't5: PT {TASKS[2]}: best' in log
  assert _tables(out) == _tables(reference)
  assert (out / 't5' / 'tables' / 'spearman.csv').read_text().startswith('indicator,')

  log = _finish(out)     # a finished study: every stage is skipped
  assert log.count('done before, skipped') == 10


def test_tables_put_the_paper_beside_the_reproduction(tmp_path):
  names = ['roberta_sst2_v1', 'roberta_mnli_v1', 'roberta_qqp_v1']
  record = {'backbone': 'rl', 'tasks': names, 'paper': 'roberta_large',
            'keys': dict(zip(names, ['sst2', 'mnli', 'qqp'])),
            'types': dict(zip(names, ['SA', 'NLI', 'PI'])),
            'pt_scores': dict(zip(names, [95.0, 80.0, 60.0])),
            'relative': [[100.0, 50.0, None], [60.0, 100.0, 70.0], [80.0, 90.0, 100.0]],
            'random_baseline': [47.5, 40.0, 30.0],
            'spearman': {'ON': 12.5}, 'hit_rates': {'ON': {'top1': 0.5, 'top3': 1.0}}}
  tables = study.tables(record)
  header, rows = tables['pt_scores']
  assert rows[0] == ['roberta_sst2_v1', 'SA', '95.0', '96.1'] and rows[2][-1] == 'n/a'
  assert tables['zero_shot_relative'][1][0][-2:] == ['n/a', '50.0']       # 47.5 / 95 -> 50 %
  assert tables['spearman'][1] == [['ON', '12.5', '49.7', '50', '100']]
  study.write_tables(record, str(tmp_path))
  assert (tmp_path / 'spearman.csv').read_text() == (
      'indicator,Spearman x100,paper,top-1 hit,top-3 hit\nON,12.5,49.7,50,100\n')
  assert '| ON | 12.5 | 49.7 | 50 | 100 |' in (tmp_path / 'README.md').read_text()


def test_missing_study_dir_is_a_usage_error(capsys):
  from prompt_transfer_jax import cli
  assert cli.main(['study', '--gin_file=studies/synth.gin']) == 2
  assert 'STUDY_DIR' in capsys.readouterr().err
