"""files.py: all-or-nothing writes (no partial target, no stray temporary), one-line read errors;
prompt files are finite real non-empty 2-D floats."""
import os

import numpy as np
import pytest

from prompt_transfer_jax import files


class Boom(Exception):
  pass


def test_interrupted_atomic_write_leaves_nothing(tmp_path):
  target = tmp_path / 'out.json'
  with pytest.raises(Boom):
    with files.atomic_write(target) as f:
      f.write('{"half": ')
      raise Boom
  assert os.listdir(tmp_path) == []


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path):
  target = tmp_path / 'prompt.npy'
  files.save_prompt(target, np.ones((2, 3)))
  with pytest.raises(Boom):
    with files.atomic_write(target, 'wb') as f:
      f.write(b'\x93NUMPY partial')
      raise Boom
  assert os.listdir(tmp_path) == ['prompt.npy']
  np.testing.assert_array_equal(files.read_prompt(target), np.ones((2, 3), np.float32))


def test_interrupted_atomic_dir_leaves_nothing(tmp_path):
  target = tmp_path / 'adapter'
  with pytest.raises(Boom):
    with files.atomic_dir(target) as tmp:
      (tmp_path / 'adapter_tmp_marker').write_text('')  # outside: must survive
      with open(os.path.join(tmp, 'adapter_config.json'), 'w') as f:
        f.write('{}')
      raise Boom
  assert os.listdir(tmp_path) == ['adapter_tmp_marker']


def test_completed_writes_replace_the_target(tmp_path):
  files.write_json(tmp_path / 'a.json', {'x': 1})
  files.write_json(tmp_path / 'a.json', {'x': 2})
  assert files.read_json(tmp_path / 'a.json') == {'x': 2}
  with files.atomic_dir(tmp_path / 'd') as tmp:
    with open(os.path.join(tmp, 'f'), 'w') as f:
      f.write('ok')
  assert (tmp_path / 'd' / 'f').read_text() == 'ok'
  assert sorted(os.listdir(tmp_path)) == ['a.json', 'd']


def test_read_errors_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='run record not found: .*nope.json'):
    files.read_json(tmp_path / 'nope.json', 'run record')
  (tmp_path / 'bad.json').write_text('{')
  with pytest.raises(ValueError, match=r'bad.json: not a valid JSON file'):
    files.read_json(tmp_path / 'bad.json')


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
