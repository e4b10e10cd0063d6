"""Reads T5X checkpoints without T5X: the msgpack `checkpoint` index and its tensorstore leaves.

Covered layouts (see the T5X notes, section 3):
- a step directory (`checkpoint_<N>/checkpoint` + zarr-v2 directories, gzip or zstd), a
  single-file checkpoint (all arrays inline), or a model directory (the latest `checkpoint_<N>`
  or `<N>`, `*.tmp-*` ignored);
- the older Orbax "aggregate" flavour (`PLACEHOLDER://<name>` leaves, possibly without
  `.zarray`: then `LazyArray.assume(shape, dtype)` supplies them), also under `state/`;
- the newer Orbax OCDBT flavour (`state/_METADATA`, `manifest.ocdbt`), via `orbax.py`.

Paths are local paths or URLs (`gs://bucket/dir`, `file:///dir`); URLs go through tensorstore
key-value stores, so GCS needs no TensorFlow. Array leaves are `LazyArray`s until read, which
lets callers check shapes (or read one variable) before touching the data.
"""
from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
import re
from typing import Any, Mapping, Optional

import ml_dtypes
import msgpack
import numpy as np
import tensorstore as ts
import zstandard

from prompt_transfer_jax.checkpoints import remote
from prompt_transfer_jax.config import T5_PRESETS, T5Config

INDEX_FILE = 'checkpoint'
PLACEHOLDER = 'PLACEHOLDER://'
MIN_VERSION = 2
MAX_VERSION = 3
_STEP_DIR = re.compile(r'^(?:checkpoint_)?(\d+)$')
_CHUNKED = '__msgpack_chunked_array__'
_ZARR_DEFAULTS = {'fill_value': None, 'filters': None, 'order': 'C', 'zarr_format': 2}
_ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
_GZIP_MAGIC = b'\x1f\x8b'


def _one_line(text) -> str:
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
        raise ValueError(f'cannot open array {self.name} at {self.where}: {_one_line(e)}') from None
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
                       f'{_one_line(e)}') from None

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


def _zarr_dtype(dtype) -> str:
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
  return {'shape': list(shape), 'chunks': chunks, 'dtype': _zarr_dtype(dtype),
          'compressor': compressor, 'dimension_separator': '.', **_ZARR_DEFAULTS}


# ---------------------------------------------------------------------------------------------
# msgpack index (Flax serialization format).


def _dtype_from_name(name) -> np.dtype:
  name = name.decode() if isinstance(name, bytes) else name
  if hasattr(ml_dtypes, name):  # bfloat16, float8_*, int4, ...
    return np.dtype(getattr(ml_dtypes, name))
  return np.dtype(name)


def _ext_hook(code: int, data: bytes):
  """Flax msgpack extension types: 1 ndarray, 2 complex, 3 numpy scalar, 4 tuple (Orbax)."""
  if code in (1, 3):
    shape, dtype, buffer = msgpack.unpackb(data, raw=True)
    array = np.frombuffer(buffer, dtype=_dtype_from_name(dtype)).reshape(shape, order='C')
    return array if code == 1 else array[()]
  if code == 2:
    real, imag = msgpack.unpackb(data)
    return complex(real, imag)
  if code == 4:
    return tuple(_unpack(data))
  raise ValueError(f'unknown msgpack extension type {code}')


def _unpack(data: bytes):
  return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def _is_ts_spec(value) -> bool:
  return isinstance(value, dict) and 'driver' in value and ('kvstore' in value or 'path' in value)


def _unchunk(value: dict) -> np.ndarray:
  shape = tuple(value['shape'][str(i)] for i in range(len(value['shape'])))
  parts = [value['chunks'][str(i)] for i in range(len(value['chunks']))]
  return np.concatenate([np.ravel(p) for p in parts]).reshape(shape)


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


def _decode_tree(value, name: str, base: Location, ocdbt_base):
  if isinstance(value, dict):
    if value.get(_CHUNKED):
      return _unchunk(value)
    if _is_ts_spec(value):
      return _leaf_from_spec(value, name, base, ocdbt_base)
    return {k: _decode_tree(v, f'{name}.{k}' if name else str(k), base, ocdbt_base)
            for k, v in value.items()}
  if isinstance(value, str) and value.startswith(PLACEHOLDER):
    return _placeholder_leaf(value[len(PLACEHOLDER):], base, ocdbt_base)
  return value


