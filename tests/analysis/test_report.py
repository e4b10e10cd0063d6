"""`ptj analyze indicators` and `ptj analyze report` end to end on a small synthetic run."""
import json
import os

import numpy as np
import pytest
from matplotlib import image as mpimg
from scipy import stats

from prompt_transfer_jax import cli as ptj
from prompt_transfer_jax.analysis import indicators as ind
from prompt_transfer_jax.analysis.activation_store import save_activations
from prompt_transfer_jax.analysis.spearman import save_transfer_matrix

TASKS = ['sst2', 'imdb', 'mnli', 'qnli', 'qqp', 'mrpc']
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@pytest.fixture
def run(tmp_path):
  """Prompts, a transfer matrix (targets x sources) and activations of 7 layers."""
  rng = np.random.default_rng(0)
  prompt_dir = tmp_path / 'prompts'
  prompt_dir.mkdir()
  prompts = rng.normal(size=(6, 10, 8)).astype(np.float32)
  for name, p in zip(TASKS, prompts):
    np.save(prompt_dir / f'{name}.npy', p)
  np.save(prompt_dir / 'unused.npy', prompts[0])  # extra prompt files are ignored
  transfer = rng.uniform(40, 70, size=(6, 6))
  np.fill_diagonal(transfer, 90)
  save_transfer_matrix(str(tmp_path / 'transfer.json'), TASKS, transfer)
  acts = rng.normal(size=(6, 7, 12)).astype(np.float32)
  save_activations(str(tmp_path / 'acts.npz'), TASKS[::-1], acts[::-1])  # other order on purpose
  return tmp_path, prompts, transfer, acts


def _indicators(tmp_path, extra=()):
  return ptj.main(['analyze', 'indicators', '--prompts', str(tmp_path / 'prompts'),
                   '--transfer', str(tmp_path / 'transfer.json'), '--out', str(tmp_path / 'out'),
                   '--bootstrap', '200', *extra])


def test_indicators_json(run, capsys):
  tmp_path, prompts, transfer, acts = run
  assert _indicators(tmp_path, ['--activations', str(tmp_path / 'acts.npz')]) == 0
  result = json.loads((tmp_path / 'out' / 'indicators.json').read_text())
  assert set(result['spearman']) == set(ind.INDICATORS)
  sims = {'C_average': ind.c_average(prompts), 'ON': ind.overlap_of_activated_neurons(acts)}
  for name, sim in sims.items():
    want = 100 * np.mean([stats.spearmanr(sim[t], transfer[t]).statistic for t in range(6)])
    assert result['spearman'][name] == pytest.approx(want, abs=1e-3)
  assert [g['name'] for g in result['layer_groups']['groups']] == ['layers 1-3', 'layers 4-6', 'layer 7']
  assert set(result['hit_rates']['ON']['hit_rate']) == {'1', '3'}
  out = capsys.readouterr().out
  assert 'C_average' in out and '44.7' in out and 'top-3' in out


def test_report_writes_all_figures(run):
  tmp_path, *_ = run
  assert _indicators(tmp_path, ['--activations', str(tmp_path / 'acts.npz')]) == 0
  report = tmp_path / 'report'
  assert ptj.main(['analyze', 'report', '--indicators', str(tmp_path / 'out' / 'indicators.json'),
                   '--out', str(report)]) == 0
  expected = ['transfer_raw', 'transfer_relative', 'spearman', 'activated_neurons_by_layer_group',
              'on_spearman_by_layer_group'] + [f'similarity_{n}' for n in ind.INDICATORS]
  md = (report / 'report.md').read_text()
  html = (report / 'report.html').read_text()
  for name in expected:
    path = report / f'{name}.png'
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert f'({name}.png)' in md and f'src="{name}.png"' in html
  assert '| ON |' in md and '49.7' in md and '36.9' in md
  assert not [f for f in os.listdir(report) if '.tmp' in f]


def test_report_without_activations_computes_directly(run):
  tmp_path, *_ = run
  report = tmp_path / 'direct'
  assert ptj.main(['analyze', 'report', '--prompts', str(tmp_path / 'prompts'), '--transfer',
                   str(tmp_path / 'transfer.json'), '--bootstrap', '0', '--out', str(report)]) == 0
  pngs = sorted(f for f in os.listdir(report) if f.endswith('.png'))
  assert len(pngs) == 7 and 'similarity_ON.png' not in pngs
  assert (report / 'indicators.json').exists()


def test_similarity_command(run, capsys):
  tmp_path, prompts, _, acts = run
  assert ptj.main(['analyze', 'similarity', '--prompts', str(tmp_path / 'prompts'), '--names',
                   ','.join(TASKS), '--activations', str(tmp_path / 'acts.npz'),
                   '--out', str(tmp_path / 'sim')]) == 0
  data = json.loads((tmp_path / 'sim' / 'similarity.json').read_text())
  assert data['tasks'] == TASKS
  np.testing.assert_allclose(data['similarity']['E_average'], ind.e_average(prompts), rtol=1e-12)
  np.testing.assert_allclose(data['similarity']['ON'], ind.overlap_of_activated_neurons(acts), rtol=1e-12)
  lines = capsys.readouterr().out.splitlines()
  c_avg = ind.c_average(prompts)
  np.fill_diagonal(c_avg, -np.inf)
  assert lines[2].split()[0] == 'sst2' and lines[2].split()[4] == TASKS[int(np.argmax(c_avg[0]))]


def test_bad_inputs_give_one_line_errors(run, capsys):
  tmp_path, *_ = run
  os.remove(tmp_path / 'prompts' / 'qqp.npy')
  assert _indicators(tmp_path) == 2
  err = capsys.readouterr().err.strip()
  assert err.count('\n') == 0 and 'no prompt file for qqp' in err
  np.save(tmp_path / 'prompts' / 'qqp.npy', np.zeros((10, 9), np.float32))
  assert _indicators(tmp_path) == 2
  assert 'prompt qqp has shape (10, 9)' in capsys.readouterr().err
  save_activations(str(tmp_path / 'few.npz'), TASKS[:2], np.zeros((2, 3, 4)))
  np.save(tmp_path / 'prompts' / 'qqp.npy', np.zeros((10, 8), np.float32))
  assert _indicators(tmp_path, ['--activations', str(tmp_path / 'few.npz')]) == 2
  assert 'activations have no entry for mnli' in capsys.readouterr().err
