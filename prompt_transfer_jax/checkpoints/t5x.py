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

import re
from typing import Mapping, Optional

import ml_dtypes
import msgpack
import numpy as np

from prompt_transfer_jax.checkpoints import remote
from prompt_transfer_jax.checkpoints import orbax
from prompt_transfer_jax.checkpoints.store import (ZARR_DEFAULTS, Checkpoint, LazyArray,  # noqa: F401
                                                   Location, flatten, materialize, one_line,
                                                   shape_of, unflatten, zarr_dtype)
from prompt_transfer_jax.config import T5_PRESETS, T5Config

INDEX_FILE = 'checkpoint'
PLACEHOLDER = 'PLACEHOLDER://'
MIN_VERSION = 2
MAX_VERSION = 3
_STEP_DIR = re.compile(r'^(?:checkpoint_)?(\d+)$')
_CHUNKED = '__msgpack_chunked_array__'


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
    metadata['dtype'] = zarr_dtype(_dtype_from_name(spec['dtype']))
  full = {**ZARR_DEFAULTS, **metadata} if {'shape', 'chunks', 'dtype'} <= metadata.keys() else None
  if full is not None and 'compressor' not in full:
    full['compressor'] = None
  if ocdbt_base is not None:
    return orbax.ocdbt_array(ocdbt_base, dir_name, full)
  where = base.join(dir_name)
  return LazyArray(name, where.kvstore(), str(where), full, directory=where)


def _placeholder_leaf(array_name: str, base: Location, ocdbt_base) -> LazyArray:
  """An Orbax aggregate leaf; without `.zarray` its shape must be supplied (`assume`)."""
  if ocdbt_base is not None:
    return orbax.ocdbt_array(ocdbt_base, array_name, None)
  where = base.join(array_name)
  return LazyArray(array_name, where.kvstore(), str(where), directory=where)


def read_index(file: Location, step_hint: Optional[int] = None) -> Checkpoint:
  """Decodes a msgpack `checkpoint` file; arrays stay lazy."""
  try:
    raw = _unpack(file.read_bytes())
  except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, ValueError,
          msgpack.exceptions.StackError, UnicodeDecodeError) as e:
    raise ValueError(f'{file} is not a msgpack T5X checkpoint: {one_line(e)}') from None
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
