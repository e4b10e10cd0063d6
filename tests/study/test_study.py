"""The synthetic study through the gin `ptj study` path (studies/synth.gin, the T5 backbone alone)
end to end: three synthetic tasks, 90 steps each at batch 16 (the demo backbone: a tiny T5 does
not learn, and every score would be chance)."""
import json
import warnings

import gin
import numpy as np
import pytest
from scipy import stats

from prompt_transfer_jax.analysis.activation_store import load_activations
from prompt_transfer_jax.analysis.spearman import load_transfer_matrix
from prompt_transfer_jax.study import stages as study
from prompt_transfer_jax.trainer import runs

TASKS = ['synth_sentiment_a', 'synth_sentiment_b', 'synth_paraphrase_a']


def synth_study(out, bindings=()):
  """The study of studies/synth.gin with `bindings` after it (gin cleared afterwards)."""
  try:
    runs.parse_gin(['studies/synth.gin'], [f"STUDY_DIR = '{out}'"] + list(bindings))
    return study.study()
  finally:
    gin.clear_config()


@pytest.fixture(scope='module')
def out(tmp_path_factory):
  root = tmp_path_factory.mktemp('study')
  config = synth_study(root, [
      'ptj.study.backbones = [@t5/ptj.study_backbone()]', 'ptj.study.cross_model = []',
      f't5/ptj.study_backbone.tasks = {TASKS}', 'STEPS = 90', 'EVAL_PERIOD = 45',
      'ptj.study.bootstrap = 50'])
  assert config.bindings == ('TRAIN_STEPS = 90', 'EVAL_PERIOD = 45') and not config.tpt
  study.run(config, log=lambda _: None)
  return root / 't5'


def test_diagonal_is_each_prompts_own_score(out):
  """The zero-shot matrix (batched) reproduces the trainer's own evaluation of each best prompt."""
  names, matrix = load_transfer_matrix(str(out / 'transfer.json'))
  assert names == TASKS
  for i, task in enumerate(TASKS):
    record = json.loads((out / 'runs' / task / 'metrics.json').read_text())
    assert [h['step'] for h in record['history']] == [0, 45, 90]
    assert matrix[i, i] == pytest.approx(record['best_score'])
    np.testing.assert_array_equal(np.load(out / 'prompts' / f'{task}.npy'),
                                  np.load(out / 'runs' / task / 'best_prompt.npy'))


def test_indicators_spearman_and_hit_rates(out):
  result = json.loads((out / 'indicators.json').read_text())
  summary = json.loads((out / 'study.json').read_text())
  transfer = np.asarray(result['transfer'])
  acts = load_activations(str(out / 'activations.npz'))
  assert acts.names == TASKS and acts.activations.shape == (3, 2, 512)   # decoder layers, d_ff
  assert len(np.unique(transfer)) > 2 and summary['spearman']['ON'] is not None   # prompts differ
  for name, sim in result['similarity'].items():
    with warnings.catch_warnings():   # a constant row has no correlation: NaN, dropped below
      warnings.simplefilter('ignore', stats.ConstantInputWarning)
      rhos = [stats.spearmanr(transfer[t], np.asarray(sim)[t]).statistic for t in range(3)]
    rhos = [r for r in rhos if np.isfinite(r)]
    want = 100 * np.mean(rhos) if rhos else None
    assert summary['spearman'][name] == (pytest.approx(want, abs=1e-3) if rhos else None)
    hits = result['hit_rates'][name]
    assert summary['hit_rates'][name] == {'top1': hits['hit_rate']['1'], 'top3': hits['hit_rate']['3']}
    assert hits['hit_rate']['3'] == 1.0                # 2 candidate sources per target
  assert (out / 'report' / 'report.md').read_text().count('top-1') == 1


