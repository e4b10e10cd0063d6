"""Checksums of saved checkpoints: a flipped byte is detected, skipped and never rotated onto."""
import errno
import os

import jax.numpy as jnp
import numpy as np
import pytest

from prompt_transfer_jax.trainer import checkpointing


def _state(step):
  return {'prompt': jnp.full((3, 4), float(step)), 'step': jnp.asarray(step, jnp.int32)}


def _flip(path, offset=-1):
  data = bytearray(open(path, 'rb').read())
  data[offset] ^= 0x01
  open(path, 'wb').write(bytes(data))


def _largest_file(directory):
  paths = [os.path.join(r, n) for r, _, ns in os.walk(directory) for n in ns]
  return max(paths, key=os.path.getsize)


def _save(ckpt, step):
  ckpt.save(step, _state(step), {'step': step})


def test_flipped_byte_in_the_latest_checkpoint_falls_back_to_the_previous(tmp_path):
  model_dir = str(tmp_path)
  ckpt = checkpointing.Checkpointer(model_dir, keep=2, asynchronous=True)
  for step in (1, 2, 3):
    _save(ckpt, step)
  ckpt.close()
  assert checkpointing.committed_steps(model_dir) == [2, 3]      # rotation keeps 2
  assert all(checkpointing.verify_step(model_dir, s) is None for s in (2, 3))
  assert not os.path.exists(checkpointing.checksum_path(model_dir, 1))
  _flip(_largest_file(checkpointing.step_dir(model_dir, 3)))
  assert 'does not match its checksums' in checkpointing.verify_step(model_dir, 3)

  ckpt = checkpointing.Checkpointer(model_dir, keep=2, asynchronous=False)
  with pytest.raises(checkpointing.CorruptCheckpointError, match='checkpoint_3'):
    ckpt.restore(3, checkpointing.abstract_of(_state(0)))
  assert ckpt.latest_step() == 2
  assert len(ckpt.problems) == 1 and 'checkpoint_3' in ckpt.problems[0]
  assert os.path.isdir(tmp_path / 'corrupt' / 'checkpoint_3')     # kept for inspection
  state, meta = ckpt.restore(2, checkpointing.abstract_of(_state(0)))
  np.testing.assert_array_equal(state['prompt'], 2.0)
  assert meta == {'step': 2}
  _save(ckpt, 3)                                                  # the step can be redone
  ckpt.close()
  assert checkpointing.committed_steps(model_dir) == [2, 3]
  assert checkpointing.verify_step(model_dir, 3) is None


def test_rotation_never_removes_the_newest_intact_step():
  assert checkpointing.steps_to_remove([1, 2, 3], intact=[1, 2, 3], keep=1) == [1, 2]
  assert checkpointing.steps_to_remove([1, 2, 3], intact=[1], keep=1) == [2]
  assert checkpointing.steps_to_remove([1, 2, 3], intact=[], keep=2) == [1]
  assert checkpointing.steps_to_remove([4], intact=[4], keep=1) == []


def test_all_steps_corrupt_means_no_usable_step(tmp_path):
  model_dir = str(tmp_path)
  ckpt = checkpointing.Checkpointer(model_dir, keep=1, asynchronous=False)
  _save(ckpt, 5)
  ckpt.close()
  os.remove(_largest_file(checkpointing.step_dir(model_dir, 5)))
  step, problems = checkpointing.newest_usable_step(model_dir)
  assert step is None and 'missing' in problems[0]


def test_numpy_snapshot_checksum_and_no_leftover_on_failure(tmp_path, monkeypatch):
  model_dir = str(tmp_path)
  path = checkpointing.save_numpy_prompt(model_dir, 7, np.ones((2, 3)))
  np.testing.assert_array_equal(checkpointing.read_numpy_prompt(model_dir, 7), 1.0)
  _flip(path)
  with pytest.raises(checkpointing.CorruptCheckpointError, match='checkpoint_7'):
    checkpointing.read_numpy_prompt(model_dir, 7)

  def full(*_):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(checkpointing.os, 'replace', full)
  with pytest.raises(OSError, match='No space'):
    checkpointing.save_numpy_prompt(model_dir, 8, np.ones((2, 3)))
  assert sorted(os.listdir(tmp_path / checkpointing.NUMPY_DIR)) == ['checkpoint_7']


def test_train_falls_back_from_a_corrupt_latest_checkpoint_bit_identically(tmp_path, run_train):
  """A flipped byte in the latest checkpoint: detected, the run resumes from the previous one and
  ends bit-identical to the uninterrupted run."""
  from tests.trainer.conftest import final_prompt, synth_args
  args = synth_args(tmp_path / 'run', 6, eval_period=2,
                    extra=['--gin.CHECKPOINT_PERIOD=2', '--gin.ptj.train.keep_checkpoints=2'])
  code, _, err = run_train(args)
  assert code == 0, err
  run = str(tmp_path / 'run')
  uninterrupted = final_prompt(run, 6)
  assert checkpointing.committed_steps(run) == [4, 6]
  _flip(_largest_file(checkpointing.step_dir(run, 6)))
  code, _, err = run_train(args)
  assert code == 0, err
  assert 'resumed' in err and 'at step 4' in err
  assert os.path.isdir(os.path.join(run, 'corrupt', 'checkpoint_6'))
  np.testing.assert_array_equal(final_prompt(run, 6), uninterrupted)
  assert checkpointing.committed_steps(run) == [4, 6]
  assert all(checkpointing.verify_step(run, s) is None for s in (4, 6))


def test_work_in_lists_what_a_failure_handler_must_keep(tmp_path):
  run = str(tmp_path / 'run')
  assert checkpointing.work_in(run) == []
  os.makedirs(os.path.join(run, 'train'))                       # empty event dir: nothing yet
  (tmp_path / 'run' / 'config.gin').write_text('')
  (tmp_path / 'run' / 'checkpoint_3.orbax-checkpoint-tmp-1').mkdir()
  assert checkpointing.work_in(run) == []
  (tmp_path / 'run' / 'train' / 'events.out.tfevents.1').write_bytes(b'x')
  checkpointing.save_numpy_prompt(run, 0, np.zeros((2, 2)))
  (tmp_path / 'run' / 'metrics.json').write_text('{}')
  (tmp_path / 'run' / 'checkpoint_5').mkdir()
  assert checkpointing.work_in(run) == ['checkpoint_5', 'metrics.json', 'train', 'numpy_checkpoints']


def test_a_full_disk_while_writing_checksums_leaves_the_step_usable(tmp_path, monkeypatch):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=1, asynchronous=False)
  _save(ckpt, 1)

  def full(*_):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(checkpointing, 'write_checksum', full)
  ckpt.close()
  assert checkpointing.verify_step(str(tmp_path), 1) == 'unverified'
  assert checkpointing.newest_usable_step(str(tmp_path)) == (1, [])
