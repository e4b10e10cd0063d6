"""The generic lazy-array store under every checkpoint reader: where files are (`Location`:
local paths or tensorstore URLs), arrays read on demand (`LazyArray`), a decoded checkpoint
(`Checkpoint`) and nested-dict tree helpers. T5X msgpack (`t5x.py`) and Orbax (`orbax.py`)
readers both build on it, so neither imports the other's internals.
"""
from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
from typing import Any, Mapping, Optional

import numpy as np
import tensorstore as ts
import zstandard

ZARR_DEFAULTS = {'fill_value': None, 'filters': None, 'order': 'C', 'zarr_format': 2}
_ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
_GZIP_MAGIC = b'\x1f\x8b'


def one_line(text) -> str:
  return ' '.join(str(text).split())


@dataclasses.dataclass(frozen=True)
class Location:
  """A file or directory: a local path, or a URL read through tensorstore (gs://, file://)."""
  path: str

  @classmethod
  def of(cls, path) -> 'Location':
    path = os.fspath(path)
    if '://' not in path:
      path = os.path.abspath(os.path.expanduser(path))
    return cls(path.rstrip('/') if path != '/' else path)

  @property
  def is_url(self) -> bool:
    return '://' in self.path

  @property
  def name(self) -> str:
    return self.path.rsplit('/', 1)[-1]

  @property
  def parent(self) -> 'Location':
    return Location(self.path.rsplit('/', 1)[0])

  def join(self, *names: str) -> 'Location':
    return Location('/'.join([self.path, *(n.strip('/') for n in names)]))

  def kvstore(self) -> dict:
    """Tensorstore kvstore spec of this directory."""
    if self.is_url:
      return ts.KvStore.Spec(self.path + '/').to_json()
    return {'driver': 'file', 'path': self.path + '/'}

  def _parent_store(self):
    return ts.KvStore.open(self.parent.kvstore()).result()

  def is_file(self) -> bool:
    if not self.is_url:
      return os.path.isfile(self.path)
    return self._parent_store().read(self.name).result().state == 'value'

  def is_dir(self) -> bool:
    if not self.is_url:
      return os.path.isdir(self.path)
    return bool(ts.KvStore.open(self.kvstore()).result().list().result())

  def exists(self) -> bool:
    return self.is_file() or self.is_dir()

  def read_bytes(self) -> bytes:
    if not self.is_url:
      with open(self.path, 'rb') as f:
        return f.read()
    result = self._parent_store().read(self.name).result()
    if result.state != 'value':
      raise FileNotFoundError(f'no such file: {self.path}')
    return bytes(result.value)

  def children(self) -> list[str]:
    """Names of the entries directly inside this directory."""
    if not self.is_url:
      return sorted(os.listdir(self.path))
    keys = ts.KvStore.open(self.kvstore()).result().list().result()
    return sorted({k.decode().split('/', 1)[0] for k in keys})

  def __str__(self) -> str:
    return self.path


