"""Source-prompt recommendation by an indicator, and how often it finds the best zero-shot source.

For a new target task, bank prompts are ranked by their similarity to the target's (briefly
trained) prompt. Measured leave-one-out on a transfer matrix: each task in turn is the new target,
the other tasks are the bank; a hit at k means a best zero-shot source (highest score on the
target, ties all count) is among the k highest-ranked sources.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


def rank(scores) -> np.ndarray:
  """Indices by descending score; ties keep their original order."""
  return np.argsort(-np.asarray(scores, np.float64), kind='stable')


@dataclasses.dataclass
class HitRates:
  rates: dict                 # k -> fraction of targets with a hit at k
  chance: dict                # k -> expected rate of a random ranking
  recommended: list           # per target: source indices, best first
  best: list                  # per target: indices of the best zero-shot sources

  def to_json(self, tasks: Sequence[str]) -> dict:
    return {'hit_rate': {str(k): v for k, v in self.rates.items()},
            'chance': {str(k): v for k, v in self.chance.items()},
            'per_target': {t: {'recommended': [tasks[i] for i in r[:max(self.rates)]],
                               'best': [tasks[i] for i in b]}
                           for t, r, b in zip(tasks, self.recommended, self.best)}}


def leave_one_out_hit_rates(transfer, similarity, ks: Sequence[int] = (1, 3)) -> HitRates:
  """Top-k hit rates of ranking sources s != t by `similarity[t, s]` against `transfer[t, s]`."""
  t = np.asarray(transfer, np.float64)
  s = np.asarray(similarity, np.float64)
  n = t.shape[0]
  if t.ndim != 2 or t.shape != (n, n) or s.shape != t.shape:
    raise ValueError(f'transfer {t.shape} and similarity {s.shape} must be the same square shape')
  if n < 2:
    raise ValueError('leave-one-out needs at least 2 tasks')
  hits = {k: 0 for k in ks}
  chance = {k: 0.0 for k in ks}
  recommended, best = [], []
  for target in range(n):
    others = np.array([i for i in range(n) if i != target])
    order = others[rank(s[target, others])]
    scores = t[target, others]
    winners = others[scores == scores.max()]
    recommended.append(order.tolist())
    best.append(winners.tolist())
    for k in ks:
      hits[k] += bool(np.isin(order[:k], winners).any())
      chance[k] += _chance_of_hit(len(others), len(winners), k)
  return HitRates({k: hits[k] / n for k in ks}, {k: chance[k] / n for k in ks}, recommended, best)


def _chance_of_hit(candidates: int, winners: int, k: int) -> float:
  """P(a uniformly random top-k of `candidates` contains one of `winners`)."""
  k = min(k, candidates)
  miss = 1.0
  for i in range(k):
    miss *= (candidates - winners - i) / (candidates - i)
  return 1.0 - max(miss, 0.0)
