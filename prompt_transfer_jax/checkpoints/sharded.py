"""Sharded restore: each process reads only the slices of each parameter its devices hold.

`open_t5(path)` checks a T5X / Orbax (tensorstore zarr, OCDBT, msgpack-inline leaves) or HF
safetensors checkpoint against its config from metadata alone; `ShardedCheckpoint.restore
(shardings)` then builds every global array with `jax.make_array_from_callback`, reading for each
leaf only the distinct index slices that this process's addressable devices hold (a replicated
leaf is read once per host, not once per device). Float slices are cast to the frozen dtype
block by block as they are read, so no host ever holds a float32 copy of a whole large parameter
(only blocks of at most `BLOCK_BYTES`). `ReadStats` counts the bytes read (the decoded slice
bytes delivered by tensorstore / safetensors) and the time, for a progress line and tests.

The unsharded readers (`checkpoints.load_t5`) stay the path for small models and tests.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Mapping, Optional

import jax
import ml_dtypes
import numpy as np
import tensorstore as ts
from safetensors import safe_open

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.checkpoints import hf_t5
from prompt_transfer_jax.checkpoints.store import LazyArray, Location, unflatten
from prompt_transfer_jax.config import T5Config

# Float slices are read and cast in blocks of at most this many source bytes (along axis 0).
BLOCK_BYTES = 4 << 20

_SAFETENSORS_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
                       'BF16': ml_dtypes.bfloat16, 'I64': np.int64, 'I32': np.int32}

Index = tuple[slice, ...]
Reader = Callable[[Index], np.ndarray]


@dataclasses.dataclass
class ReadStats:
  """Bytes and slices read by this process, and seconds spent reading (thread-safe)."""
  bytes_read: int = 0
  slices: int = 0
  seconds: float = 0.0
  _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

  def add(self, nbytes: int, seconds: float) -> None:
    with self._lock:
      self.bytes_read += int(nbytes)
      self.slices += 1
      self.seconds += seconds

  def line(self, total_bytes: int) -> str:
    rate = self.bytes_read / max(self.seconds, 1e-9) / 2**20
    return (f'process {jax.process_index()}: read {self.bytes_read / 2**20:.1f} MiB of '
            f'{total_bytes / 2**20:.1f} MiB ({self.slices} slices) in {self.seconds:.1f}s, '
            f'{rate:.0f} MiB/s')


@dataclasses.dataclass(frozen=True)
class Leaf:
  """One stored parameter: its shape, stored dtype and a reader of index slices."""
  shape: tuple[int, ...]
  dtype: np.dtype
  read: Reader
  where: str

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _full(shape) -> Index:
  return tuple(slice(0, s) for s in shape)


def _normalize(index: Index, shape) -> tuple[tuple[int, int], ...]:
  """Device indices (slices with None bounds) -> hashable (start, stop) pairs."""
  index = tuple(index) + (slice(None),) * (len(shape) - len(index))
  return tuple(s.indices(n)[:2] for s, n in zip(index, shape))


def _sliced_shape(index: Index) -> tuple[int, ...]:
  return tuple(s.stop - s.start for s in index)


def _is_float(dtype) -> bool:
  return np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16


def read_cast(leaf: Leaf, index: Index, dtype: Optional[np.dtype], stats: ReadStats) -> np.ndarray:
  """The slice `index` of `leaf` in `dtype` (floats only), read and cast block by block."""
  shape = _sliced_shape(index)
  target = np.dtype(dtype) if dtype is not None and _is_float(leaf.dtype) else leaf.dtype
  out = np.empty(shape, target)
  row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * leaf.dtype.itemsize if shape else 0
  rows = max(1, BLOCK_BYTES // max(row_bytes, 1)) if shape else 1
  start = time.perf_counter()
  if not shape:
    out[...] = leaf.read(index)
  else:
    first = index[0].start
    for lo in range(0, shape[0], rows):
      hi = min(lo + rows, shape[0])
      block = leaf.read((slice(first + lo, first + hi),) + index[1:])
      if block.shape != (hi - lo,) + shape[1:]:
        raise ValueError(f'{leaf.where}: read a slice of shape {block.shape}, expected '
                         f'{(hi - lo,) + shape[1:]}')
      out[lo:hi] = block   # casts this block only
  stats.add(int(np.prod(shape, dtype=np.int64)) * leaf.dtype.itemsize,
            time.perf_counter() - start)
  return out


def restore_leaf(leaf: Leaf, sharding, dtype, stats: ReadStats) -> jax.Array:
  """A global array with `sharding` from the distinct slices this process's devices hold."""
  indices = sharding.addressable_devices_indices_map(leaf.shape)
  slices: dict[tuple, np.ndarray] = {}
  for index in indices.values():
    key = _normalize(index, leaf.shape)
    if key not in slices:
      slices[key] = read_cast(leaf, tuple(slice(*k) for k in key), dtype, stats)
  return jax.make_array_from_callback(leaf.shape, sharding,
                                      lambda index: slices[_normalize(index, leaf.shape)])


