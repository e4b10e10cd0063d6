"""Activated neurons by layer group: where prompts activate the FFNs, and which layers predict transfer.

The original groups layers in threes (`ActivatedNeurons_k` uses layers k, k+1, k+2): for 24
layers, 1-3, 4-6, ..., 22-24. A last, shorter group takes the remainder when the number of
layers is not a multiple of the group size.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from prompt_transfer_jax.analysis.indicators import activated, overlap_of_activated_neurons
from prompt_transfer_jax.analysis.spearman import spearman


@dataclasses.dataclass(frozen=True)
class LayerGroup:
  name: str             # 'layers 1-3' (1-based model layer numbers)
  positions: tuple      # indices into the activation array's layer axis


def layer_groups(layer_ids: Sequence[int], size: int = 3) -> list[LayerGroup]:
  """Consecutive groups of `size` stored layers; names use the model's 1-based layer numbers."""
  if size <= 0:
    raise ValueError(f'layer group size must be positive, got {size}')
  ids = [int(i) for i in layer_ids]
  groups = []
  for start in range(0, len(ids), size):
    pos = tuple(range(start, min(start + size, len(ids))))
    first, last = ids[pos[0]] + 1, ids[pos[-1]] + 1
    groups.append(LayerGroup(f'layers {first}-{last}' if first != last else f'layer {first}', pos))
  return groups


def activated_counts(activations, groups: Sequence[LayerGroup]) -> np.ndarray:
  """`[N, G]` number of activated neurons of each prompt in each group."""
  binary = activated(activations)
  per_layer = binary.reshape(binary.shape[0], binary.shape[1], -1).sum(axis=2)
  return np.stack([per_layer[:, list(g.positions)].sum(axis=1) for g in groups], axis=1)


def activated_distribution(activations, groups: Sequence[LayerGroup]) -> np.ndarray:
  """`[N, G]` share of each prompt's activated neurons that lie in each group (rows sum to 1)."""
  counts = activated_counts(activations, groups).astype(np.float64)
  total = counts.sum(axis=1, keepdims=True)
  return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def activated_fraction(activations, groups: Sequence[LayerGroup]) -> np.ndarray:
  """`[N, G]` fraction of a group's neurons that are activated."""
  a = np.asarray(activations)
  per_layer_size = int(np.prod(a.shape[2:]))
  sizes = np.array([len(g.positions) * per_layer_size for g in groups], np.float64)
  return activated_counts(a, groups) / sizes[None]


def group_on_matrices(activations, groups: Sequence[LayerGroup]) -> dict[str, np.ndarray]:
  """ON restricted to each group's layers."""
  return {g.name: overlap_of_activated_neurons(activations, g.positions) for g in groups}


def mean_pairwise_on(on: np.ndarray) -> float:
  """Mean ON over distinct prompt pairs: high = neurons shared across tasks, low = task-specific."""
  n = on.shape[0]
  if n < 2:
    return float('nan')
  return float((on.sum() - np.trace(on)) / (n * (n - 1)))


@dataclasses.dataclass
class LayerGroupAnalysis:
  groups: list[LayerGroup]
  distribution: np.ndarray        # [N, G]
  fraction: np.ndarray            # [N, G]
  on: dict                        # group name -> [N, N]
  spearman: Optional[dict]        # group name -> SpearmanResult (when a transfer matrix is given)

  def to_json(self, tasks: Sequence[str]) -> dict:
    out = {'groups': [{'name': g.name, 'positions': list(g.positions)} for g in self.groups],
           'activated_distribution': self.distribution.tolist(),
           'activated_fraction': self.fraction.tolist(),
           'mean_pairwise_on': {k: mean_pairwise_on(v) for k, v in self.on.items()}}
    if self.spearman is not None:
      out['spearman'] = {k: v.to_json(tasks) for k, v in self.spearman.items()}
    return out


def analyze_layer_groups(activations, layer_ids: Optional[Sequence[int]] = None, size: int = 3,
                         transfer=None, bootstrap: int = 2000, seed: int = 0) -> LayerGroupAnalysis:
  """Distribution of activated neurons and, given `transfer`, the Spearman of ON per group."""
  a = np.asarray(activations)
  groups = layer_groups(range(a.shape[1]) if layer_ids is None else layer_ids, size)
  on = group_on_matrices(a, groups)
  rho = None
  if transfer is not None:
    rho = {name: spearman(transfer, m, bootstrap, seed) for name, m in on.items()}
  return LayerGroupAnalysis(groups, activated_distribution(a, groups), activated_fraction(a, groups),
                            on, rho)
