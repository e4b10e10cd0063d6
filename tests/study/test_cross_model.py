"""The study's cross-model stage end to end on two tiny backbones (studies/synth.gin: a RoBERTa's
prompts projected into a T5), and the study's analysis warnings. Tiny models do not learn here:
the tests assert structure, resume / skip, and that the records agree with the functions they
come from."""
import json
import os
import re
import shutil

import numpy as np
import pytest

from prompt_transfer_jax.analysis.spearman import spearman_warnings
from prompt_transfer_jax.study import cross_model
from prompt_transfer_jax.study import stages as study
from prompt_transfer_jax.transfer import speedup
from tests.study.conftest import BINDINGS, CROSS_MODEL as NAME, CROSS_TARGETS as TARGETS
from tests.study.conftest import ROBERTA_TASKS, STAGES
from tests.study.test_study import synth_study


@pytest.fixture
def copy(reference, tmp_path):
  """A copy of the finished reference study and its config (in-process runs change it)."""
  out = tmp_path / 'study'
  shutil.copytree(reference[0], out)
  return out, synth_study(out, BINDINGS)


def _result(root, key):
  return json.loads((root / key / ('result.json' if key.startswith('cross_model') else
                                   'study.json')).read_text())


def _mtimes(directory):
  return {p: os.stat(os.path.join(d, p)).st_mtime_ns for d, _, files in os.walk(directory)
          for p in files}


def test_cross_model_artifacts(reference):
  root, log = reference
  out = root / 'cross_model' / NAME
  lines = [re.match(rf'\[(\d+)/(\d+)\] cross-model {NAME}: (.+?)(: | \()', line)
           for line in log.splitlines()]
  lines = [m for m in lines if m]
  assert [m.group(3) for m in lines] == ['projector', 'zero-shot'] + [
      f'TPT_MODEL {t}' for t in TARGETS] + ['table']
  assert [int(m.group(1)) for m in lines] == list(range(STAGES - 4, STAGES + 1))
  assert {int(m.group(2)) for m in lines} == {STAGES}
  projector = json.loads((out / 'projector.json').read_text())
  assert projector['method'] == 'task_tuning' and projector['train_tasks'] == ['synth_sentiment_a']
  assert [h['step'] for h in projector['history']] == [0, 1, 2] and projector['final_step'] == 2
  assert (out / 'projector' / 'best_projector' / 'projector.json').is_file()
  assert sorted(os.listdir(out / 'projected')) == sorted(f'{t}.npy' for t in TARGETS)
  assert np.load(out / 'projected' / 'synth_sentiment_a.npy').shape == (4, 32)   # T5 width
  record = _result(root, f'cross_model/{NAME}')
  assert record['targets'] == TARGETS and record['chance'] == {t: 50.0 for t in TARGETS}
  tables = cross_model.tables(record)
  header, rows = tables['cross_model_zero_shot']
  assert [r[0] for r in rows] == TARGETS and rows[0][2] == 'yes' and rows[1][2] == ''
  assert rows[0][-3:] == ['n/a', 'n/a', 'n/a']            # no paper values for the synthetic study
  for name, (header, _) in tables.items():
    assert (out / 'tables' / f'{name}.csv').read_text().startswith(','.join(header) + '\n')
  assert not [p for p in _mtimes(root) if '.tmp-' in p]     # every write was atomic
  summary = (root / 'summary.md').read_text()
  assert f'# cross-model {NAME}' in summary and cross_model.summary(record) in summary
  assert 'above chance (by more than 1 point) on' in summary and f'== cross-model {NAME} ==' in log


def test_relative_is_raw_over_own(reference):
  root, _ = reference
  zs = json.loads((root / 'cross_model' / NAME / 'cross_model.json').read_text())
  record = json.loads((root / 'cross_model' / NAME / 'result.json').read_text())
  matrix = zs['matrix']
  column = f'{zs["projectors"][0]["name"]}/'
  own = json.loads((root / 't5' / 'transfer.json').read_text())
  assert matrix['sources'] == [column + t for t in TARGETS]     # own prompts not scored again
  for i, t in enumerate(TARGETS):
    raw = matrix['matrix'][i][matrix['sources'].index(column + t)]
    j = own['tasks'].index(t)
    assert record['zero_shot'][t] == raw and record['own'][t] == own['matrix'][j][j]
    assert record['relative'][t] == pytest.approx(100.0 * raw / own['matrix'][j][j])
    # The random prompt of the same seed, on the same examples, scores as in the T5's matrix.
    assert record['random'][t] == matrix['baseline']['scores'][i] == own['baseline']['scores'][j]
  # The projected prompt files are what was scored: Proj(P_src_t) of the RoBERTa prompt of t's key.
  from prompt_transfer_jax.transfer import projector as projector_lib
  spec, params, _ = projector_lib.load(str(root / 'cross_model' / NAME / 'projector' /
                                           'best_projector'))
  source = np.load(root / 'roberta' / 'prompts' / 'roberta_synth_sentiment_a.npy')
  np.testing.assert_allclose(np.load(root / 'cross_model' / NAME / 'projected' /
                                     'synth_sentiment_a.npy'),
                             projector_lib.project(spec, params, source), atol=1e-6)