# ---------------------------------------------------------------------------------------------
# Sources: T5X / Orbax (tensorstore), HF safetensors.


def _tensorstore_reader(leaf: LazyArray) -> Reader:
  def read(index):
    store = leaf.open()
    if store.dtype == ts.uint16:
      raise ValueError(f'array {leaf.name} at {leaf.where} is stored as uint16 (the T5X version-2 '
                       'bfloat16 workaround); re-save it as bfloat16')
    return np.asarray(store[index].read().result())
  return read


def _t5x_leaf(value, where: str) -> Leaf:
  if isinstance(value, LazyArray):
    return Leaf(value.shape, value.dtype, _tensorstore_reader(value), value.where)
  array = np.asarray(value)  # inline in the msgpack index: already in memory
  return Leaf(array.shape, array.dtype, lambda index: array[index], where)


def _transposed(read: Reader) -> Reader:
  return lambda index: read(index[::-1]).T


def _scaled(read: Reader, scale: float) -> Reader:
  def scaled(index):
    block = read(index)
    return block * np.asarray(scale, block.dtype)
  return scaled


def _safetensors_leaf(tensors, name: str) -> Leaf:
  file = tensors.files[name]
  with safe_open(file, framework='numpy') as f:
    view = f.get_slice(name)
    shape, dtype = tuple(view.get_shape()), view.get_dtype()
  if dtype not in _SAFETENSORS_DTYPES:
    raise ValueError(f'{file}: tensor {name} has unsupported dtype {dtype}')
  dtype = np.dtype(_SAFETENSORS_DTYPES[dtype])

  def read(index):
    with safe_open(file, framework='numpy') as f:
      return np.asarray(f.get_slice(name)[index])
  return Leaf(shape, dtype, read, f'{file}:{name}')


