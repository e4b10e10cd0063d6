"""Progress of a run: a live console line and TensorBoard event files.

The live line (tqdm, process 0 only) shows step, loss, steps/s and the ETA. The ETA comes from
`EtaClock`: the rate of training steps alone, so compilation and the pauses for evaluation and
checkpoints (between `reset_window` calls) do not slow it down (tqdm's own estimate counted them,
4x too long in the demo). Scalars go to
TensorBoard through `clu.metric_writers` under `MODEL_DIR/train` and `MODEL_DIR/training_eval`,
with T5X's `timing/*` keys (`timing/steps_per_second`, `timing/seqs_per_second`, ...).
`phase` prints one line per start-up phase of a run (config, model, data, compile, first step).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Mapping, Optional

import jax
from tqdm import tqdm


_last_phase = [time.perf_counter()]


def mark_phase() -> None:
  """Starts timing the next `phase` from now."""
  _last_phase[0] = time.perf_counter()


def phase(name: str, detail: str = '', show: bool = True, nbytes: Optional[int] = None) -> None:
  """`ptj: NAME: DETAIL (S s[, MB at MB/s])` on stderr (process 0, when `show`), always logged at
  INFO; S is the time since the previous phase (or `mark_phase`)."""
  now = time.perf_counter()
  seconds, _last_phase[0] = now - _last_phase[0], now
  timing = f'{seconds:.1f} s'
  if nbytes is not None:
    timing += f', {nbytes / 1e6:.1f} MB at {nbytes / 1e6 / max(seconds, 1e-9):.0f} MB/s'
  line = f'ptj: {name}: {detail} ({timing})' if detail else f'ptj: {name} ({timing})'
  logging.info('%s', line)
  if show and jax.process_index() == 0:
    tqdm.write(line, file=sys.stderr)


class EtaClock:
  """Seconds per training step measured only inside training windows.

  `start(step)` opens a window (after compilation, an evaluation or a checkpoint); `advance(step)`
  adds the time and steps since the last call of either; time between `advance` and the next
  `start` (evaluation, saving) is not counted, nor anything before the first `start`.
  """

  def __init__(self, clock: Callable[[], float] = time.perf_counter):
    self._clock = clock
    self._since: Optional[float] = None
    self._step = 0
    self.seconds = 0.0
    self.steps = 0

  def start(self, step: int) -> None:
    self._since, self._step = self._clock(), step

  def advance(self, step: int) -> None:
    if self._since is None:
      return
    now = self._clock()
    self.seconds += now - self._since
    self.steps += step - self._step
    self._since, self._step = now, step

  def eta(self, step: int, total: int) -> Optional[float]:
    """Seconds left to `total` at the measured rate; None before any step is measured."""
    if self.steps <= 0:
      return None
    return max(total - step, 0) * self.seconds / self.steps


def format_seconds(seconds: Optional[float]) -> str:
  if seconds is None:
    return '?'
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  return f'{h}:{rest // 60:02d}:{rest % 60:02d}' if h else f'{rest // 60:02d}:{rest % 60:02d}'


class Progress:
  """Console line + metric writers for one training run."""

  def __init__(self, model_dir: str, total_steps: int, start_step: int, show: bool = True):
    from clu import metric_writers
    self.main = jax.process_index() == 0
    self._bar = tqdm(total=total_steps, initial=start_step, desc='train', unit='step',
                     dynamic_ncols=True, file=sys.stderr, disable=not (show and self.main),
                     mininterval=0.5 if sys.stderr.isatty() else 30.0, smoothing=0.1,
                     bar_format='{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]')
    self.total_steps = total_steps
    self.eta_clock = EtaClock()
    self._writers = {}
    if self.main:
      for name in ('train', 'training_eval'):
        self._writers[name] = metric_writers.SummaryWriter(os.path.join(model_dir, name))
    self._window_start = time.perf_counter()
    self._window_step = start_step

  def step(self, step: int, loss: Optional[float] = None) -> None:
    """Advances the live line to `step` (updates done)."""
    self.eta_clock.advance(step)
    postfix = {} if loss is None else {'loss': f'{loss:.4g}'}
    postfix['eta'] = format_seconds(self.eta_clock.eta(step, self.total_steps))
    self._bar.set_postfix(postfix, refresh=False)
    self._bar.update(step - self._bar.n)

  def message(self, text: str) -> None:
    if self.main:
      self._bar.write(text, file=sys.stderr)

  def timing(self, step: int, batch_size: int, target_tokens: float) -> dict:
    """T5X `timing/*` scalars for the steps since the last call."""
    now = time.perf_counter()
    seconds = max(now - self._window_start, 1e-9)
    steps = step - self._window_step
    cores = jax.device_count()
    self._window_start, self._window_step = now, step
    seqs = steps * batch_size
    return {'timing/seconds': seconds, 'timing/steps_per_second': steps / seconds,
            'timing/seqs': seqs, 'timing/seqs_per_second': seqs / seconds,
            'timing/seqs_per_second_per_core': seqs / seconds / cores,
            'timing/target_tokens_per_second': target_tokens / seconds,
            'timing/target_tokens_per_second_per_core': target_tokens / seconds / cores}

  def reset_window(self, step: int) -> None:
    """Starts a new timing window (after compilation, an evaluation or a checkpoint)."""
    self._window_start, self._window_step = time.perf_counter(), step
    self.eta_clock.start(step)

  def write(self, collection: str, step: int, scalars: Mapping[str, float]) -> None:
    if collection in self._writers:
      self._writers[collection].write_scalars(step, {k: float(v) for k, v in scalars.items()})

  def close(self) -> None:
    self._bar.close()
    for writer in self._writers.values():
      writer.flush()
      writer.close()
