"""The activation file: an `.npz` streamed to disk chunk by chunk, readable by plain `np.load`.

Members: `activations` float32 `[N, layers, d_ff]`, `names` (unicode `[N]`), `layers` (int `[L]`,
the model layer index of each stored layer) and `meta` (a JSON string: model, stack, position,
kind, input). The activations member is written as a stream into the zip archive, so extracting
many prompts never holds them all in memory. Nothing is pickled.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from typing import Sequence

import numpy as np

from prompt_transfer_jax.files import atomic_write


@dataclasses.dataclass
class ActivationSet:
  names: list[str]
  activations: np.ndarray  # [N, layers, d_ff]
  layers: np.ndarray       # [layers] model layer indices
  meta: dict

  def select(self, names: Sequence[str]) -> np.ndarray:
    """Activations for `names`, in that order; one-line error for names not in the file."""
    index = {n: i for i, n in enumerate(self.names)}
    missing = [n for n in names if n not in index]
    if missing:
      raise KeyError(f'activations have no entry for {", ".join(missing)} '
                     f'(have: {", ".join(self.names)})')
    return self.activations[[index[n] for n in names]]


class ActivationWriter:
  """Writes `[N, layers, d_ff]` float32 in chunks along N into a new `.npz` (atomic on close)."""

  def __init__(self, path: str, names: Sequence[str], layers: Sequence[int], d_ff: int, meta: dict):
    self.path = path
    self.shape = (len(names), len(layers), int(d_ff))
    self._target = atomic_write(path, 'wb')      # renamed onto `path` only by close()
    self._zip = zipfile.ZipFile(self._target.__enter__(), 'w', zipfile.ZIP_STORED,
                                allowZip64=True)
    for key, value in (('names', np.asarray(list(names), dtype=str)),
                       ('layers', np.asarray(list(layers), np.int64)),
                       ('meta', np.asarray(json.dumps(meta, sort_keys=True)))):
      with self._zip.open(f'{key}.npy', 'w') as f:
        np.lib.format.write_array(f, value, allow_pickle=False)
    self._member = self._zip.open('activations.npy', 'w', force_zip64=True)
    np.lib.format.write_array_header_2_0(
        self._member, {'descr': '<f4', 'fortran_order': False, 'shape': self.shape})
    self.written = 0

  def write(self, chunk) -> None:
    chunk = np.ascontiguousarray(chunk, dtype='<f4')
    if chunk.shape[1:] != self.shape[1:] or self.written + chunk.shape[0] > self.shape[0]:
      raise ValueError(f'activation chunk shape {chunk.shape} does not fit file shape {self.shape} '
                       f'after {self.written} rows')
    self._member.write(chunk.tobytes())
    self.written += chunk.shape[0]

  def close(self) -> None:
    if self.written != self.shape[0]:
      self.abort()
      raise ValueError(f'{self.path}: wrote {self.written} of {self.shape[0]} rows')
    self._member.close()
    self._zip.close()
    self._target.__exit__(None, None, None)

  def abort(self) -> None:
    """Drops the partial file (nothing is left at `path` or beside it)."""
    self._member.close()
    self._zip.close()
    error = RuntimeError(f'{self.path}: writing aborted')
    self._target.__exit__(type(error), error, None)   # removes the temporary, re-raises nothing

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
    else:
      self.abort()


def save_activations(path: str, names: Sequence[str], activations, layers=None, meta=None) -> None:
  """Writes a whole in-memory `[N, layers, d_ff]` array in the streamed format."""
  a = np.asarray(activations, np.float32)
  if a.ndim != 3 or a.shape[0] != len(names):
    raise ValueError(f'activations must be [N={len(names)}, layers, d_ff], got shape {a.shape}')
  layers = range(a.shape[1]) if layers is None else layers
  with ActivationWriter(path, names, layers, a.shape[2], meta or {}) as w:
    w.write(a)


def load_activations(path: str) -> ActivationSet:
  """Reads an activation file written by `ActivationWriter` / `save_activations`."""
  try:
    data = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise FileNotFoundError(f'activation file not found: {path}') from None
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path}: not a readable activation .npz ({e})') from None
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise ValueError(f'{path}: expected an .npz archive, found a single array')
  with data:
    missing = {'activations', 'names'} - set(data.files)
    if missing:
      raise ValueError(f'{path}: missing member(s) {", ".join(sorted(missing))} '
                       f'(has {", ".join(data.files)})')
    acts = data['activations']
    names = [str(n) for n in data['names']]
    layers = data['layers'] if 'layers' in data.files else np.arange(acts.shape[1])
    meta = json.loads(str(data['meta'])) if 'meta' in data.files else {}
  if acts.ndim != 3 or acts.shape[0] != len(names) or len(layers) != acts.shape[1]:
    raise ValueError(f'{path}: activations shape {acts.shape} does not match {len(names)} names '
                     f'and {len(layers)} layers')
  return ActivationSet(names, acts, np.asarray(layers), meta)
