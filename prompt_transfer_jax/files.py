"""File helpers every layer shares (numpy only, no JAX): atomic writes, JSON, prompt files.

Writes go to a temporary sibling and are renamed onto the target only when complete, so a
crash or a full disk never leaves a half-written file; the temporary is removed on failure.
Prompts are `.npy` files read without unpickling; URLs (gs://...) go through tf.io.gfile.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Iterator, Optional, Sequence

import numpy as np


def _is_url(path: str) -> bool:
  return '://' in str(path)


def _gfile():
  import tensorflow as tf  # only for remote paths (gs://)
  return tf.io.gfile


def atomic_path(path: str) -> str:
  """A temporary sibling name for `path` (its directory is created)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  return os.path.join(directory, f'.{os.path.basename(path)}.tmp-{os.getpid()}')


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w') -> Iterator:
  """`with atomic_write(p, 'wb') as f:` writes `p` all or nothing; no temporary survives."""
  path = os.fspath(path)
  if _is_url(path):
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
      with _gfile().GFile(tmp, mode) as f:
        yield f
      _gfile().rename(tmp, path, overwrite=True)
    finally:
      if _gfile().exists(tmp):
        _gfile().remove(tmp)
    return
  tmp = atomic_path(path)
  try:
    with open(tmp, mode) as f:
      yield f
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
  """`with atomic_dir(d) as tmp:` fill `tmp`; it replaces `d` (which must not exist or be empty)
  only when the block succeeds, and is removed otherwise."""
  path = os.path.abspath(os.fspath(path))
  tmp = atomic_path(path)
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    yield tmp
    if os.path.isdir(path) and not os.listdir(path):
      os.rmdir(path)
    os.replace(tmp, path)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str, data) -> None:
  with atomic_write(path) as f:
    json.dump(data, f, indent=1, allow_nan=False)
    f.write('\n')


def read_json(path: str, what: str = 'JSON file'):
  """Parsed JSON; a missing or malformed file is a one-line error naming it."""
  try:
    with (_gfile().GFile(path) if _is_url(path) else open(path)) as f:
      return json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'{what} not found: {path}') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: not a valid {what} ({e})') from None


def save_npy(path: str, array) -> None:
  with atomic_write(path, 'wb') as f:
    np.save(f, np.asarray(array), allow_pickle=False)


def save_prompt(path: str, prompt) -> None:
  """Writes a float32 `[P, E]` prompt as `.npy`, atomically."""
  save_npy(path, np.asarray(prompt, np.float32))


def check_prompt(value, where: str, shape: Optional[tuple] = None) -> np.ndarray:
  """`value` as float32 `[P, E]` if it is a non-empty 2-D array of finite real floats (of
  `shape` when given); otherwise a one-line error naming `where`. All-zero rows are allowed (the
  `zeros` baseline prompt)."""
  if not isinstance(value, np.ndarray):
    raise ValueError(f'{where}: a prompt must be an array, got {type(value).__name__}')
  if value.dtype.kind != 'f':
    raise ValueError(f'{where}: a prompt must hold real floating-point numbers, got dtype '
                     f'{value.dtype}')
  if value.ndim != 2:
    raise ValueError(f'{where}: a prompt must be a 2-D [P, E] array, got shape {value.shape}')
  if value.size == 0:
    raise ValueError(f'{where}: the prompt is empty (shape {value.shape})')
  if shape is not None and tuple(value.shape) != tuple(shape):
    raise ValueError(f'{where}: prompt has shape {tuple(value.shape)}, expected {tuple(shape)}')
  bad = ~np.isfinite(value)
  if bad.any():
    row = int(np.argwhere(bad)[0][0])
    raise ValueError(f'{where}: the prompt holds {int(bad.sum())} NaN/Inf values (first in row '
                     f'{row})')
  return value.astype(np.float32)


def read_prompt(path: str, shape: Optional[tuple] = None) -> np.ndarray:
  """A 2-D float32 `[P, E]` prompt from `.npy` (local or URL; never unpickled), checked by
  `check_prompt` (finite real floats, non-empty, of `shape` when given)."""
  path = os.fspath(path)
  try:
    with (_gfile().GFile(path, 'rb') if _is_url(path) else open(path, 'rb')) as f:
      value = np.load(f, allow_pickle=False)
  except FileNotFoundError:
    raise FileNotFoundError(f'prompt file not found: {path}') from None
  except IsADirectoryError:
    raise ValueError(f'{path}: is a directory, expected a .npy prompt file') from None
  except (ValueError, EOFError, OSError) as e:
    raise ValueError(f'{path}: not a readable .npy prompt ({" ".join(str(e).split())})') from None
  return check_prompt(value, path, shape)


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
