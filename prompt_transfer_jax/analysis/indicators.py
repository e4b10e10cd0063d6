"""The paper's transferability indicators (Su et al. 2022, section 5), as pairwise matrices.

For prompts `P, Q` of shape `[l, d]` (all rows, the RoBERTa `<mask>` row 0 included):

* `E_concat  = 1 / (1 + ||vec(P) - vec(Q)||)`
* `E_average = 1 / (1 + mean over all l x l token pairs (i, j) of ||P_i - Q_j||)`
* `C_concat  = cos(vec(P), vec(Q))`
* `C_average = mean over all l x l token pairs (i, j) of cos(P_i, Q_j)`
* `ON        = cos(1[a_P > 0], 1[a_Q > 0])` on FFN activations flattened over the chosen layers;
  an exact 0 is not activated.

Every function takes a stack of `N` items and returns the `[N, N]` matrix with a few matrix
products (float64), never a Python loop over pairs. Cosines with a zero vector are 0 (norms are
clamped at `EPS`, as `torch.nn.functional.cosine_similarity` does).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

EPS = 1e-8
EMBEDDING_INDICATORS = ('E_concat', 'E_average', 'C_concat', 'C_average')
INDICATORS = EMBEDDING_INDICATORS + ('ON',)
# Bytes of float64 scratch one block of the all-pairs distance computation may use.
_BLOCK_BYTES = 1 << 28


def _as_prompts(prompts) -> np.ndarray:
  x = np.asarray(prompts, np.float64)
  if x.ndim != 3:
    raise ValueError(f'prompts must be a stack [N, length, dim], got shape {x.shape}')
  return x


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distances between the rows of `a` [n, d] and `b` [m, d] (Gram form, float64)."""
  sq = (np.einsum('ij,ij->i', a, a)[:, None] + np.einsum('ij,ij->i', b, b)[None, :]
        - 2.0 * (a @ b.T))
  return np.sqrt(np.maximum(sq, 0.0))


def _unit_rows(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)


def e_concat(prompts) -> np.ndarray:
  """`[N, N]` Euclidean similarity of the flattened prompts."""
  x = _as_prompts(prompts)
  flat = x.reshape(x.shape[0], -1)
  dist = _pairwise_distances(flat, flat)
  np.fill_diagonal(dist, 0.0)
  return 1.0 / (1.0 + dist)


def e_average(prompts) -> np.ndarray:
  """`[N, N]` Euclidean similarity of the mean distance over all token pairs.

  All `N*l` tokens are compared with all others in blocks of prompts that bound the scratch
  memory to about `_BLOCK_BYTES`.
  """
  x = _as_prompts(prompts)
  n, length, dim = x.shape
  tokens = x.reshape(n * length, dim)
  block = max(1, _BLOCK_BYTES // (8 * length * length * n))
  mean_dist = np.empty((n, n))
  for start in range(0, n, block):
    stop = min(n, start + block)
    dist = _pairwise_distances(tokens[start * length:stop * length], tokens)
    mean_dist[start:stop] = dist.reshape(stop - start, length, n, length).mean(axis=(1, 3))
  return 1.0 / (1.0 + mean_dist)


def c_concat(prompts) -> np.ndarray:
  """`[N, N]` cosine similarity of the flattened prompts."""
  x = _as_prompts(prompts)
  unit = _unit_rows(x.reshape(x.shape[0], -1))
  return unit @ unit.T


def c_average(prompts) -> np.ndarray:
  """`[N, N]` mean cosine over all token pairs.

  `mean_ij cos(P_i, Q_j) = (mean_i P_i/|P_i|) . (mean_j Q_j/|Q_j|)`, so it costs one product.
  """
  x = _as_prompts(prompts)
  centroid = _unit_rows(x).mean(axis=1)
  return centroid @ centroid.T


def activated(activations) -> np.ndarray:
  """The binary "activated neuron" map: 1 where the value is > 0 (exact 0 is not activated)."""
  return np.asarray(activations) > 0


def overlap_of_activated_neurons(activations, layers: Optional[Sequence[int]] = None) -> np.ndarray:
  """ON: `[N, N]` cosine of the binarized activations `[N, layers, ...]` over `layers` (all if None).

  `|A & B| / sqrt(|A| |B|)`; a prompt with no activated neuron has ON 0 with every prompt.
  """
  a = np.asarray(activations)
  if a.ndim < 2:
    raise ValueError(f'activations must be [N, layers, ...], got shape {a.shape}')
  if layers is not None:
    a = a[:, list(layers)]
  binary = activated(a).reshape(a.shape[0], -1).astype(np.float64)
  shared = binary @ binary.T
  count = np.diag(shared)
  denom = np.sqrt(np.outer(count, count))
  return np.divide(shared, denom, out=np.zeros_like(shared), where=denom > 0)


_EMBEDDING_FUNCTIONS = {'E_concat': e_concat, 'E_average': e_average, 'C_concat': c_concat,
                        'C_average': c_average}


def embedding_similarity(name: str, prompts) -> np.ndarray:
  """One embedding indicator by name."""
  if name not in _EMBEDDING_FUNCTIONS:
    raise ValueError(f'unknown embedding indicator {name!r}; choose one of {", ".join(_EMBEDDING_FUNCTIONS)}')
  return _EMBEDDING_FUNCTIONS[name](prompts)


def similarity_matrices(prompts=None, activations=None,
                        names: Sequence[str] = INDICATORS) -> dict[str, np.ndarray]:
  """The requested indicators for the same `N` items; ON needs `activations`, the rest `prompts`."""
  out = {}
  for name in names:
    if name == 'ON':
      if activations is not None:
        out[name] = overlap_of_activated_neurons(activations)
    elif prompts is not None:
      out[name] = embedding_similarity(name, prompts)
  return out
