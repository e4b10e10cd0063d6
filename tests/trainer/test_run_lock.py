"""One writer per MODEL_DIR: O_EXCL lock, stale detection, one-line refusal."""
import json
import os
import socket
import subprocess
import sys

import pytest

from prompt_transfer_jax.trainer import run_lock

HOLD = """
import sys, time
from prompt_transfer_jax.trainer import run_lock
try:
  with run_lock.RunLock(sys.argv[1]):
    print('locked', flush=True)
    sys.stdin.readline()
except run_lock.LockedError as e:
  print('refused:', e, flush=True)
"""


def _child(model_dir):
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  return subprocess.Popen([sys.executable, '-c', HOLD, str(model_dir)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=env)


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
  first = _child(tmp_path / 'run')
  assert first.stdout.readline().strip() == 'locked'
  holder = run_lock.read_holder(str(tmp_path / 'run'))
  assert holder['pid'] == first.pid and holder['host'] == socket.gethostname()
  second = _child(tmp_path / 'run')
  out = second.communicate(timeout=60)[0]
  assert out.startswith('refused:') and f'pid {first.pid}' in out and out.count('\n') == 1
  with pytest.raises(run_lock.LockedError, match='in use by'):
    run_lock.RunLock(str(tmp_path / 'run')).acquire()
  first.communicate('\n', timeout=60)
  assert run_lock.read_holder(str(tmp_path / 'run')) is None     # released on exit
  with run_lock.RunLock(str(tmp_path / 'run')) as lock:
    assert lock.held


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps(
      {'host': socket.gethostname(), 'pid': dead.pid, 'started': 'then'}))
  with run_lock.RunLock(str(tmp_path)):
    assert run_lock.read_holder(str(tmp_path))['pid'] == os.getpid()
  assert not (tmp_path / run_lock.LOCK_FILE).exists()


def test_lock_of_another_host_is_not_guessed_stale(tmp_path):
  (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps(
      {'host': 'elsewhere', 'pid': 1, 'started': 'then'}))
  with pytest.raises(run_lock.LockedError, match='pid 1 on elsewhere since then'):
    run_lock.RunLock(str(tmp_path)).acquire()
  assert run_lock.read_holder(str(tmp_path))['host'] == 'elsewhere'   # untouched
