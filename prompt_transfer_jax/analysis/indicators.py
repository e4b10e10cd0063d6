"""The paper's transferability indicators (Su et al. 2022, section 5), as pairwise matrices.

For prompts `P, Q` of shape `[l, d]` (all rows, the RoBERTa `<mask>` row 0 included):

* `E_concat  = 1 / (1 + ||vec(P) - vec(Q)||)`
* `E_average = 1 / (1 + mean over all l x l token pairs (i, j) of ||P_i - Q_j||)`
* `C_concat  = cos(vec(P), vec(Q))`
* `C_average = mean over all l x l token pairs (i, j) of cos(P_i, Q_j)`
* `ON        = cos(1[a_P > 0], 1[a_Q > 0])` on FFN activations flattened over the chosen layers;
  an exact 0 is not activated.

Every function takes a stack of `N` items (and optionally `M` others) and returns the `[N, N]`
(`[N, M]`) matrix with a few matrix products (float64), never a Python loop over pairs. Cosines
with a zero vector are 0 (norms are clamped at `EPS`, as `torch.nn.functional.cosine_similarity`
does). Prompts and activations must be finite. `prompt_warnings` flags what makes the numbers
meaningless without making them fail: identical prompts, prompts that never left their init.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

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
  _check_finite(x, 'prompts')
  return x


def _check_finite(x: np.ndarray, what: str) -> None:
  bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
  if bad.any():
    raise ValueError(f'{what} {", ".join(map(str, np.flatnonzero(bad)[:5]))} (by position) hold '
                     'NaN/Inf values; indicators of non-finite inputs are meaningless')


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distances between the rows of `a` [n, d] and `b` [m, d] (Gram form, float64)."""
  sq = (np.einsum('ij,ij->i', a, a)[:, None] + np.einsum('ij,ij->i', b, b)[None, :]
        - 2.0 * (a @ b.T))
  return np.sqrt(np.maximum(sq, 0.0))


def _unit_rows(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)


def _pair(prompts, others):
  x = _as_prompts(prompts)
  y = x if others is None else _as_prompts(others)
  if x.shape[1:] != y.shape[1:]:
    raise ValueError(f'prompt shapes differ: {x.shape[1:]} vs {y.shape[1:]}')
  return x, y


def e_concat(prompts, others=None) -> np.ndarray:
  """`[N, M]` Euclidean similarity of the flattened prompts (`others` defaults to `prompts`)."""
  x, y = _pair(prompts, others)
  dist = _pairwise_distances(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1))
  if others is None:
    np.fill_diagonal(dist, 0.0)
  return 1.0 / (1.0 + dist)


