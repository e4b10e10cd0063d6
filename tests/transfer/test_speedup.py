"""TPT speedups on hand-made evaluation histories, and `ptj transfer speedup`."""
import json
import math

import pytest

from prompt_transfer_jax.transfer import cli, speedup


def history(points, seconds_per_step=0.5, overhead=0.25):
  """[(step, score)] -> trainer-style entries (train_s excludes the evaluation overhead)."""
  return [{'step': s, 'score': v, 'train_s': s * seconds_per_step,
           'elapsed_s': s * seconds_per_step + overhead * i} for i, (s, v) in enumerate(points)]


BASE = history([(0, 50.0), (100, 60.0), (200, 80.0), (300, 85.0), (400, 84.0)])
TPT = history([(0, 70.0), (100, 86.0), (200, 88.0), (300, 87.0), (400, 88.0)], 0.4)


def test_convergence_each_run_to_its_own_best():
  s = speedup.convergence_speedup(BASE, TPT)
  assert (s.baseline_step, s.transfer_step) == (300, 200)          # 85 at 300, 88 first at 200
  assert s.steps == pytest.approx(1.5)
  assert s.time == pytest.approx(300 * 0.5 / (200 * 0.4))
  # Within 2 points of its own best: baseline 84 >= 83 first at 300, transfer 86 >= 86 at 100.
  s = speedup.convergence_speedup(BASE, TPT, tol=2.0)
  assert (s.baseline_step, s.transfer_step, s.steps) == (300, 100, 3.0)


def test_comparable_result_reaches_the_baseline_best():
  s = speedup.comparable_result_speedup(BASE, TPT)
  assert s.baseline_threshold == 85.0 and (s.baseline_step, s.transfer_step) == (300, 100)
  assert s.steps == pytest.approx(3.0)
  s = speedup.comparable_result_speedup(BASE, TPT, fraction=0.9)   # 76.5: baseline at 200
  assert (s.baseline_step, s.transfer_step, s.steps) == (200, 100, 2.0)
  s = speedup.comparable_result_speedup(BASE, TPT, time_key='elapsed_s', fraction=0.9)
  assert s.time == pytest.approx((200 * 0.5 + 0.5) / (100 * 0.4 + 0.25))


def test_worse_transfer_run_has_no_comparable_result_but_a_convergence_speedup():
  """Like RoBERTa-Large justice in the paper: TPT below PT -> comparable N/A, convergence defined."""
  worse = history([(0, 55.0), (100, 70.0), (200, 78.0), (300, 77.0)])
  assert speedup.comparable_result_speedup(BASE, worse).steps is None
  assert speedup.comparable_result_speedup(BASE, worse).time is None
  assert speedup.convergence_speedup(BASE, worse).steps == pytest.approx(300 / 200)
  result = speedup.compare_runs(BASE, worse)
  assert result['comparable_result']['steps_speedup'] is None
  assert result['comparable_result']['transfer_step'] is None
  assert (result['baseline_best'], result['transfer_best'], result['transfer_start']) == (85.0, 78.0, 55.0)
  assert result['same_evaluation_steps'] is False and speedup.compare_runs(BASE, TPT)['same_evaluation_steps']
  assert result['best_at_last_evaluation'] == {'baseline': False, 'transfer': False}
  rising = history([(0, 50.0), (100, 60.0), (200, 90.0)])          # best first at the end
  assert speedup.compare_runs(BASE, rising)['best_at_last_evaluation'] == {'baseline': False,
                                                                           'transfer': True}


def test_zero_step_transfer_is_infinite_and_serializes():
  solved = history([(0, 90.0), (100, 90.0)])
  s = speedup.comparable_result_speedup(BASE, solved)
  assert s.transfer_step == 0 and math.isinf(s.steps)
  assert s.to_json()['steps_speedup'] == 'inf'
  json.dumps(speedup.compare_runs(BASE, solved), allow_nan=False)
  both = history([(0, 85.0)])
  assert speedup.convergence_speedup(both, solved).steps == 1.0      # neither needed training
  assert speedup.ratio(None, 3) is None and speedup.ratio(6, 3) == 2.0


def test_histories_are_sorted_and_checked():
  shuffled = [BASE[3], BASE[0], BASE[4], BASE[2], BASE[1]]
  assert speedup.convergence_speedup(shuffled, TPT).steps == pytest.approx(1.5)
  with pytest.raises(ValueError, match='lacks "step" or "score"'):
    speedup.convergence_speedup([{'step': 0}], TPT)
  with pytest.raises(ValueError, match='duplicate evaluation steps'):
    speedup.convergence_speedup(BASE + BASE[:1], TPT)
  with pytest.raises(ValueError, match='has score nan'):
    speedup.convergence_speedup([{'step': 0, 'score': float('nan')}], TPT)
  with pytest.raises(ValueError, match='no evaluations'):
    speedup.comparable_result_speedup([], TPT)
  with pytest.raises(ValueError, match='fraction must be in'):
    speedup.comparable_result_speedup(BASE, TPT, fraction=1.5)
  with pytest.raises(ValueError, match='tol must be'):
    speedup.convergence_speedup(BASE, TPT, tol=-1)


def _run_dir(path, hist):
  path.mkdir()
  (path / 'metrics.json').write_text(json.dumps({'task': 't', 'metric': 'accuracy',
                                                 'history': hist}))
  return path


def test_cli_reads_run_directories(tmp_path, capsys):
  base, tpt = _run_dir(tmp_path / 'base', BASE), _run_dir(tmp_path / 'tpt', TPT)
  out = tmp_path / 'speedup.json'
  assert cli.main(['speedup', '--baseline', str(base), '--transfer', str(tpt), '--out', str(out)]) == 0
  printed = capsys.readouterr().out
  assert 'convergence speedup: 1.5 (steps 300 vs 200)' in printed
  assert 'comparable-result speedup: 3.0 (steps 300 vs 100)' in printed
  data = json.loads(out.read_text())
  assert data['convergence']['steps_speedup'] == 1.5 and data['comparable_result']['steps_speedup'] == 3.0
  assert cli.main(['speedup', '--baseline', str(tmp_path / 'none'), '--transfer', str(tpt)]) == 2
  assert 'run record not found' in capsys.readouterr().err
  (tmp_path / 'bad.json').write_text('{"history": 3}')
  assert cli.main(['speedup', '--baseline', str(tmp_path / 'bad.json'), '--transfer', str(tpt)]) == 2
  assert 'expected a run record with a "history" list' in capsys.readouterr().err