def test_tpt_model_speedups_come_from_the_targets_pt_runs(reference):
  root, _ = reference
  record = _result(root, f'cross_model/{NAME}')
  for t in TARGETS:
    entry = record['tpt'][t]
    pt_dir = root / 't5' / 'runs' / t
    tpt_dir = root / 'cross_model' / NAME / 'tpt' / t
    assert entry['pt_dir'] == str(pt_dir) and entry['tpt_dir'] == str(tpt_dir)
    want = speedup.compare_runs(speedup.load_history(str(pt_dir)),
                                speedup.load_history(str(tpt_dir)))
    assert {k: v for k, v in entry.items() if k in want} == json.loads(json.dumps(want))
    history = speedup.load_history(str(tpt_dir))
    # TPT_MODEL starts from the projected prompt: its step-0 score is that prompt's.
    assert history[0]['step'] == 0 and entry['transfer_start'] == history[0]['score']
  assert not (root / 'cross_model' / NAME / 'pt').exists()    # vanilla PT was not run again


def test_finished_study_skips_everything_and_a_lost_marker_resumes(copy):
  root, config = copy
  before = _mtimes(root / 'cross_model')
  log = []
  results = study.run(config, log=log.append)
  assert len(log) == STAGES and all('done before, skipped' in line for line in log)
  assert results[f'cross_model/{NAME}'] == _result(root, f'cross_model/{NAME}')
  assert _mtimes(root / 'cross_model') == before
  # The projector's run directory resumes: without its marker the stage reruns, trains nothing.
  marker = root / 'cross_model' / NAME / 'projector.json'
  old = json.loads(marker.read_text())
  marker.unlink()
  log = []
  study.run(config, log=log.append)
  assert [line for line in log if 'done before' not in line] == [
      next(line for line in log if 'projector:' in line)]
  new = json.loads(marker.read_text())
  assert new == dict(old, projector_dir=str(root / 'cross_model' / NAME / 'projector' /
                                            'best_projector'))


def test_only_process_zero_writes(copy, monkeypatch):
  root, config = copy
  out = root / 'cross_model' / NAME
  (out / 'cross_model.json').unlink()
  (out / 'result.json').unlink()
  shutil.rmtree(out / 'projected')
  monkeypatch.setattr(study, '_is_writer', lambda: False)
  with pytest.raises(FileNotFoundError, match='cross-model zero-shot not found'):
    study.run(config, log=lambda _: None)
  assert not (out / 'cross_model.json').exists() and not (out / 'projected').exists()
  monkeypatch.undo()
  study.run(config, log=lambda _: None)         # process 0 writes them
  assert (out / 'result.json').exists() and sorted(os.listdir(out / 'projected')) == sorted(
      f'{t}.npy' for t in TARGETS)


