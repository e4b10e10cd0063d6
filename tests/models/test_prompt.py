"""The soft-prompt initializers and the .npy file format."""
import numpy as np
import pytest

from prompt_transfer_jax.models import prompt as prompt_lib


def test_seeded_initializers_are_reproducible():
  a = prompt_lib.init_prompt(prompt_lib.normal(1.0), 10, 6, seed=3)
  b = prompt_lib.init_prompt(prompt_lib.normal(1.0), 10, 6, seed=3)
  c = prompt_lib.init_prompt(prompt_lib.normal(1.0), 10, 6, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert 0.5 < a.std() < 1.5


def test_sampled_vocab_draws_distinct_rows_of_the_population():
  table = np.arange(60 * 3, dtype=np.float32).reshape(60, 3)
  out = prompt_lib.init_prompt(prompt_lib.from_sampled_vocab(table, population_size=20), 8, 3)
  rows = [int(r[0]) // 3 for r in out]
  assert len(set(rows)) == 8 and max(rows) < 20
  np.testing.assert_array_equal(out, table[rows])


def test_class_label_rows_average_their_tokens():
  table = np.random.RandomState(0).randn(50, 4).astype(np.float32)
  out = prompt_lib.init_prompt(prompt_lib.from_class_labels(table, [[3, 4], [9]]), 5, 4)
  np.testing.assert_allclose(out[0], table[[3, 4]].mean(0), atol=1e-6)
  np.testing.assert_allclose(out[1], table[9], atol=1e-6)


def test_file_round_trip_and_shape_checks(tmp_path):
  value = np.random.RandomState(0).randn(4, 3).astype(np.float32)
  path = str(tmp_path / 'p.npy')
  prompt_lib.save_prompt(path, value)
  assert [p.name for p in tmp_path.iterdir()] == ['p.npy']
  np.testing.assert_array_equal(prompt_lib.load_prompt(path), value)
  np.testing.assert_array_equal(prompt_lib.load_prompt(path, (4, 3)), value)
  with pytest.raises(ValueError, match=r'p.npy: prompt has shape \(4, 3\), expected \(5, 3\)'):
    prompt_lib.load_prompt(path, (5, 3))
  with pytest.raises(FileNotFoundError, match='missing.npy'):
    prompt_lib.load_prompt(str(tmp_path / 'missing.npy'))
  np.save(tmp_path / 'obj.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match='obj.npy'):
    prompt_lib.load_prompt(str(tmp_path / 'obj.npy'))