def _leaf_from_spec(spec: dict, name: str, base: Location, ocdbt_base) -> LazyArray:
  """A tensorstore spec as T5X stores it; its kvstore path is taken relative to the step dir."""
  kvstore = spec.get('kvstore', {})
  stored_path = (kvstore.get('path') if isinstance(kvstore, dict) else None) or spec.get('path', '')
  dir_name = stored_path.rstrip('/').rsplit('/', 1)[-1] or name
  metadata = dict(spec.get('metadata', {}))
  if 'dtype' not in metadata and 'dtype' in spec:
    metadata['dtype'] = _zarr_dtype(_dtype_from_name(spec['dtype']))
  full = {**_ZARR_DEFAULTS, **metadata} if {'shape', 'chunks', 'dtype'} <= metadata.keys() else None
  if full is not None and 'compressor' not in full:
    full['compressor'] = None
  if ocdbt_base is not None:
    from prompt_transfer_jax.checkpoints import orbax  # pylint: disable=import-outside-toplevel
    return orbax.ocdbt_array(ocdbt_base, dir_name, full)
  where = base.join(dir_name)
  return LazyArray(name, where.kvstore(), str(where), full, directory=where)


def _placeholder_leaf(array_name: str, base: Location, ocdbt_base) -> LazyArray:
  """An Orbax aggregate leaf; without `.zarray` its shape must be supplied (`assume`)."""
  if ocdbt_base is not None:
    from prompt_transfer_jax.checkpoints import orbax  # pylint: disable=import-outside-toplevel
    return orbax.ocdbt_array(ocdbt_base, array_name, None)
  where = base.join(array_name)
  return LazyArray(array_name, where.kvstore(), str(where), directory=where)


def read_index(file: Location, step_hint: Optional[int] = None) -> Checkpoint:
  """Decodes a msgpack `checkpoint` file; arrays stay lazy."""
  try:
    raw = _unpack(file.read_bytes())
  except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, ValueError,
          msgpack.exceptions.StackError, UnicodeDecodeError) as e:
    raise ValueError(f'{file} is not a msgpack T5X checkpoint: {_one_line(e)}') from None
  if not isinstance(raw, dict):
    raise ValueError(f'{file} is not a T5X checkpoint: its top level is a '
                     f'{type(raw).__name__}, not a map')
  if 'version' in raw:
    version = raw['version']
    if not isinstance(version, (int, np.integer)) or not MIN_VERSION <= version <= MAX_VERSION:
      raise ValueError(f'T5X checkpoint {file} has version {version}; only versions '
                       f'{MIN_VERSION}-{MAX_VERSION} are supported (versions < 2 predate the '
                       'optimizer/target layout)')
  base = file.parent
  from prompt_transfer_jax.checkpoints import orbax  # pylint: disable=import-outside-toplevel
  ocdbt_base = base if orbax.is_ocdbt_dir(base) else None
  tree = _decode_tree(raw, '', base, ocdbt_base)
  return Checkpoint(tree, str(file), step_hint)


# ---------------------------------------------------------------------------------------------
# Path resolution.


def _latest_step_dir(model_dir: Location) -> Optional[Location]:
  steps = []
  for name in model_dir.children():
    match = _STEP_DIR.match(name)
    if match:
      steps.append((int(match.group(1)), name))
  return model_dir.join(max(steps)[1]) if steps else None


def _step_of(loc: Location) -> Optional[int]:
  match = _STEP_DIR.match(loc.name)
  return int(match.group(1)) if match else None


def open_checkpoint(path) -> Checkpoint:
  """Opens a T5X / Orbax checkpoint given a model dir, step dir or the msgpack file itself."""
  from prompt_transfer_jax.checkpoints import orbax  # pylint: disable=import-outside-toplevel
  loc = Location.of(path)
  remote.reachable(loc.path, loc.exists)
  if loc.is_file():
    return read_index(loc, _step_of(loc.parent))
  if not loc.is_dir():
    raise FileNotFoundError(f'checkpoint path does not exist: {loc}')
  for candidate in (loc, _latest_step_dir(loc)):
    if candidate is None:
      continue
    step = _step_of(candidate)
    for item in (candidate, candidate.join('state')):
      if item.join(INDEX_FILE).is_file():
        return read_index(item.join(INDEX_FILE), step)
      if orbax.is_orbax_item_dir(item):
        return orbax.read_orbax_index(item, step)
  raise FileNotFoundError(f'no T5X checkpoint in {loc}: expected a `checkpoint` file, an Orbax '
                          '`_METADATA`, or checkpoint_<step> subdirectories')