def test_study_warnings_flag_untrained_prompts_and_targets_at_chance(reference):
  root, log = reference
  result = json.loads((root / 'roberta' / 'indicators.json').read_text())
  warnings = result['warnings']
  assert result['chance_scores'] == {t: 50.0 for t in ROBERTA_TASKS}
  assert f'identical prompts: {", ".join(ROBERTA_TASKS)}' in ' '.join(warnings)
  assert any(w.startswith('prompts that never left their initialization: '
                          + ', '.join(ROBERTA_TASKS)) for w in warnings)
  flagged = 0
  for backbone in ('t5', 'roberta'):    # a target whose own prompt is within 1 point of chance
    r = json.loads((root / backbone / 'indicators.json').read_text())
    transfer = np.asarray(r['transfer'])
    at_chance = spearman_warnings(r['tasks'], {}, transfer, r['chance_scores'])
    assert len(at_chance) == sum(transfer[i, i] <= 51.0 for i in range(3))
    assert set(at_chance) <= set(r['warnings']) and len(set(r['warnings'])) == len(r['warnings'])
    flagged += len(at_chance)
  assert flagged > 0                    # tiny models after 4 steps: some targets are at chance
  report = (root / 'roberta' / 'report' / 'report.md').read_text()
  assert all(w in report for w in warnings)
  record = _result(root, 'roberta')
  assert record['warnings'] == warnings and record['chance_scores'] == result['chance_scores']
  text = study.summary(record)
  assert 'warnings:' in text and all(f'  - {w}' in text for w in warnings)
  assert text in log and text in (root / 'summary.md').read_text()
  # The T5 prompts were trained (learning rate 1.0, per-task starts): none is flagged untrained
  # unless its best evaluation was the start.
  t5 = json.loads((root / 't5' / 'indicators.json').read_text())
  assert not any(w.startswith('identical prompts') for w in t5['warnings'])


def test_cross_model_table_puts_the_slides_beside_the_reproduction(tmp_path):
  from prompt_transfer_jax.study.paper_values import CROSS_MODEL
  names = ['t5_imdb_v1', 't5_sst2_v1', 't5_laptop_v1', 't5_mnli_v1']
  keys = ['imdb', 'sst2', 'laptop', 'mnli']
  base = speedup.compare_runs([{'step': 0, 'score': 50.0}, {'step': 10, 'score': 90.0}],
                              [{'step': 0, 'score': 85.0}, {'step': 10, 'score': 92.0}])
  record = {'kind': 'cross_model', 'name': 'laptop_task_tuning', 'source': 'roberta_large',
            'target': 't5_1_1_xxl_lm', 'method': 'task_tuning', 'train_tasks': ['t5_laptop_v1'],
            'paper': 'roberta_large_to_t5_xxl', 'targets': names, 'keys': dict(zip(names, keys)),
            'types': dict(zip(names, ['SA', 'SA', 'SA', 'NLI'])),
            'chance': dict(zip(names, [50.0, 50.0, 25.0, 100 / 3])),
            'own': dict(zip(names, [95.0, 96.0, 80.0, 90.0])),
            'random': dict(zip(names, [50.0, 49.0, 20.0, 32.0])),
            'zero_shot': dict(zip(names, [80.0, 88.0, 78.0, 33.0])),
            'relative': dict(zip(names, [80 / 0.95, 88 / 0.96, 78 / 0.8, 33 / 0.9])),
            'projector': {'metric': 'accuracy', 'best_score': 78.0, 'best_step': 300,
                          'final_step': 3000},
            'tpt': {'t5_sst2_v1': base}}
  tables = cross_model.tables(record)
  header, rows = tables['cross_model_zero_shot']
  assert header[-3:] == ['paper random', 'paper own PT', 'paper projected']
  assert rows[0][-3:] == ['49.7', 'n/a', '82.9']      # the slides' IMDB PT cell is missing
  assert rows[1] == ['t5_sst2_v1', 'SA', '', '50.0', '49.0', '96.0', '88.0', '91.7', 'yes',
                     '49.0', '97.4', '89.3']
  assert rows[2][2] == 'yes' and rows[3][8] == 'no'   # trained on laptop; MNLI at chance
  header, rows = tables['tpt_model']
  assert rows == [['t5_sst2_v1', '90.0', '85.0', '92.0', '97.4', _x(base['convergence']), '1.7',
                   _x(base['comparable_result']), '19.0']]
  record['method'], record['train_tasks'] = 'distance', ['t5_mnli_v1']
  rows = cross_model.tables(record)['cross_model_zero_shot'][1]
  assert [r[-1] for r in rows] == ['49.6', '50.1', '19.8', '90.5']   # "Prompt Mapping", MNLI
  assert all(len(v) == 13 for t in CROSS_MODEL.values() for v in
             [t['pt'], t['random'], *t['zero_shot'].values(),
              *[w for d in t['tpt_model'].values() for w in d.values()]])
  text = cross_model.summary(record)
  assert 'above chance (by more than 1 point) on 3 of 4 targets' in text
  assert 't5_mnli_v1 (trained on)' in text.split('at chance or below: ')[1]


def _x(speedup_record):
  return f'{speedup_record["steps_speedup"]:.1f}'