class LazyArray:
  """One zarr array of a checkpoint, opened and read on demand through tensorstore.

  `name` is the dotted array name (`target.encoder.layers_0.attention.query.kernel`),
  `kvstore` the store of its directory, `where` a human-readable location for errors and
  `metadata` the full zarr metadata to assume when the directory has no `.zarray` and
  `directory` the array's own directory when it is not inside an OCDBT store.
  """

  def __init__(self, name: str, kvstore: dict, where: str, metadata: Optional[dict] = None,
               driver: str = 'zarr', directory: Optional[Location] = None):
    self.name = name
    self.kvstore = kvstore
    self.where = where
    self.metadata = metadata
    self.driver = driver
    self.directory = directory
    self._store = None

  def __repr__(self):
    return f'LazyArray({self.name!r} at {self.where})'

  def open(self):
    if self._store is None:
      spec = {'driver': self.driver, 'kvstore': self.kvstore}
      stored_metadata = self.driver != 'zarr' or self._has_zarray()
      if not stored_metadata and self.metadata is None:
        raise ValueError(f'array {self.name} at {self.where} has no .zarray (an Orbax aggregate '
                         'leaf): supply its shape and dtype with LazyArray.assume')
      try:
        if stored_metadata:
          self._store = ts.open(spec, open=True).result()
        else:
          self._store = ts.open({**spec, 'metadata': self.metadata}, open=True,
                                assume_metadata=True).result()
      except ValueError as e:
        raise ValueError(f'cannot open array {self.name} at {self.where}: {one_line(e)}') from None
    return self._store

  def _has_zarray(self) -> bool:
    store = ts.KvStore.open(self.kvstore).result()
    return store.read('.zarray').result().state == 'value'

  @property
  def has_metadata(self) -> bool:
    """False for an Orbax aggregate leaf without `.zarray`: call `assume` before reading."""
    return self.metadata is not None or self._has_zarray()

  def assume(self, shape, dtype) -> None:
    """Supplies the shape and dtype of an array stored without `.zarray` (no-op otherwise)."""
    if self._has_zarray():
      return
    if self.directory is None:
      raise ValueError(f'array {self.name} at {self.where} has no .zarray')
    self.metadata = _zarr_metadata_for(self.directory, shape, dtype)
    self._store = None

  @property
  def shape(self) -> tuple[int, ...]:
    if self.metadata is not None and 'shape' in self.metadata:
      return tuple(self.metadata['shape'])
    return tuple(self.open().shape)

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(self.open().dtype.numpy_dtype)

  def read(self) -> np.ndarray:
    store = self.open()
    if store.dtype == ts.uint16:
      raise ValueError(f'array {self.name} at {self.where} is stored as uint16 (the T5X version-2 '
                       'bfloat16 workaround, unsupported by T5X too); re-save it as bfloat16')
    try:
      return np.asarray(store.read().result())
    except ValueError as e:
      chunk = self._failing_chunk(store)
      raise ValueError(f'array {self.name}: chunk file {chunk} is corrupt or truncated: '
                       f'{one_line(e)}') from None

  def _failing_chunk(self, store) -> str:
    """Reads chunk by chunk to name the first unreadable chunk file."""
    metadata = store.spec().to_json().get('metadata', {})
    sep = metadata.get('dimension_separator', '.')
    shape = store.shape
    chunks = store.chunk_layout.read_chunk.shape
    grids = [range(-(-s // c)) for s, c in zip(shape, chunks)]
    for index in itertools.product(*grids):
      region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape))
      try:
        store[region].read().result()
      except ValueError:
        return f"{self.where}/{sep.join(map(str, index)) if index else '0'}"
    return f'{self.where}/?'


def zarr_dtype(dtype) -> str:
  dtype = np.dtype(dtype)
  return dtype.name if dtype.name in ('bfloat16',) or dtype.kind == 'V' else dtype.str


def _zarr_metadata_for(where: Location, shape, dtype) -> dict:
  """Zarr metadata of an array directory without `.zarray`, from its known shape and dtype.

  The chunk grid comes from the chunk file names (`.`-separated, the zarr v2 default), the
  chunk shape from the grid (at most one split dimension; its extent from the decompressed
  size of the first chunk) and the compressor from the chunk's magic bytes.
  """
  shape = tuple(int(s) for s in shape)
  dtype = np.dtype(dtype)
  names = [n for n in where.children() if not n.startswith('.')] if where.is_dir() else []
  if not names:
    raise ValueError(f'array directory {where} has no chunk files and no .zarray')
  grid = [1] * len(shape)
  for n in names:
    for d, i in enumerate(n.split('.')[:len(shape)]):
      grid[d] = max(grid[d], int(i) + 1)
  raw = where.join(names[0]).read_bytes()
  if raw[:4] == _ZSTD_MAGIC:
    compressor, size = {'id': 'zstd', 'level': 1}, lambda: len(
        zstandard.ZstdDecompressor().decompressobj().decompress(raw))
  elif raw[:2] == _GZIP_MAGIC:
    compressor, size = {'id': 'gzip', 'level': 1}, lambda: len(gzip.decompress(raw))
  else:
    compressor, size = None, lambda: len(raw)
  split = [d for d, g in enumerate(grid) if g > 1]
  if len(split) > 1:
    raise ValueError(f'cannot infer the chunk shape of {where} (no .zarray, chunked along '
                     f'{len(split)} dimensions)')
  chunks = list(shape)
  if split:
    other = int(np.prod([s for d, s in enumerate(shape) if d != split[0]])) * dtype.itemsize
    chunks[split[0]] = size() // other
  return {'shape': list(shape), 'chunks': chunks, 'dtype': zarr_dtype(dtype),
          'compressor': compressor, 'dimension_separator': '.', **ZARR_DEFAULTS}


@dataclasses.dataclass
class Checkpoint:
  """A decoded checkpoint: the full state tree (leaves are arrays, `LazyArray`s, scalars,
  `None` or `{}`), where it came from, and the step directory's number if it has one."""
  tree: dict
  index: str
  step_hint: Optional[int] = None

  @property
  def target(self) -> dict:
    """The model parameters: `optimizer/target` (T5X), `_optimizer/target`, `target` or `params`."""
    tree = self.tree
    for key in ('optimizer', '_optimizer'):
      if isinstance(tree.get(key), dict):
        tree = tree[key]
        break
    for key in ('target', 'params'):
      if isinstance(tree.get(key), dict):
        return tree[key]
    raise ValueError(f'checkpoint {self.index} has no parameter tree (expected optimizer/target, '
                     f'target or params; top-level keys: {sorted(self.tree)})')

  @property
  def step(self) -> Optional[int]:
    """The stored training step (the step directory's number if it cannot be read)."""
    tree = self.tree.get('optimizer', self.tree.get('_optimizer', self.tree))
    step = tree.get('state', {}).get('step') if isinstance(tree.get('state'), dict) else None
    if isinstance(step, LazyArray):
      try:
        step = step.read()
      except ValueError:
        step = None
    if step is None or np.ndim(step) != 0:
      return self.step_hint
    return int(step)



def flatten(tree, prefix: tuple = ()) -> dict[tuple, Any]:
  """Nested dicts -> {path tuple: leaf}; empty dicts are dropped."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, prefix + (key,)))
    else:
      out[prefix + (key,)] = value
  return out


def unflatten(flat: Mapping[tuple, Any]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    node = out
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return out


def materialize(tree):
  """Reads every `LazyArray` of a tree (numpy arrays and other leaves are kept as they are)."""
  if isinstance(tree, dict):
    return {k: materialize(v) for k, v in tree.items()}
  if isinstance(tree, LazyArray):
    return tree.read()
  return tree


def shape_of(leaf) -> tuple[int, ...]:
  return tuple(np.shape(leaf)) if not isinstance(leaf, LazyArray) else leaf.shape