def e_average(prompts, others=None) -> np.ndarray:
  """`[N, M]` Euclidean similarity of the mean distance over all token pairs.

  The `l` tokens of a block of prompts are compared with all `M*l` tokens of `others` at once;
  blocks bound the float64 scratch memory to about `_BLOCK_BYTES`.
  """
  x, y = _pair(prompts, others)
  n, length, dim = x.shape
  m = y.shape[0]
  tokens = y.reshape(m * length, dim)
  block = max(1, _BLOCK_BYTES // (8 * length * length * m))
  mean_dist = np.empty((n, m))
  for start in range(0, n, block):
    stop = min(n, start + block)
    dist = _pairwise_distances(x[start:stop].reshape(-1, dim), tokens)
    mean_dist[start:stop] = dist.reshape(stop - start, length, m, length).mean(axis=(1, 3))
  return 1.0 / (1.0 + mean_dist)


def c_concat(prompts, others=None) -> np.ndarray:
  """`[N, M]` cosine similarity of the flattened prompts."""
  x, y = _pair(prompts, others)
  return _unit_rows(x.reshape(x.shape[0], -1)) @ _unit_rows(y.reshape(y.shape[0], -1)).T


def c_average(prompts, others=None) -> np.ndarray:
  """`[N, M]` mean cosine over all token pairs.

  `mean_ij cos(P_i, Q_j) = (mean_i P_i/|P_i|) . (mean_j Q_j/|Q_j|)`, so it costs one product.
  """
  x, y = _pair(prompts, others)
  return _unit_rows(x).mean(axis=1) @ _unit_rows(y).mean(axis=1).T


def activated(activations) -> np.ndarray:
  """The binary "activated neuron" map: 1 where the value is > 0 (exact 0 is not activated)."""
  return np.asarray(activations) > 0


def _binary_rows(activations, layers) -> np.ndarray:
  a = np.asarray(activations)
  if a.ndim < 2:
    raise ValueError(f'activations must be [N, layers, ...], got shape {a.shape}')
  if layers is not None:
    a = a[:, list(layers)]
  _check_finite(np.asarray(a, np.float64), 'activations of prompts')
  # float32 counts are exact below 2**24 neurons and halve the memory of float64.
  return activated(a).reshape(a.shape[0], -1).astype(np.float32)


def overlap_of_activated_neurons(activations, layers: Optional[Sequence[int]] = None,
                                 others=None) -> np.ndarray:
  """ON: `[N, M]` cosine of the binarized activations `[N, layers, ...]` over `layers` (all if None).

  `|A & B| / sqrt(|A| |B|)`; a prompt with no activated neuron has ON 0 with every prompt.
  """
  bx = _binary_rows(activations, layers)
  by = bx if others is None else _binary_rows(others, layers)
  if bx.shape[1] != by.shape[1]:
    raise ValueError(f'activation sizes differ: {bx.shape[1]} vs {by.shape[1]} neurons')
  if bx.shape[1] >= 1 << 24:
    raise ValueError(f'{bx.shape[1]} neurons per prompt is too many for exact float32 counts')
  shared = (bx @ by.T).astype(np.float64)
  denom = np.sqrt(np.outer(bx.sum(axis=1, dtype=np.float64), by.sum(axis=1, dtype=np.float64)))
  return np.divide(shared, denom, out=np.zeros_like(shared), where=denom > 0)


_EMBEDDING_FUNCTIONS = {'E_concat': e_concat, 'E_average': e_average, 'C_concat': c_concat,
                        'C_average': c_average}


def embedding_similarity(name: str, prompts, others=None) -> np.ndarray:
  """One embedding indicator by name: `[N, M]` (`others` defaults to `prompts`)."""
  if name not in _EMBEDDING_FUNCTIONS:
    raise ValueError(f'unknown embedding indicator {name!r}; choose one of {", ".join(_EMBEDDING_FUNCTIONS)}')
  return _EMBEDDING_FUNCTIONS[name](prompts, others)


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


def prompt_warnings(names: Sequence[str], prompts,
                    initial: Union[None, np.ndarray, Mapping[str, np.ndarray]] = None) -> list[str]:
  """Warnings for prompts that make the indicators meaningless: byte-identical prompts (ON = 1,
  every similarity maximal) and prompts equal to their initialization (`initial`: one `[P, E]`
  prompt for all, or `{name: [P, E]}`; None = unknown)."""
  x = np.asarray(prompts)
  warnings = []
  groups: dict[bytes, list[str]] = {}
  for name, prompt in zip(names, x):
    groups.setdefault(np.ascontiguousarray(prompt).tobytes(), []).append(str(name))
  for group in groups.values():
    if len(group) > 1:
      warnings.append(f'identical prompts: {", ".join(group)} (their indicators and transfer '
                      'are not comparable)')
  if initial is not None:
    stale = [str(n) for n, p in zip(names, x)
             if (init := initial.get(n) if isinstance(initial, Mapping) else initial) is not None
             and np.shape(init) == p.shape and np.array_equal(np.asarray(init, p.dtype), p)]
    if stale:
      warnings.append(f'prompts that never left their initialization: {", ".join(stale)} '
                      '(not trained; check the learning rate and steps)')
  return warnings
