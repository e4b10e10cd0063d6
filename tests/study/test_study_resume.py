"""`ptj study`: gin configs build, and a study SIGKILLed in the middle (of a backbone's PT, then
of the cross-model stage) finishes, when started again, with the same tables as an uninterrupted
one, redoing only the unfinished stage."""
import os
import pathlib
import signal
import time

import gin
import pytest

from prompt_transfer_jax import tasks as tasks_lib
from prompt_transfer_jax.trainer import runs
from prompt_transfer_jax.study import cross_model
from prompt_transfer_jax.study import stages as study
from tests.study.conftest import CROSS_MODEL, CROSS_TARGETS, STAGES, T5_TASKS, finish, start

REPO = pathlib.Path(__file__).resolve().parents[2]
STUDIES = sorted(p.name for p in (REPO / 'gin_configs' / 'studies').glob('*.gin'))


def _tables(out):
  """Every table file of the study: each backbone's and the cross-model stage's."""
  out = pathlib.Path(out)
  return {str(p.relative_to(out)): p.read_text() for p in sorted(out.glob('**/tables/*'))}


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
  if name in ('t5_1_1_xxl_lm.gin', 'roberta_large_to_t5_xxl.gin'):   # the pod mesh reaches runs
    xxl = backbones['t5_1_1_xxl_lm']
    assert xxl.model_parallel == 8
    assert 'ptj.train.model_parallel = 8' in study._run_bindings(config, xxl, 't5_sst2_v1', '/d')
    assert study._parallel_bindings(xxl, 'ptj.train_projector') == [
        'ptj.train_projector.model_parallel = 8']
  if name == 'synth.gin':
    assert [(x.source, x.target, x.train_tasks) for x in config.cross_model] == [
        ('roberta', 't5', ('synth_sentiment_a',))]


def test_per_task_prompt_seeds():
  shared = study.Backbone('b', ('m.gin',), tuple(T5_TASKS))
  per_task = study.Backbone('b', ('m.gin',), tuple(T5_TASKS), prompt_seeds='per_task')
  assert {study.prompt_seed(shared, t) for t in T5_TASKS} == {0}
  seeds = [study.prompt_seed(per_task, t) for t in T5_TASKS]
  assert len(set(seeds)) == 3 and seeds == [study.prompt_seed(per_task, t) for t in T5_TASKS]


def test_model_parallel_reaches_every_run_only_when_set():
  one = study.Backbone('b', ('m.gin',), tuple(T5_TASKS))
  assert study._parallel_bindings(one) == []
  assert not any('model_parallel' in b for b in study._run_bindings(
      study.Study('/o', (one,)), one, T5_TASKS[0], '/d'))
  for bad in (0, 2.5, True):
    with pytest.raises(ValueError, match='model_parallel must be a positive integer'):
      study.Backbone('b', ('m.gin',), tuple(T5_TASKS), model_parallel=bad)


def _kill_when(proc, path, what):
  deadline = time.monotonic() + 600
  while not path.exists():
    assert proc.poll() is None and time.monotonic() < deadline, f'the study ended before {what}'
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()


def test_killed_study_resumes_to_the_same_tables(reference, tmp_path):
  ref, log = reference
  assert 'skipped' not in log and f'[{STAGES}/{STAGES}] cross-model {CROSS_MODEL}: table' in log
  assert 'ETA' in log and len(_tables(ref)) == 2 * (4 * 2 + 1) + (2 * 2 + 1)  # csv, md, README

  out = tmp_path / 'killed'
  prompts = out / 't5' / 'prompts'
  _kill_when(start(out), prompts / f'{T5_TASKS[1]}.npy', 'two PT stages')   # the third under way
  assert not (out / 't5' / 'transfer.json').exists()
  done = {t: (prompts / f'{t}.npy').stat().st_mtime_ns for t in T5_TASKS[:2]}

  # Started again, then killed in the cross-model stage: one TPT_MODEL done, the next under way.
  xm = out / 'cross_model' / CROSS_MODEL
  _kill_when(start(out), xm / 'tpt' / f'{CROSS_TARGETS[0]}.json', 'the first TPT_MODEL')
  assert not (xm / 'result.json').exists()
  for task in T5_TASKS[:2]:
    assert (prompts / f'{task}.npy').stat().st_mtime_ns == done[task]   # not redone
  marker = (xm / 'projector.json').stat().st_mtime_ns

  log = finish(out)
  for stage in ('projector', 'zero-shot', f'TPT_MODEL {CROSS_TARGETS[0]}'):
    assert f'cross-model {CROSS_MODEL}: {stage}: done before, skipped' in log
  assert f'cross-model {CROSS_MODEL}: TPT_MODEL {CROSS_TARGETS[1]}: best' in log
  assert log.count('done before, skipped') == STAGES - 2   # the second TPT_MODEL and the table
  assert (xm / 'projector.json').stat().st_mtime_ns == marker
  assert _tables(out) == _tables(ref)
  assert (out / 't5' / 'tables' / 'spearman.csv').read_text().startswith('indicator,')

  log = finish(out)     # a finished study: every stage is skipped
  assert log.count('done before, skipped') == STAGES


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
