"""Spearman per target (self pair included), averaged over targets, against scipy.stats.spearmanr."""
import json
import warnings

import numpy as np
import pytest
from scipy import stats

from prompt_transfer_jax.analysis import spearman as sp

# Rows = targets, columns = sources; ties on purpose (row 1 in transfer, rows 0/3 in similarity).
TRANSFER = np.array([[90.0, 60.0, 55.0, 70.0, 50.0],
                     [52.0, 88.0, 52.0, 61.0, 49.0],
                     [58.0, 57.0, 91.0, 55.0, 66.0],
                     [71.0, 62.0, 50.0, 85.0, 50.5],
                     [49.0, 51.0, 64.0, 48.0, 80.0]])
SIMILARITY = np.array([[1.0, 0.2, 0.2, 0.7, 0.1],
                       [0.2, 1.0, 0.3, 0.6, 0.4],
                       [0.2, 0.3, 1.0, 0.1, 0.8],
                       [0.7, 0.6, 0.1, 1.0, 0.1],
                       [0.1, 0.4, 0.8, 0.1, 1.0]])


def scipy_reference(transfer, similarity):
  rhos = [stats.spearmanr(similarity[t], transfer[t]).statistic for t in range(len(transfer))]
  return np.array(rhos)


def test_matches_scipy_per_target_and_mean():
  got = sp.spearman(TRANSFER, SIMILARITY, bootstrap=0)
  want = scipy_reference(TRANSFER, SIMILARITY)
  np.testing.assert_allclose(got.per_target, want, rtol=1e-12)
  assert got.value == pytest.approx(100 * want.mean(), rel=1e-12)
  # Orientation matters: transposing the transfer matrix (targets <-> sources) changes it.
  assert sp.spearman(TRANSFER.T, SIMILARITY, bootstrap=0).value != pytest.approx(got.value)


def test_self_pair_is_included():
  without_self = np.mean([stats.spearmanr(np.delete(SIMILARITY[t], t), np.delete(TRANSFER[t], t)).statistic
                          for t in range(5)])
  got = sp.spearman(TRANSFER, SIMILARITY, bootstrap=0).value
  assert got != pytest.approx(100 * without_self)


def test_constant_row_is_nan_and_skipped_like_scipy():
  transfer = TRANSFER.copy()
  transfer[2] = 50.0
  got = sp.spearman(transfer, SIMILARITY, bootstrap=0)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    want = scipy_reference(transfer, SIMILARITY)
  assert np.isnan(got.per_target[2]) and np.isnan(want[2])
  assert got.n_targets == 4
  assert got.value == pytest.approx(100 * np.nanmean(want), rel=1e-12)
  assert got.to_json(list('abcde'))['per_target']['c'] is None


def test_bootstrap_interval():
  got = sp.spearman(TRANSFER, SIMILARITY, bootstrap=500, seed=1)
  lo, hi = got.ci95
  assert lo <= got.value <= hi and hi - lo > 1
  assert sp.spearman(TRANSFER, SIMILARITY, bootstrap=500, seed=1).ci95 == got.ci95
  assert sp.bootstrap_ci(np.array([0.3, 0.3, 0.3]), 100) == pytest.approx((30.0, 30.0))


def test_shape_errors():
  with pytest.raises(ValueError, match='square'):
    sp.spearman(TRANSFER[:3], SIMILARITY[:3])
  with pytest.raises(ValueError, match=r'similarity matrix shape \(4, 4\) does not match'):
    sp.spearman(TRANSFER, SIMILARITY[:4, :4])


def test_relative_transfer():
  rel = sp.relative_transfer(TRANSFER)
  np.testing.assert_allclose(np.diag(rel), 100.0)
  assert rel[0, 1] == pytest.approx(100 * 60 / 90)


def test_load_and_save_transfer_matrix(tmp_path):
  path = str(tmp_path / 'm.json')
  sp.save_transfer_matrix(path, list('abcde'), TRANSFER)
  tasks, matrix = sp.load_transfer_matrix(path)
  assert tasks == list('abcde')
  np.testing.assert_array_equal(matrix, TRANSFER)


@pytest.mark.parametrize('data, message', [
    ({'tasks': ['a', 'b']}, '"tasks" and "matrix"'),
    ({'tasks': ['a', 'a'], 'matrix': [[1, 2], [3, 4]]}, 'duplicate'),
    ({'tasks': ['a', 'b'], 'matrix': [[1, 2, 3], [3, 4, 5]]}, r'shape \(2, 3\), expected \(2, 2\)'),
    ({'tasks': ['a', 'b'], 'matrix': [[1, 2], [3]]}, 'rectangular'),
    ({'tasks': ['a', 'b'], 'matrix': [[1, None], [3, 4]]}, 'non-finite'),
])
def test_load_errors(tmp_path, data, message):
  path = tmp_path / 'bad.json'
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match=message):
    sp.load_transfer_matrix(str(path))
