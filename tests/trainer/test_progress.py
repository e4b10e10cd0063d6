"""The ETA counts training steps only: compilation and evaluation pauses are left out."""
from prompt_transfer_jax.trainer import progress


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_eta_excludes_compile_and_eval_time():
  clock = FakeClock()
  eta = progress.EtaClock(clock)
  clock.now = 30.0                 # step 1 took 30 s: compilation
  eta.advance(1)
  assert eta.eta(1, 101) is None   # nothing measured before the first window
  eta.start(1)
  for step in range(2, 11):        # 0.5 s per step
    clock.now += 0.5
    eta.advance(step)
  assert eta.eta(10, 100) == 90 * 0.5
  clock.now += 120.0               # evaluation + checkpoint at step 10
  eta.start(10)
  for step in range(11, 21):
    clock.now += 0.5
    eta.advance(step)
  assert eta.steps == 19 and eta.seconds == 9.5
  assert eta.eta(20, 100) == 80 * 0.5
  assert eta.eta(100, 100) == 0.0


def test_format_seconds():
  assert progress.format_seconds(None) == '?'
  assert progress.format_seconds(75.4) == '01:15'
  assert progress.format_seconds(3 * 3600 + 61) == '3:01:01'


def test_progress_line_shows_the_measured_eta(tmp_path, capsys):
  bar = progress.Progress(str(tmp_path), total_steps=10, start_step=0, show=False)
  clock = FakeClock()
  bar.eta_clock = progress.EtaClock(clock)
  bar.step(1, 2.0)
  bar.reset_window(1)
  clock.now = 2.0
  bar.step(3, 1.5)
  assert bar._bar.postfix == 'loss=1.5, eta=00:07'    # 7 steps left at 1 s per step
  bar.close()