def test_type_structure(out):
  summary = json.loads((out / 'study.json').read_text())
  m = np.asarray(summary['zero_shot'])
  ts = summary['type_structure']
  assert ts['within_type_mean'] == pytest.approx((m[0, 1] + m[1, 0]) / 2)
  assert ts['cross_type_mean'] == pytest.approx((m[0, 2] + m[1, 2] + m[2, 0] + m[2, 1]) / 4)
  assert ts['per_target']['synth_paraphrase_a']['within_type_mean'] is None
  assert summary['types'] == {'synth_sentiment_a': 'SA', 'synth_sentiment_b': 'SA',
                              'synth_paraphrase_a': 'PI'}
  assert len(summary['random_baseline']) == 3
  assert 'ON' in study.summary(summary) and 'same type' in study.summary(summary)


def test_type_structure_by_hand():
  m = np.array([[90., 80., 50., 52.], [70., 95., 55., 40.], [50., 60., 99., 88.], [45., 51., 77., 93.]])
  ts = study.type_structure(['a', 'b', 'c', 'd'], ['X', 'X', 'Y', 'Y'], m)
  assert ts['within_type_mean'] == pytest.approx((80 + 70 + 88 + 77) / 4)
  assert ts['cross_type_mean'] == pytest.approx((50 + 52 + 55 + 40 + 50 + 60 + 45 + 51) / 8)
  assert ts['targets_where_within_beats_cross'] == '4/4'
  assert ts['per_target']['b']['best_other_source'] == 'a'
  assert ts['by_target_type'] == {'X': {'within_type_mean': 75.0, 'cross_type_mean': 49.25},
                                  'Y': {'within_type_mean': 82.5, 'cross_type_mean': 51.5}}
  m[1, 2] = 75.0
  ts = study.type_structure(['a', 'b', 'c', 'd'], ['X', 'X', 'Y', 'Y'], m)
  assert ts['per_target']['b']['best_other_source'] == 'c'
  assert ts['targets_whose_best_other_source_is_same_type'] == '3/4'


def test_summary_with_tpt_speedups():
  from prompt_transfer_jax.transfer import speedup
  base = [{'step': 0, 'score': 50.0}, {'step': 50, 'score': 80.0}, {'step': 100, 'score': 90.0}]
  solved = [{'step': 0, 'score': 92.0}, {'step': 50, 'score': 95.0}, {'step': 100, 'score': 95.0}]
  worse = [{'step': 0, 'score': 50.0}, {'step': 50, 'score': 85.0}, {'step': 100, 'score': 70.0}]
  m = [[90.0, 92.0, 50.0], [60.0, 95.0, 50.0], [50.0, 50.0, 85.0]]
  names, types = ['a', 'b', 'c'], ['X', 'X', 'Y']
  record = {'tasks': names, 'types': dict(zip(names, types)), 'zero_shot': m,
            'random_baseline': [50.0, 50.0, 50.0], 'spearman': {'ON': 50.0, 'E_average': None},
            'hit_rates': {'ON': {'top1': 1.0, 'top3': 1.0}, 'E_average': {'top1': 0.0, 'top3': 1.0}},
            'chance': {'top1': 0.5, 'top3': 1.0}, 'same_type_reference': {'1': 1.0, '3': 1.0},
            'type_structure': study.type_structure(names, types, m),
            'tpt': {'a': dict(speedup.compare_runs(base, solved), source='b'),
                    'c': dict(speedup.compare_runs(base, worse), source='a')}}
  text = study.summary(record)
  assert 'within type 76.0, across types 50.0' in text
  assert 'a from b best  95.0 (PT  90.0, start  92.0); convergence x2.0, comparable-result x inf' in text
  assert 'c from a best  85.0 (PT  90.0, start  50.0); convergence x2.0, comparable-result N/A' in text
  assert '(baseline still improving at the end)' in text
  assert 'by target type: X 76.0 within / 50.0 across, Y n/a within / 50.0 across' in text
  assert 'E_average             n/a' in text
