"""best_prompt.npy is checksummed and never replaced by a worse, corrupt or non-finite one."""
import json

import numpy as np
import pytest

from prompt_transfer_jax.trainer import run_record


def _record(tmp_path, scores):
  record = run_record.RunRecord(str(tmp_path), 'synth_sentiment_a', 'accuracy')
  for step, score in scores:
    record.add({'step': step, 'score': score})
  return record


def test_best_prompt_checksum_detects_a_flipped_byte(tmp_path):
  _record(tmp_path, [(0, 10.0)]).save(np.ones((2, 3)))
  assert run_record.verify_best_prompt(str(tmp_path)) is None
  path = tmp_path / run_record.BEST_PROMPT_FILE
  data = bytearray(path.read_bytes())
  data[-1] ^= 1
  path.write_bytes(bytes(data))
  assert 'does not match' in run_record.verify_best_prompt(str(tmp_path))


def test_an_intact_better_best_prompt_is_kept(tmp_path):
  _record(tmp_path, [(0, 10.0), (5, 90.0)]).save(np.full((2, 3), 5.0))
  # A record that (wrongly) believes in a worse best for the same history.
  worse = _record(tmp_path, [(0, 10.0), (5, 50.0)])
  worse.save(np.full((2, 3), -1.0))
  np.testing.assert_array_equal(np.load(tmp_path / run_record.BEST_PROMPT_FILE), 5.0)
  saved = json.loads((tmp_path / run_record.METRICS_FILE).read_text())
  assert saved['best_step'] == 5 and saved['best_score'] == 90.0
  assert run_record.verify_best_prompt(str(tmp_path)) is None


def test_a_resume_replaces_the_best_of_a_cut_short_run_and_a_corrupt_file(tmp_path):
  _record(tmp_path, [(0, 10.0), (5, 20.0), (10, 90.0)]).save(np.full((2, 3), 10.0))
  resumed = run_record.RunRecord(str(tmp_path), 'synth_sentiment_a', 'accuracy')
  resumed.resume(5, best_step=5, best_score=20.0)          # steps after 5 will be replayed
  assert [h['step'] for h in resumed.history] == [0, 5]
  resumed.save(np.full((2, 3), 5.0))
  np.testing.assert_array_equal(np.load(tmp_path / run_record.BEST_PROMPT_FILE), 5.0)
  (tmp_path / run_record.BEST_PROMPT_FILE).write_bytes(b'garbage')
  resumed.history[-1]['score'] = 1.0
  resumed.best_score = 1.0
  resumed.save(np.full((2, 3), 6.0))                        # corrupt file: replaced
  np.testing.assert_array_equal(np.load(tmp_path / run_record.BEST_PROMPT_FILE), 6.0)


def test_non_finite_best_prompt_is_refused(tmp_path):
  with pytest.raises(ValueError, match='best prompt.*NaN'):
    _record(tmp_path, [(0, 1.0)]).save(np.array([[np.nan, 1.0]]))
  assert not (tmp_path / run_record.BEST_PROMPT_FILE).exists()


def test_malformed_record_is_one_line_naming_the_file(tmp_path):
  (tmp_path / run_record.METRICS_FILE).write_text('{"history": [{"elapsed_s": 1}]}')
  with pytest.raises(ValueError, match=f'{run_record.METRICS_FILE}: malformed history'):
    run_record.RunRecord(str(tmp_path), 't', 'accuracy').resume(5, None, None)
  (tmp_path / run_record.METRICS_FILE).write_text('')
  with pytest.raises(ValueError, match='not a valid run record'):
    run_record.RunRecord(str(tmp_path), 't', 'accuracy').resume(5, None, None)
