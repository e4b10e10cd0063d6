"""Training speedups of transfer by initialization (TPT), from two runs' evaluation histories.

A history is the trainer's `metrics.json` list: one entry per evaluation with `step`, `score`
(higher is better) and times (`train_s`: training seconds so far without evaluation and
checkpointing; `elapsed_s`: all seconds so far). The baseline run starts from the default
initialization, the transfer run from a source task's prompt; both tune on the same target.

Definitions (the paper's exact ones are UNCONFIRMED, paper-spec section 3):

* `reach(run, threshold)`: the first evaluated step whose score is >= threshold (None if none).
  Step 0 is the evaluation before any update. Steps are only known at evaluations, so results
  are quantized by the evaluation period: give both runs the same `EVAL_PERIOD`.
* Convergence speedup = reach(baseline, best(baseline) - tol) / reach(transfer,
  best(transfer) - tol): each run's own convergence point, the first step within `tol` score
  points of its own best (tol 0: the step of the best score). Always defined.
* Comparable-result speedup = reach(baseline, f * best(baseline)) / reach(transfer,
  f * best(baseline)): steps to a comparable result, `f` (default 1.0) times the baseline's best.
  N/A (None) when the transfer run never gets there.

Why these: in the TPT_TASK table of the seed slides the convergence speedup is given for every
task, while the comparable-result speedup is N/A exactly where TPT's best is below PT's best
(e.g. RoBERTa-Large justice 78.2 vs 81.0, i.e. 96.5% of it, so a 90% threshold would have
given a number there). A few cells (T5-XXL SST-2: 49.7 vs 48.9) do not fit "convergence =
first step at the best score" exactly, so the paper's convergence point may use a tolerance or
a plateau rule; `tol` is the knob for that.

Ratios: x / y for y > 0; inf when the transfer run is there at step 0 (before training) and the
baseline is not; 1.0 when both are. Wall-time speedups use the same points with `train_s`.
The source prompt's own training is not counted, as in the paper. A run that first reaches its
best score at its last evaluation may still be improving (`best_at_last_evaluation`): train
longer before reading its convergence speedup.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Mapping, Optional, Sequence

TIME_KEYS = ('train_s', 'elapsed_s')
_EPS = 1e-9


def check_history(history: Sequence[Mapping], where: str = 'history') -> list[dict]:
  """The entries sorted by step; one-line errors for missing fields, duplicates or non-finite."""
  if not history:
    raise ValueError(f'{where}: no evaluations')
  out = []
  for i, entry in enumerate(history):
    if not isinstance(entry, Mapping) or 'step' not in entry or 'score' not in entry:
      raise ValueError(f'{where}: entry {i} lacks "step" or "score"')
    score = float(entry['score'])
    if not math.isfinite(score):
      raise ValueError(f'{where}: entry {i} (step {entry["step"]}) has score {score}')
    out.append(dict(entry, step=int(entry['step']), score=score))
  out.sort(key=lambda e: e['step'])
  steps = [e['step'] for e in out]
  if len(set(steps)) != len(steps):
    raise ValueError(f'{where}: duplicate evaluation steps')
  return out


def best_score(history: Sequence[Mapping]) -> float:
  return max(float(e['score']) for e in history)


def reach(history: Sequence[Mapping], threshold: float) -> Optional[dict]:
  """The first evaluation (by step) with score >= threshold, or None."""
  for entry in sorted(history, key=lambda e: int(e['step'])):
    if float(entry['score']) >= threshold - _EPS:
      return entry
  return None


def ratio(baseline: Optional[float], transfer: Optional[float]) -> Optional[float]:
  """baseline / transfer; inf if only the transfer run needed nothing, 1.0 if neither did."""
  if baseline is None or transfer is None:
    return None
  if transfer <= 0:
    return 1.0 if baseline <= 0 else math.inf
  return baseline / transfer


@dataclasses.dataclass(frozen=True)
class Speedup:
  """One speedup: where each run got to its threshold, and the ratios (None = N/A)."""
  kind: str                        # 'convergence' or 'comparable_result'
  baseline_threshold: float
  transfer_threshold: float
  baseline_step: int               # the baseline always reaches its own thresholds
  transfer_step: Optional[int]
  baseline_time: Optional[float]
  transfer_time: Optional[float]

  @property
  def steps(self) -> Optional[float]:
    return ratio(self.baseline_step, self.transfer_step)

  @property
  def time(self) -> Optional[float]:
    return ratio(self.baseline_time, self.transfer_time)

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out.update(steps_speedup=_json_number(self.steps), time_speedup=_json_number(self.time))
    return out


def _json_number(x: Optional[float]):
  """JSON has no infinity: write it as the string 'inf'."""
  if x is None:
    return None
  return 'inf' if math.isinf(x) else round(x, 6)


def _time(entry: Optional[Mapping], time_key: str) -> Optional[float]:
  if entry is None or time_key not in entry:
    return None
  return float(entry[time_key])


def convergence_speedup(baseline: Sequence[Mapping], transfer: Sequence[Mapping],
                        tol: float = 0.0, time_key: str = 'train_s') -> Speedup:
  """Steps (and seconds) each run needs to get within `tol` points of its own best, as a ratio."""
  if tol < 0:
    raise ValueError(f'tol must be >= 0, got {tol}')
  base = check_history(baseline, 'baseline history')
  tran = check_history(transfer, 'transfer history')
  b_thr, t_thr = best_score(base) - tol, best_score(tran) - tol
  b, t = reach(base, b_thr), reach(tran, t_thr)
  return Speedup('convergence', b_thr, t_thr, b['step'], t['step'], _time(b, time_key),
                 _time(t, time_key))


def comparable_result_speedup(baseline: Sequence[Mapping], transfer: Sequence[Mapping],
                              fraction: float = 1.0, time_key: str = 'train_s') -> Speedup:
  """Steps (and seconds) to `fraction` x the baseline's best: baseline over transfer run."""
  if not 0 < fraction <= 1:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}')
  base = check_history(baseline, 'baseline history')
  tran = check_history(transfer, 'transfer history')
  threshold = fraction * best_score(base)
  b, t = reach(base, threshold), reach(tran, threshold)
  return Speedup('comparable_result', threshold, threshold, b['step'],
                 None if t is None else t['step'], _time(b, time_key), _time(t, time_key))


