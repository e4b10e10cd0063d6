"""Prompt files: finite real non-empty 2-D floats; every failure one line naming the file."""
import numpy as np
import pytest

from prompt_transfer_jax import files


def test_good_prompts_including_all_zero_rows(tmp_path):
  path = tmp_path / 'p.npy'
  np.save(path, np.zeros((3, 4), np.float64))            # the `zeros` baseline is legitimate
  value = files.read_prompt(str(path), (3, 4))
  assert value.dtype == np.float32 and value.shape == (3, 4)
  np.save(path, np.ones((3, 4), np.float16))
  assert files.read_prompt(str(path)).dtype == np.float32


@pytest.mark.parametrize('content, match', [
    (b'', 'not a readable .npy prompt'), (b'garbage', 'not a readable .npy prompt')])
def test_unreadable_files(tmp_path, content, match):
  path = tmp_path / 'p.npy'
  path.write_bytes(content)
  with pytest.raises(ValueError, match=f'{path}: {match}') as e:
    files.read_prompt(str(path))
  assert '\n' not in str(e.value)


def test_directories_shapes_and_pickles(tmp_path):
  with pytest.raises(ValueError, match='is a directory'):
    files.read_prompt(str(tmp_path))
  np.save(tmp_path / 'p.npy', np.ones((3, 4), np.float32))
  with pytest.raises(ValueError, match=r'shape \(3, 4\), expected \(3, 5\)'):
    files.read_prompt(str(tmp_path / 'p.npy'), (3, 5))
  np.save(tmp_path / 'o.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match='not a readable .npy prompt'):
    files.read_prompt(str(tmp_path / 'o.npy'))
