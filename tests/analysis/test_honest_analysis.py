"""Warnings for numbers that look fine but mean nothing; errors for non-finite inputs."""
import json

import numpy as np
import pytest

from prompt_transfer_jax.analysis import indicators as ind
from prompt_transfer_jax.analysis import report, spearman
from prompt_transfer_jax.analysis.transferability import analyze_transferability

TASKS = ['sst2', 'mnli', 'snli', 'qqp']


def _prompts():
  rng = np.random.default_rng(0)
  return rng.normal(size=(4, 3, 5)).astype(np.float32)


def test_identical_and_untrained_prompts_are_flagged():
  prompts = _prompts()
  prompts[2] = prompts[1]                     # two NLI prompts that never left one shared init
  init = prompts[1].copy()
  warnings = ind.prompt_warnings(TASKS, prompts, init)
  assert warnings == [
      'identical prompts: mnli, snli (their indicators and transfer are not comparable)',
      'prompts that never left their initialization: mnli, snli (not trained; check the '
      'learning rate and steps)']
  assert ind.prompt_warnings(TASKS, _prompts()) == []
  assert ind.prompt_warnings(TASKS, prompts, {'sst2': prompts[0]})[1].endswith(
      'initialization: sst2 (not trained; check the learning rate and steps)')


def test_dropped_and_chance_targets_are_flagged():
  transfer = np.array([[90, 60, 55, 50], [40, 33, 33, 33], [50, 50, 50, 50], [70, 60, 65, 80.]])
  sim = ind.c_concat(_prompts())
  results = {'C_concat': spearman.spearman(transfer, sim, bootstrap=0)}
  warnings = spearman.spearman_warnings(TASKS, results, transfer,
                                        chance={'mnli': 100 / 3, 'qqp': 50.0})
  assert warnings == [
      'C_concat: 1 of 4 targets dropped from the average (snli: constant transfer scores)',
      'mnli: its own prompt scores 33.0, at chance (33.3); transfer to it is not meaningful']
  assert results['C_concat'].n_targets == 3


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_non_finite_inputs_are_errors(bad):
  prompts = _prompts()
  prompts[3, 0, 0] = bad
  with pytest.raises(ValueError, match='prompts 3 .*NaN/Inf'):
    ind.c_concat(prompts)
  acts = np.ones((4, 2, 6))
  acts[1, 0, 0] = bad
  with pytest.raises(ValueError, match='activations of prompts 1 .*NaN/Inf'):
    ind.overlap_of_activated_neurons(acts)
  transfer = np.eye(4)
  transfer[0, 2] = bad
  with pytest.raises(ValueError, match='transfer matrix has non-finite entries .*target 0, source 2'):
    spearman.spearman(transfer, np.eye(4), bootstrap=0)


def test_warnings_reach_the_result_and_the_report(tmp_path):
  prompts = _prompts()
  prompts[2] = prompts[1]
  transfer = np.array([[90, 60, 55, 50], [40, 70, 33, 33], [50, 50, 50, 50], [70, 60, 65, 80.]])
  result = analyze_transferability(TASKS, transfer, prompts, bootstrap=0)
  assert result['warnings'][0].startswith('identical prompts: mnli, snli')
  assert any('snli: constant transfer scores' in w for w in result['warnings'])
  report.render_report(result, str(tmp_path))
  md = (tmp_path / 'report.md').read_text()
  assert '## Warnings' in md and '- identical prompts: mnli, snli' in md
  assert '<h2>Warnings</h2>' in (tmp_path / 'report.html').read_text()


def test_indicators_command_prints_the_warnings_on_stderr(tmp_path, capsys):
  from prompt_transfer_jax import cli
  prompts = _prompts()
  prompts[2] = prompts[1]
  (tmp_path / 'prompts').mkdir()
  for task, prompt in zip(TASKS, prompts):
    np.save(tmp_path / 'prompts' / f'{task}.npy', prompt)
  transfer = [[90, 60, 55, 50], [40, 70, 33, 33], [50, 52, 58, 51], [70, 60, 65, 80.]]
  (tmp_path / 'transfer.json').write_text(json.dumps({'tasks': TASKS, 'matrix': transfer}))
  assert cli.main(['analyze', 'indicators', f'--prompts={tmp_path / "prompts"}',
                   f'--transfer={tmp_path / "transfer.json"}', f'--out={tmp_path / "out"}',
                   '--bootstrap=0']) == 0
  out, err = capsys.readouterr()
  assert 'warning: identical prompts: mnli, snli' in err and 'warning:' not in out
