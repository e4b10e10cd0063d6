"""Layer groups of three, activated-neuron distribution and ON Spearman per group."""
import numpy as np
import pytest
from scipy import stats

from prompt_transfer_jax.analysis import layer_groups as lg


def test_groups_of_three():
  groups = lg.layer_groups(range(24))
  assert [g.name for g in groups] == [f'layers {s}-{s + 2}' for s in range(1, 24, 3)]
  assert groups[-1].positions == (21, 22, 23)
  assert [g.name for g in lg.layer_groups(range(2))] == ['layers 1-2']
  assert [(g.name, g.positions) for g in lg.layer_groups([4, 5, 6, 7])] == [
      ('layers 5-7', (0, 1, 2)), ('layer 8', (3,))]
  with pytest.raises(ValueError, match='positive'):
    lg.layer_groups(range(3), 0)


def test_distribution_and_fraction():
  acts = np.zeros((2, 4, 5))
  acts[0, 0, :3] = 1.0    # 3 activated in layer 1
  acts[0, 3, :1] = 2.0    # 1 activated in layer 4
  acts[1, 1, 0] = -1.0    # nothing activated
  groups = lg.layer_groups(range(4))
  np.testing.assert_array_equal(lg.activated_counts(acts, groups), [[3, 1], [0, 0]])
  np.testing.assert_allclose(lg.activated_distribution(acts, groups), [[0.75, 0.25], [0, 0]])
  np.testing.assert_allclose(lg.activated_fraction(acts, groups), [[3 / 15, 1 / 5], [0, 0]])


def test_group_on_and_spearman_match_direct():
  rng = np.random.default_rng(0)
  acts = rng.normal(size=(5, 7, 6))
  transfer = rng.uniform(40, 90, size=(5, 5))
  out = lg.analyze_layer_groups(acts, transfer=transfer, bootstrap=0)
  assert [g.name for g in out.groups] == ['layers 1-3', 'layers 4-6', 'layer 7']
  for g in out.groups:
    b = (acts[:, list(g.positions)] > 0).reshape(5, -1).astype(float)
    on = b @ b.T / np.sqrt(np.outer(b.sum(1), b.sum(1)))
    np.testing.assert_allclose(out.on[g.name], on, rtol=1e-12)
    rho = np.mean([stats.spearmanr(on[t], transfer[t]).statistic for t in range(5)])
    assert out.spearman[g.name].value == pytest.approx(100 * rho, rel=1e-12)
    off = on[~np.eye(5, dtype=bool)].mean()
    assert lg.mean_pairwise_on(out.on[g.name]) == pytest.approx(off)
  data = out.to_json(list('abcde'))
  assert set(data) == {'groups', 'activated_distribution', 'activated_fraction',
                       'mean_pairwise_on', 'spearman'}