def compare_runs(baseline: Sequence[Mapping], transfer: Sequence[Mapping], tol: float = 0.0,
                 fraction: float = 1.0, time_key: str = 'train_s') -> dict:
  """Both speedups and both runs' best scores, JSON-ready."""
  if time_key not in TIME_KEYS:
    raise ValueError(f'time_key must be one of {", ".join(TIME_KEYS)}, got {time_key!r}')
  conv = convergence_speedup(baseline, transfer, tol, time_key)
  comp = comparable_result_speedup(baseline, transfer, fraction, time_key)
  base = check_history(baseline, 'baseline history')
  tran = check_history(transfer, 'transfer history')
  return {'baseline_best': best_score(base), 'transfer_best': best_score(tran),
          'transfer_start': tran[0]['score'],
          'same_evaluation_steps': [e['step'] for e in base] == [e['step'] for e in tran],
          'best_at_last_evaluation': {'baseline': _best_is_last(base),
                                      'transfer': _best_is_last(tran)},
          'convergence': conv.to_json(), 'comparable_result': comp.to_json(),
          'settings': {'tol': tol, 'fraction': fraction, 'time_key': time_key}}


def _best_is_last(history: Sequence[Mapping]) -> bool:
  """True when the best score was first reached at the last evaluation: the run may still be
  improving, so its convergence point is only a lower bound."""
  return reach(history, best_score(history))['step'] == history[-1]['step']


def load_history(path: str) -> list[dict]:
  """The `history` of a run directory's `metrics.json` (or of that file itself)."""
  if os.path.isdir(path):
    from prompt_transfer_jax.trainer.run_record import METRICS_FILE
    path = os.path.join(path, METRICS_FILE)
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'run record not found: {path}') from None
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(data, dict) or not isinstance(data.get('history'), list):
    raise ValueError(f'{path}: expected a run record with a "history" list')
  return check_history(data['history'], path)
