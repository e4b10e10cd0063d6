"""Spearman correlation between an indicator and transfer, the paper's way (spec section 5.3).

For each target task t: Spearman's rho between `sim(P_s, P_t)` and the zero-shot score of source
prompt s on t, over all sources s *including t itself*; then the mean over targets, x100.
Matrices are `[targets, sources]` in the same task order (row t = target t). Ranks use average
ties, as `scipy.stats.spearmanr`; a target whose scores or similarities are constant has an
undefined rho (NaN) and is left out of the mean; `spearman_warnings` says so, and flags targets
whose own prompt scores at chance. Non-finite scores or similarities are errors.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats

from prompt_transfer_jax.files import read_json, write_json


@dataclasses.dataclass(frozen=True)
class SpearmanResult:
  """Mean per-target rho x100, the per-target rhos (NaN if undefined) and a bootstrap interval."""
  value: float
  per_target: np.ndarray
  ci95: tuple[float, float]

  @property
  def n_targets(self) -> int:
    return int(np.isfinite(self.per_target).sum())

  def to_json(self, tasks: Sequence[str]) -> dict:
    return {'value': _finite_or_none(self.value),
            'per_target': {t: _finite_or_none(r) for t, r in zip(tasks, self.per_target)},
            'ci95': [_finite_or_none(c) for c in self.ci95],
            'n_targets': self.n_targets}


def _finite_or_none(x) -> Optional[float]:
  x = float(x)
  return x if math.isfinite(x) else None


def _check_pair(transfer, similarity) -> tuple[np.ndarray, np.ndarray]:
  t = np.asarray(transfer, np.float64)
  s = np.asarray(similarity, np.float64)
  if t.ndim != 2 or t.shape[0] != t.shape[1]:
    raise ValueError(f'transfer matrix must be square [targets, sources], got shape {t.shape}')
  if s.shape != t.shape:
    raise ValueError(f'similarity matrix shape {s.shape} does not match transfer matrix shape {t.shape}')
  for what, m in (('transfer', t), ('similarity', s)):
    if not np.isfinite(m).all():
      i, j = np.argwhere(~np.isfinite(m))[0]
      raise ValueError(f'{what} matrix has non-finite entries (first at target {i}, source {j}); '
                       'nothing can be ranked')
  return t, s


def per_target_spearman(transfer, similarity) -> np.ndarray:
  """rho of row t of `similarity` against row t of `transfer`, for every target t: `[T]`."""
  t, s = _check_pair(transfer, similarity)
  rt = stats.rankdata(t, axis=1)
  rs = stats.rankdata(s, axis=1)
  rt -= rt.mean(axis=1, keepdims=True)
  rs -= rs.mean(axis=1, keepdims=True)
  denom = np.sqrt((rt * rt).sum(axis=1) * (rs * rs).sum(axis=1))
  num = (rt * rs).sum(axis=1)
  rho = np.full(t.shape[0], np.nan)
  np.divide(num, denom, out=rho, where=denom > 0)
  return rho


def bootstrap_ci(per_target: np.ndarray, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
  """95% percentile interval of the x100 mean over targets, resampling targets with replacement."""
  rho = per_target[np.isfinite(per_target)]
  if rho.size == 0 or samples <= 0:
    return (math.nan, math.nan)
  idx = np.random.default_rng(seed).integers(0, rho.size, size=(samples, rho.size))
  means = 100.0 * rho[idx].mean(axis=1)
  lo, hi = np.percentile(means, [2.5, 97.5])
  return (float(lo), float(hi))


def spearman(transfer, similarity, bootstrap: int = 2000, seed: int = 0) -> SpearmanResult:
  """The paper's number: mean over targets of the per-target rho, x100 (NaN targets skipped)."""
  rho = per_target_spearman(transfer, similarity)
  finite = rho[np.isfinite(rho)]
  value = 100.0 * float(finite.mean()) if finite.size else math.nan
  return SpearmanResult(value, rho, bootstrap_ci(rho, bootstrap, seed))


def spearman_warnings(tasks: Sequence[str], results: Mapping[str, SpearmanResult], transfer,
                      chance: Optional[Mapping[str, float]] = None,
                      margin: float = 1.0) -> list[str]:
  """Warnings for the Spearman table: targets left out of an indicator's average (constant
  scores or similarities), and targets whose own prompt scores within `margin` points of
  `chance[task]` (their transfer ranking is noise)."""
  t = np.asarray(transfer, np.float64)
  warnings = []
  for name, result in results.items():
    dropped = [(task, 'constant transfer scores' if np.ptp(t[i]) == 0 else 'constant similarities')
               for i, task in enumerate(tasks) if not np.isfinite(result.per_target[i])]
    if dropped:
      warnings.append(f'{name}: {len(dropped)} of {len(tasks)} targets dropped from the average '
                      f'({"; ".join(f"{task}: {why}" for task, why in dropped)})')
  for i, task in enumerate(tasks):
    if chance and task in chance and t[i, i] <= chance[task] + margin:
      warnings.append(f'{task}: its own prompt scores {t[i, i]:.1f}, at chance ({chance[task]:.1f}); '
                      'transfer to it is not meaningful')
  return warnings


def load_transfer_matrix(path: str) -> tuple[list[str], np.ndarray]:
  """Reads `{"tasks": [...], "matrix": [[...]]}` (rows = targets, columns = sources)."""
  data = read_json(path, 'transfer matrix file')
  if not isinstance(data, dict) or 'tasks' not in data or 'matrix' not in data:
    raise ValueError(f'{path}: expected an object with "tasks" and "matrix"')
  tasks = data['tasks']
  if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
    raise ValueError(f'{path}: "tasks" must be a list of names')
  if len(set(tasks)) != len(tasks):
    raise ValueError(f'{path}: "tasks" has duplicate names')
  try:
    matrix = np.asarray(data['matrix'], np.float64)
  except (TypeError, ValueError):
    raise ValueError(f'{path}: "matrix" must be a rectangular list of lists of numbers') from None
  if matrix.shape != (len(tasks), len(tasks)):
    raise ValueError(f'{path}: "matrix" has shape {matrix.shape}, expected '
                     f'({len(tasks)}, {len(tasks)}) for {len(tasks)} tasks')
  if not np.all(np.isfinite(matrix)):
    raise ValueError(f'{path}: "matrix" has non-finite entries')
  return tasks, matrix


def save_transfer_matrix(path: str, tasks: Sequence[str], matrix) -> None:
  """Writes the JSON form read by `load_transfer_matrix` (temp name, then rename)."""
  write_json(path, {'tasks': list(tasks), 'matrix': np.asarray(matrix, float).tolist()})


def relative_transfer(matrix) -> np.ndarray:
  """Zero-shot score divided by the target's own PT score (the diagonal), in percent."""
  m = np.asarray(matrix, np.float64)
  diag = np.diag(m)[:, None]
  return np.divide(100.0 * m, diag, out=np.full_like(m, np.nan), where=diag != 0)
