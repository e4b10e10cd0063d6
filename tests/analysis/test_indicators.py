"""Each indicator against a direct per-pair numpy implementation of its formula."""
import numpy as np
import pytest

from prompt_transfer_jax.analysis import indicators as ind


def _cos(a, b):
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def direct(name, p, q):
  """The paper's formulas for one pair of prompts [l, d], written out with loops."""
  length = p.shape[0]
  if name == 'E_concat':
    return 1.0 / (1.0 + np.sqrt(np.sum((p.ravel() - q.ravel()) ** 2)))
  if name == 'E_average':
    total = sum(np.linalg.norm(p[i] - q[j]) for i in range(length) for j in range(length))
    return 1.0 / (1.0 + total / length ** 2)
  if name == 'C_concat':
    return _cos(p.ravel(), q.ravel())
  if name == 'C_average':
    return sum(_cos(p[i], q[j]) for i in range(length) for j in range(length)) / length ** 2
  raise ValueError(name)


def direct_on(a, b):
  sa = {i for i, v in enumerate(a.ravel()) if v > 0}
  sb = {i for i, v in enumerate(b.ravel()) if v > 0}
  return 0.0 if not sa or not sb else len(sa & sb) / np.sqrt(len(sa) * len(sb))


@pytest.fixture
def prompts():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(5, 6, 4)).astype(np.float32)
  p[1, 2] = 0.0      # a zero token row (cosine with it is 0)
  p[3] = p[0] * 2.5  # a scaled copy: cosine 1, Euclidean not
  return p


@pytest.mark.parametrize('name', ind.EMBEDDING_INDICATORS)
def test_embedding_indicator_matches_formula(prompts, name):
  got = ind.embedding_similarity(name, prompts)
  want = np.array([[direct(name, a.astype(np.float64), b.astype(np.float64)) for b in prompts]
                   for a in prompts])
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('name', ind.EMBEDDING_INDICATORS)
def test_cross_form_matches_square_form(prompts, name):
  got = ind.embedding_similarity(name, prompts[:2], prompts[2:])
  np.testing.assert_allclose(got, ind.embedding_similarity(name, prompts)[:2, 2:], rtol=1e-9, atol=1e-12)


def test_all_pairs_average_differs_from_matched_positions(prompts):
  """The all-pairs mean is what the code does; matched positions would give another number."""
  p, q = prompts[0].astype(np.float64), prompts[2].astype(np.float64)
  matched = np.mean([_cos(p[i], q[i]) for i in range(p.shape[0])])
  assert abs(ind.c_average(prompts)[0, 2] - matched) > 1e-3


def test_e_average_blocks_agree(prompts, monkeypatch):
  full = ind.e_average(prompts)
  monkeypatch.setattr(ind, '_BLOCK_BYTES', 8 * 6 * 6 * 5 * 2)  # two prompts per block
  np.testing.assert_allclose(ind.e_average(prompts), full, rtol=1e-12)


def test_on_matches_formula_and_exact_zero_is_not_activated():
  rng = np.random.default_rng(1)
  acts = rng.normal(size=(6, 3, 8)).astype(np.float32)
  acts[acts.__abs__() < 0.4] = 0.0           # many exact zeros
  acts[4] = np.where(acts[4] > 0, 0.0, acts[4])  # prompt 4: nothing activated, zeros and negatives
  got = ind.overlap_of_activated_neurons(acts)
  want = np.array([[direct_on(a, b) for b in acts] for a in acts])
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert np.all(got[4] == 0) and np.all(got[:, 4] == 0)
  # Counting 0 as activated (>= 0) would change the answer on this data.
  ge = (acts >= 0).reshape(6, -1).astype(float)
  wrong = ge @ ge.T / np.sqrt(np.outer(ge.sum(1), ge.sum(1)))
  assert np.abs(wrong - got).max() > 0.05


def test_on_over_layer_subset_and_cross_form():
  rng = np.random.default_rng(2)
  acts = rng.normal(size=(4, 6, 5))
  got = ind.overlap_of_activated_neurons(acts, layers=[3, 4, 5])
  want = np.array([[direct_on(a[3:], b[3:]) for b in acts] for a in acts])
  np.testing.assert_allclose(got, want, rtol=1e-12)
  cross = ind.overlap_of_activated_neurons(acts[:1], others=acts[1:])
  np.testing.assert_allclose(cross, ind.overlap_of_activated_neurons(acts)[:1, 1:], rtol=1e-12)


def test_similarity_matrices_and_errors(prompts):
  acts = np.random.default_rng(3).normal(size=(5, 2, 3))
  out = ind.similarity_matrices(prompts, acts)
  assert list(out) == list(ind.INDICATORS)
  assert 'ON' not in ind.similarity_matrices(prompts)
  with pytest.raises(ValueError, match='unknown embedding indicator'):
    ind.embedding_similarity('E_max', prompts)
  with pytest.raises(ValueError, match=r'\[N, length, dim\]'):
    ind.c_average(prompts[0])
  with pytest.raises(ValueError, match='prompt shapes differ'):
    ind.c_concat(prompts, prompts[:, :3])
