"""All indicators of a set of task prompts against their transfer matrix: the `indicators.json` content.

`analyze_transferability` computes every similarity matrix, its Spearman against the zero-shot
transfer matrix (section 5.3 of the spec), and, with activations, the layer-group analysis. The
result is plain JSON data, which the report renders.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from prompt_transfer_jax.analysis import indicators as ind
from prompt_transfer_jax.analysis.layer_groups import analyze_layer_groups
from prompt_transfer_jax.analysis.spearman import spearman, spearman_warnings

# The paper's Spearman correlations (x100), from the seed slides (spec section 6c).
PAPER_SPEARMAN = {
    'RoBERTa-Large': {'E_concat': 22.6, 'E_average': 2.8, 'C_concat': 24.8, 'C_average': 44.7, 'ON': 49.7},
    'T5-XXL': {'E_concat': 12.9, 'E_average': -2.5, 'C_concat': 31.6, 'C_average': 33.5, 'ON': 36.9},
}


def analyze_transferability(tasks: Sequence[str], transfer, prompts=None, activations=None,
                            layer_ids: Optional[Sequence[int]] = None, group_size: int = 3,
                            bootstrap: int = 2000, seed: int = 0) -> dict:
  """JSON-ready results; `prompts` `[N, P, E]` and `activations` `[N, layers, d_ff]` follow `tasks`."""
  transfer = np.asarray(transfer, np.float64)
  n = len(tasks)
  if transfer.shape != (n, n):
    raise ValueError(f'transfer matrix has shape {transfer.shape}, expected ({n}, {n}) for {n} tasks')
  for what, x in (('prompts', prompts), ('activations', activations)):
    if x is not None and np.shape(x)[0] != n:
      raise ValueError(f'{what} has {np.shape(x)[0]} entries, expected {n} (one per task)')
  sims = ind.similarity_matrices(prompts, activations)
  results = {name: spearman(transfer, m, bootstrap, seed) for name, m in sims.items()}
  out = {
      'tasks': list(tasks),
      'spearman': {name: _round(r.value) for name, r in results.items()},
      'spearman_detail': {name: r.to_json(tasks) for name, r in results.items()},
      'paper_spearman': PAPER_SPEARMAN,
      'transfer': transfer.tolist(),
      'similarity': {name: m.tolist() for name, m in sims.items()},
      'warnings': ((ind.prompt_warnings(tasks, prompts) if prompts is not None else []) +
                   spearman_warnings(tasks, results, transfer)),
  }
  if activations is not None:
    groups = analyze_layer_groups(activations, layer_ids, group_size, transfer, bootstrap, seed)
    out['layer_groups'] = groups.to_json(tasks)
  return out


def _round(x: float) -> Optional[float]:
  return None if not np.isfinite(x) else round(float(x), 4)


def spearman_table(result: dict) -> str:
  """A plain-text table: our Spearman (x100, 95% CI) beside the paper's two columns."""
  rows = [('indicator', 'ours', '95% CI', 'targets', 'paper RoBERTa-L', 'paper T5-XXL')]
  for name in ind.INDICATORS:
    if name not in result['spearman']:
      continue
    d = result['spearman_detail'][name]
    lo, hi = d['ci95']
    rows.append((name, _fmt(result['spearman'][name]),
                 f'[{_fmt(lo)}, {_fmt(hi)}]', str(d['n_targets']),
                 _fmt(PAPER_SPEARMAN['RoBERTa-Large'][name]), _fmt(PAPER_SPEARMAN['T5-XXL'][name])))
  for group, d in result.get('layer_groups', {}).get('spearman', {}).items():
    lo, hi = d['ci95']
    rows.append((f'ON {group}', _fmt(d['value']), f'[{_fmt(lo)}, {_fmt(hi)}]', str(d['n_targets']), '', ''))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _fmt(x) -> str:
  return 'n/a' if x is None or not np.isfinite(x) else f'{x:.1f}'
