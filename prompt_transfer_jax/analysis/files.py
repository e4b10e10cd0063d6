"""Small numpy-only file helpers of the analysis: atomic writes and prompt directories.

`models.prompt.load_prompt` reads the same `.npy` format but imports JAX; the analysis CLI reads
prompts without it to stay fast.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np


def atomic_path(path: str) -> str:
  """A temporary sibling name for `path`; write there, then `os.replace` onto `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  return os.path.join(directory, f'.{os.path.basename(path)}.tmp-{os.getpid()}')


def write_json(path: str, data) -> None:
  tmp = atomic_path(path)
  with open(tmp, 'w') as f:
    json.dump(data, f, indent=1, allow_nan=False)
    f.write('\n')
  os.replace(tmp, path)


def save_npy(path: str, array) -> None:
  tmp = atomic_path(path)
  with open(tmp, 'wb') as f:
    np.save(f, np.asarray(array), allow_pickle=False)
  os.replace(tmp, path)


def read_prompt(path: str) -> np.ndarray:
  """A 2-D float32 `[P, E]` prompt from `.npy` (never unpickled)."""
  try:
    value = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise FileNotFoundError(f'prompt file not found: {path}') from None
  except ValueError as e:
    raise ValueError(f'{path}: not a readable .npy prompt ({e})') from None
  if not isinstance(value, np.ndarray) or value.ndim != 2:
    raise ValueError(f'{path}: a prompt must be a 2-D [P, E] array, got shape {getattr(value, "shape", None)}')
  return value.astype(np.float32)


def list_prompts(directory: str) -> list[str]:
  """Names `NAME` of the `NAME.npy` files in `directory`, sorted."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'prompt directory not found: {directory}')
  return sorted(f[:-4] for f in os.listdir(directory) if f.endswith('.npy'))


def read_prompt_dir(directory: str, names: Optional[Sequence[str]] = None) -> tuple[list[str], np.ndarray]:
  """Stacks `DIR/NAME.npy` for `names` (all files if None) into `[N, P, E]`; shapes must agree."""
  available = list_prompts(directory)
  names = list(available if names is None else names)
  missing = [n for n in names if n not in available]
  if missing:
    raise FileNotFoundError(f'{directory}: no prompt file for {", ".join(missing)} '
                            f'(have: {", ".join(available) or "none"})')
  if not names:
    raise ValueError(f'{directory}: no .npy prompts')
  prompts = [read_prompt(os.path.join(directory, f'{n}.npy')) for n in names]
  for name, p in zip(names, prompts):
    if p.shape != prompts[0].shape:
      raise ValueError(f'{directory}: prompt {name} has shape {p.shape}, but {names[0]} has '
                       f'{prompts[0].shape}; all prompts must have the same shape')
  return names, np.stack(prompts)