def _equal_by_blocks(a: Leaf, b: Leaf) -> bool:
  """Whether two stored tensors are equal, comparing block by block (stops at the first
  difference, so an untied head costs one block)."""
  if a.shape != b.shape:
    return False
  rows = max(1, BLOCK_BYTES // max(a.nbytes // max(a.shape[0], 1), 1))
  for lo in range(0, a.shape[0], rows):
    index = (slice(lo, min(lo + rows, a.shape[0])),) + _full(a.shape[1:])
    if not np.array_equal(a.read(index), b.read(index)):
      return False
  return True


def _hf_leaves(directory: str, given: Optional[T5Config]) -> tuple[T5Config, dict]:
  """The HF name table as slice readers: kernels are read transposed, slice by slice."""
  hf, config, tensors, table = hf_t5.hf_layout(directory)
  leaves = {}
  for name, path, transpose in table:
    leaf = _safetensors_leaf(tensors, name)
    if transpose:
      leaf = Leaf(leaf.shape[::-1], leaf.dtype, _transposed(leaf.read), leaf.where)
    leaves[path] = leaf
  embedding = _safetensors_leaf(tensors, table[0][0])
  head = _safetensors_leaf(tensors, hf_t5.LM_HEAD) if hf_t5.LM_HEAD in tensors else None
  untied = (head is not None and hf_t5.untied_head_allowed(hf) and
            not _equal_by_blocks(head, embedding))
  scale = hf_t5._scales_logits(hf)  # pylint: disable=protected-access
  config = config.replace(logits_via_embedding=scale and not untied)
  if not config.logits_via_embedding:
    source = head if untied else embedding
    read = _transposed(source.read)
    if scale:
      read = _scaled(read, config.emb_dim ** -0.5)
    leaves[('decoder', 'logits_dense', 'kernel')] = Leaf(source.shape[::-1], source.dtype, read,
                                                         source.where)
  if given is not None:
    config = given
  checkpoints.validate_params({p: leaf.shape for p, leaf in leaves.items()}, config, directory,
                              'the given config' if given is not None else hf_t5.CONFIG_FILE)
  return config, leaves


# ---------------------------------------------------------------------------------------------
# Entry point.


@dataclasses.dataclass
class ShardedCheckpoint:
  """A checked checkpoint whose parameters are read slice by slice onto a mesh."""
  config: T5Config
  leaves: Mapping[tuple, Leaf]
  source: str
  stats: ReadStats = dataclasses.field(default_factory=ReadStats)

  @property
  def total_bytes(self) -> int:
    return sum(leaf.nbytes for leaf in self.leaves.values())

  def restore(self, shardings, dtype=None, log: Callable[[str], None] = logging.info) -> dict:
    """The parameter tree as global arrays with `shardings` (a tree of shardings matching the
    parameters); floats cast to `dtype` (default: the config's `param_dtype`) at read."""
    dtype = np.dtype(jax.numpy.dtype(dtype or self.config.param_dtype))
    flat = {tuple(getattr(k, 'key', k) for k in path): s for path, s in
            jax.tree_util.tree_flatten_with_path(shardings)[0]}
    if set(flat) != set(self.leaves):
      missing = sorted(set(self.leaves) ^ set(flat))[:4]
      raise ValueError(f'{self.source}: shardings do not match the parameters (e.g. {missing})')
    out = {}
    for i, (path, sharding) in enumerate(sorted(flat.items())):
      out[path] = restore_leaf(self.leaves[path], sharding, dtype, self.stats)
      if (i + 1) % 50 == 0:
        log(self.stats.line(self.total_bytes))
    log(self.stats.line(self.total_bytes))
    return unflatten(out)

  def read(self, path: tuple, dtype=None) -> np.ndarray:
    """One whole parameter on the host (e.g. the embedding for a class-label prompt init)."""
    leaf = self.leaves[path]
    return read_cast(leaf, _full(leaf.shape), dtype, self.stats)


def open_t5(path, config: Optional[Any] = None, dtype=None) -> ShardedCheckpoint:
  """A T5X / Orbax checkpoint or HF T5 directory, checked against `config` (a T5Config, a preset
  name or None to infer it) from metadata alone; `dtype` sets the config's `param_dtype`."""
  given, given_name = checkpoints._resolve_config(config)  # pylint: disable=protected-access
  location = Location.of(os.fspath(path))
  if not location.exists():
    raise FileNotFoundError(f'checkpoint path does not exist: {location}')
  if not location.is_url and os.path.isfile(os.path.join(location.path, hf_t5.CONFIG_FILE)):
    cfg, leaves = _hf_leaves(location.path, given)
  else:
    cfg, stored = checkpoints.t5x_leaves(location, given, given_name)
    leaves = {p: _t5x_leaf(v, f'{location}:{"/".join(p)}') for p, v in stored.items()}
  if dtype is not None:
    cfg = cfg.replace(param_dtype=jax.numpy.dtype(dtype).name)
  return ShardedCheckpoint(cfg, leaves, str(location))
