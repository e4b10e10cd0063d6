"""`ptj export` never deletes user data; prompts are checked on the way in and out."""
import json
import os

import numpy as np
import pytest

from prompt_transfer_jax.trainer import cli, export


def _tree(path):
  return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


@pytest.fixture
def run_dir(tmp_path):
  run = tmp_path / 'run'
  (run / 'checkpoint_5').mkdir(parents=True)
  (run / 'checkpoint_5' / 'state').write_bytes(b'x' * 10)
  (run / 'metrics.json').write_text('{}')
  np.save(run / 'best_prompt.npy', np.ones((3, 4), np.float32))
  return run


@pytest.mark.parametrize('fmt', ['peft', 'numpy'])
def test_export_into_a_run_or_cwd_is_refused_and_deletes_nothing(run_dir, fmt, capsys, monkeypatch):
  before = _tree(run_dir)
  assert cli.export_main([f'--prompt={run_dir}', f'--format={fmt}', f'--out={run_dir}']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'not a previous `ptj export`' in err and 'checkpoint_5' in err
  monkeypatch.chdir(run_dir)
  assert cli.export_main([f'--prompt={run_dir}', f'--format={fmt}', '--out=.']) == 2
  assert _tree(run_dir) == before
  assert not [f for f in os.listdir(run_dir.parent) if 'tmp' in f]


def test_export_to_new_empty_and_previous_export(run_dir, tmp_path, capsys):
  out = tmp_path / 'peft'
  assert cli.export_main([f'--prompt={run_dir}', f'--out={out}']) == 0
  assert sorted(os.listdir(out)) == sorted([export.MARKER_FILE, *export.EXPORT_FILES['peft']])
  np.testing.assert_array_equal(export.read_peft(str(out)), np.ones((3, 4)))
  # A previous export is replaced; switching the format leaves no stale file.
  np.save(run_dir / 'best_prompt.npy', np.full((3, 4), 2, np.float32))
  assert cli.export_main([f'--prompt={run_dir}', '--format=numpy', f'--out={out}']) == 0
  assert sorted(os.listdir(out)) == sorted([export.MARKER_FILE, *export.EXPORT_FILES['numpy']])
  np.testing.assert_array_equal(np.load(out / export.prompt_lib.T5X_PROMPT_NAME), 2)
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert cli.export_main([f'--prompt={run_dir}', f'--out={empty}']) == 0
  assert os.path.exists(empty / export.PEFT_WEIGHTS_FILE)
  # A previous export plus a user's file is no longer ours.
  (out / 'notes.txt').write_text('mine')
  assert cli.export_main([f'--prompt={run_dir}', f'--out={out}']) == 2
  assert (out / 'notes.txt').read_text() == 'mine'
  assert not [f for f in os.listdir(tmp_path) if 'tmp' in f]


@pytest.mark.parametrize('bad, match', [
    (np.array([[np.nan, 1.0]]), 'NaN/Inf'), (np.array([[np.inf, 1.0]]), 'NaN/Inf'),
    (np.ones((2, 3), np.complex64), 'real floating'), (np.ones((2, 3), bool), 'real floating'),
    (np.ones((2, 3), np.int32), 'real floating'), (np.array([['a', 'b']]), 'real floating'),
    (np.zeros((0, 4), np.float32), 'empty'), (np.zeros((2, 3, 4), np.float32), '2-D')])
def test_bad_prompts_are_refused_by_export_and_import(tmp_path, bad, match, capsys):
  with pytest.raises(ValueError, match=match):
    export.export_peft(bad, str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')
  np.save(tmp_path / 'bad.npy', bad)
  assert cli.export_main([f'--prompt={tmp_path / "bad.npy"}', f'--out={tmp_path / "o"}']) == 2
  assert match.split('/')[0] in capsys.readouterr().err


def test_peft_import_is_checked(tmp_path):
  import safetensors.numpy
  prompt = np.arange(12, dtype=np.float32).reshape(3, 4)
  out = export.export_peft(prompt, str(tmp_path / 'a'))
  np.testing.assert_array_equal(export.import_prompt(out), prompt)
  config = json.loads((tmp_path / 'a' / export.PEFT_CONFIG_FILE).read_text())
  config['num_virtual_tokens'] = 5
  (tmp_path / 'a' / export.PEFT_CONFIG_FILE).write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r'shape \(3, 4\), expected \(5, 4\)'):
    export.import_prompt(out)
  bad = tmp_path / 'b'
  bad.mkdir()
  safetensors.numpy.save_file({'prompt_embeddings': np.ones((3, 4), np.int32)},
                              str(bad / export.PEFT_WEIGHTS_FILE))
  with pytest.raises(ValueError, match='real floating'):
    export.import_prompt(str(bad))
  (bad / export.PEFT_WEIGHTS_FILE).write_bytes(b'garbage')
  with pytest.raises(ValueError, match='not a readable safetensors'):
    export.import_prompt(str(bad))
