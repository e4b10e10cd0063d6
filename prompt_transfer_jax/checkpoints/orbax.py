"""Reads Orbax PyTree checkpoints (the layout T5X's Orbax checkpointer writes) through tensorstore.

An Orbax item directory (`checkpoint_<N>/state/`) holds `_METADATA` (a JSON description of the
tree: each leaf's key path and value type) and, with OCDBT, `manifest.ocdbt` plus data files; each
array is a zarr array named by its dotted key path inside the OCDBT key-value store (or a plain
directory without OCDBT). Reading through tensorstore keeps every leaf lazy, so one variable can
be read without loading the rest. Without `_METADATA` the tree is rebuilt from the array names.
"""
from __future__ import annotations

import json
from typing import Optional

import tensorstore as ts

from prompt_transfer_jax.checkpoints.store import Checkpoint, LazyArray, Location, unflatten

METADATA_FILE = '_METADATA'
MANIFEST_FILE = 'manifest.ocdbt'
STRINGS_FILE = '_strings.json'
_ARRAY_TYPES = ('np.ndarray', 'jax.Array', 'scalar')


def is_ocdbt_dir(loc: Location) -> bool:
  return loc.join(MANIFEST_FILE).is_file()


def is_orbax_item_dir(loc: Location) -> bool:
  return loc.join(METADATA_FILE).is_file() or is_ocdbt_dir(loc)


def _array_kvstore(item: Location, name: str, ocdbt: bool) -> dict:
  if ocdbt:
    return {'driver': 'ocdbt', 'base': item.kvstore(), 'path': name + '/'}
  return item.join(name).kvstore()


def ocdbt_array(item: Location, name: str, metadata: Optional[dict],
                driver: str = 'zarr') -> LazyArray:
  """The array `name` inside the OCDBT store of `item`."""
  return LazyArray(name, _array_kvstore(item, name, True), f'{item}/{name} (ocdbt)', metadata,
                   driver)


def _array(item: Location, name: str, ocdbt: bool, driver: str) -> LazyArray:
  if ocdbt:
    return ocdbt_array(item, name, None, driver)
  return LazyArray(name, _array_kvstore(item, name, False), str(item.join(name)), None, driver,
                   item.join(name))


def _listed_arrays(item: Location, ocdbt: bool) -> dict[tuple, LazyArray]:
  """Without `_METADATA`: every `<dotted name>/.zarray` (or `zarr.json`) in the store."""
  spec = {'driver': 'ocdbt', 'base': item.kvstore()} if ocdbt else item.kvstore()
  store = ts.KvStore.open(spec).result()
  leaves = {}
  for key in store.list().result():
    key = key.decode()
    for marker, driver in (('/.zarray', 'zarr'), ('/zarr.json', 'zarr3')):
      if key.endswith(marker):
        name = key[:-len(marker)].lstrip('/')
        leaves[tuple(name.split('.'))] = _array(item, name, ocdbt, driver)
  return leaves


def read_orbax_index(item: Location, step_hint: Optional[int] = None) -> Checkpoint:
  """The tree of an Orbax item directory with `LazyArray` leaves (`None` / `{}` kept)."""
  ocdbt = is_ocdbt_dir(item)
  metadata_file = item.join(METADATA_FILE)
  metadata = json.loads(metadata_file.read_bytes()) if metadata_file.is_file() else {}
  if 'tree_metadata' not in metadata:
    leaves = _listed_arrays(item, ocdbt)
    if not leaves:
      raise ValueError(f'Orbax checkpoint {item} has no arrays and no readable {METADATA_FILE}')
    return Checkpoint(unflatten(leaves), str(item), step_hint)
  driver = 'zarr3' if metadata.get('use_zarr3') else 'zarr'
  ocdbt = ocdbt or bool(metadata.get('use_ocdbt'))
  strings_file = item.join(STRINGS_FILE)
  strings = json.loads(strings_file.read_bytes()) if strings_file.is_file() else {}
  leaves = {}
  for entry in metadata['tree_metadata'].values():
    path = tuple(k['key'] for k in entry['key_metadata'])
    name = '.'.join(map(str, path))
    value_type = entry['value_metadata']['value_type']
    if value_type in _ARRAY_TYPES:
      leaves[path] = _array(item, name, ocdbt, driver)
    elif value_type == 'string':
      leaves[path] = strings.get(name)
    elif value_type in ('Dict', 'List', 'Tuple'):
      leaves[path] = {}
    elif value_type == 'None':
      leaves[path] = None
    else:
      raise ValueError(f'Orbax checkpoint {item}: leaf {name} has unsupported value type '
                       f'{value_type!r}')
  return Checkpoint(unflatten(leaves), str(metadata_file), step_hint)