# ---------------------------------------------------------------------------------------------
# Trees.


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


def read_t5x_checkpoint(path):
  """Returns `(params, step)`: the `target` tree as nested dicts of numpy arrays and the step."""
  ckpt = open_checkpoint(path)
  params = {k: v for k, v in flatten(ckpt.target).items() if v is not None}
  return unflatten({k: np.asarray(materialize(v)) for k, v in params.items()}), ckpt.step


def _split_name(name: str) -> tuple[str, ...]:
  return tuple(p for p in re.split(r'[/.]', name) if p)


def read_t5x_variable(path, name: str) -> np.ndarray:
  """Reads one array, e.g. `token_embedder/embedding` or `encoder.prompt.prompt.prompt`.

  The name is looked up in the parameter tree first, then in the whole state (so
  `target/...` and `state/param_states/...` work too); only that array's data is read.
  """
  ckpt = open_checkpoint(path)
  key = _split_name(name)
  for tree in (ckpt.target, ckpt.tree, ckpt.tree.get('optimizer', {})):
    node = tree
    for part in key:
      node = node.get(part) if isinstance(node, dict) else None
    if node is not None and not isinstance(node, dict):
      return np.asarray(materialize(node))
  known = ', '.join('/'.join(map(str, p)) for p in sorted(flatten(ckpt.target)))
  raise ValueError(f'variable {name!r} not found in {ckpt.index}; parameters: {known}')


# ---------------------------------------------------------------------------------------------
# Config inference.


def shape_of(leaf) -> tuple[int, ...]:
  return tuple(np.shape(leaf)) if not isinstance(leaf, LazyArray) else leaf.shape


def infer_t5_config(params: Mapping, where: str = 'checkpoint') -> T5Config:
  """Infers a `T5Config` from the shapes of a T5X parameter tree (T5X stores no config).

  vocab and d_model from `token_embedder/embedding`; heads and buckets from
  `encoder/relpos_bias/rel_embedding`; head_dim from the first query kernel; d_ff and the MLP
  kind from `mlp/wi` (ReLU, T5 1.0) or `mlp/wi_0`+`wi_1` (gated GELU, T5 1.1: the activation
  itself is not stored, so gated-SiLU models need an explicit config); layer counts from the
  `layers_<N>` entries; tied logits iff `decoder/logits_dense` is absent. The relative-attention
  max distance is not stored either: it is 128 unless a preset has exactly these shapes, in
  which case the preset's value is used (e.g. 8 for `t5_1_1_tiny`).
  """
  shapes = {k: shape_of(v) for k, v in flatten(params).items() if v is not None}

  def get(*path):
    if path not in shapes:
      raise ValueError(f'cannot infer the T5 config of {where}: parameter {"/".join(path)} is '
                       'missing; pass config= (a T5Config or preset name)')
    return shapes[path]

  vocab, emb = get('token_embedder', 'embedding')
  heads, buckets = get('encoder', 'relpos_bias', 'rel_embedding')
  joined = get('encoder', 'layers_0', 'attention', 'query', 'kernel')[1]
  if joined % heads:
    raise ValueError(f'cannot infer the T5 config of {where}: query width {joined} is not a '
                     f'multiple of {heads} heads')
  gated = ('encoder', 'layers_0', 'mlp', 'wi_0', 'kernel') in shapes
  mlp = get('encoder', 'layers_0', 'mlp', 'wi_0' if gated else 'wi', 'kernel')[1]

  def count(stack):
    return len({k[1] for k in shapes
                if len(k) > 1 and k[0] == stack and re.fullmatch(r'layers_\d+', k[1])})

  fields = dict(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=joined // heads,
                mlp_dim=mlp, num_encoder_layers=count('encoder'),
                num_decoder_layers=count('decoder'),
                mlp_activations=('gelu', 'linear') if gated else ('relu',),
                logits_via_embedding=('decoder', 'logits_dense', 'kernel') not in shapes,
                relative_attention_num_buckets=buckets)
  config = T5Config(**fields)
  for preset in T5_PRESETS.values():
    if all(getattr(preset, k) == v for k, v in fields.items()):
      return config.replace(relative_attention_max_distance=preset.relative_attention_max_distance)
  return config
