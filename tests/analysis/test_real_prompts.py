"""The embedding indicators on the paper's 13 released RoBERTa-Large prompts (+ its zero "random")."""
import numpy as np
import pytest
from scipy.spatial import distance

from prompt_transfer_jax.analysis import indicators as ind
from prompt_transfer_jax.files import read_prompt_dir


@pytest.fixture
def real_prompts(shared_fixtures):
  directory = shared_fixtures / 'paper' / 'roberta_large_prompts'
  if not directory.is_dir():
    pytest.skip(f'optional fixture {directory} is absent')
  names, prompts = read_prompt_dir(str(directory))
  assert len(names) == 14 and prompts.shape == (14, 100, 1024)
  return names, prompts.astype(np.float64)


def test_indicators_match_scipy_distances_on_real_prompts(real_prompts):
  """Gram-form distances stay exact at real magnitudes (fp64, rtol 1e-9), also for the ~zero prompt."""
  names, p = real_prompts
  flat = p.reshape(len(names), -1)
  np.testing.assert_allclose(ind.e_concat(p), 1 / (1 + distance.cdist(flat, flat)), rtol=1e-9)
  random = names.index('random')
  assert np.abs(flat[random]).max() < 1e-30  # the stored "random prompt" is (nearly) all zeros
  nonzero = [i for i in range(len(names)) if i != random]
  cos = 1 - distance.cdist(flat[nonzero], flat[nonzero], 'cosine')
  np.testing.assert_allclose(ind.c_concat(p)[np.ix_(nonzero, nonzero)], cos, rtol=1e-9, atol=1e-12)
  # Its norm is below EPS: cosines with it are clamped to ~0 instead of dividing by ~0.
  assert np.abs(ind.c_concat(p)[random]).max() < 1e-20 and np.abs(ind.c_average(p)[random]).max() < 1e-20
  pairs = [(0, 1), (2, 9), (5, 5), (random, 3)]
  e_avg, c_avg = ind.e_average(p), ind.c_average(p)
  for i, j in pairs:
    d = distance.cdist(p[i], p[j])
    assert e_avg[i, j] == pytest.approx(1 / (1 + d.mean()), rel=1e-9)
    if random not in (i, j):
      assert c_avg[i, j] == pytest.approx((1 - distance.cdist(p[i], p[j], 'cosine')).mean(), rel=1e-9)
