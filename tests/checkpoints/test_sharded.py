"""Sharded restore (checkpoints/sharded.py) against the unsharded readers.

Two `jax.distributed` CPU processes (4 devices each, model parallel 4, 2-D parameter partitioning
so parameters are split across the hosts) restore the T5X fixture and an HF directory: every
shard they hold equals the unsharded reader's array at that index, the two hosts together hold
every element, and each reads strictly less than the whole checkpoint. A T5 1.1 base-width
checkpoint restored in bfloat16 never holds a float32 copy of its largest parameter.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from prompt_transfer_jax import checkpoints
from prompt_transfer_jax.checkpoints import sharded, t5x

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = ('t5x', 'test_t5_1_1_tiny', 'checkpoint_3')
MODEL_PARALLEL = 4


def _fit(sharding, shape):
  """Drops mesh axes that do not divide a dimension (the tiny fixture has 2 heads)."""
  from jax.sharding import NamedSharding, PartitionSpec
  spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
  mesh = sharding.mesh
  return NamedSharding(mesh, PartitionSpec(*[
      a if a is None or shape[i] % mesh.shape[a] == 0 else None for i, a in enumerate(spec)]))


def _shardings(ckpt, mesh, parameter_dims):
  import jax
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.models import t5 as t5_lib
  rules = partitioning.standard_logical_axis_rules(parameter_partitioning_dims=parameter_dims)
  tree = partitioning.logical_shardings(t5_lib.abstract_params(ckpt.config), mesh, rules)
  flat = {tuple(getattr(k, 'key', k) for k in path): s
          for path, s in jax.tree_util.tree_flatten_with_path(tree)[0]}
  return t5x.unflatten({p: _fit(s, ckpt.leaves[p].shape) for p, s in flat.items()})


def _worker(path: str, out_file: str) -> None:
  """One process of the 2-process run: restore, compare shards, write what it read."""
  import jax
  from prompt_transfer_jax import partitioning
  ckpt = sharded.open_t5(path)
  mesh = partitioning.make_mesh(MODEL_PARALLEL)
  params = t5x.flatten(ckpt.restore(_shardings(ckpt, mesh, 2), log=lambda _: None))
  _, reference = checkpoints.load_t5(path)
  held = 0
  for key, expected in t5x.flatten(reference).items():
    array = params[key]
    assert array.shape == expected.shape and array.dtype == expected.dtype, key
    for shard in array.addressable_shards:
      np.testing.assert_array_equal(np.asarray(shard.data), expected[shard.index], err_msg=str(key))
    covered = np.zeros(expected.shape, bool)
    for shard in array.addressable_shards:
      covered[shard.index] = True
    held += int(covered.sum()) * expected.dtype.itemsize
  with open(out_file, 'w') as f:
    json.dump({'process': jax.process_index(), 'devices': jax.device_count(),
               'bytes_read': ckpt.stats.bytes_read, 'total': ckpt.total_bytes, 'held': held}, f)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(path, tmp_path, timeout=240):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             XLA_FLAGS='--xla_force_host_platform_device_count=4', PYTHONPATH=REPO)
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'tests.checkpoints.test_sharded', str(path),
       str(tmp_path / f'p{i}.json'), f'127.0.0.1:{port}', str(i)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  try:   # the watchdog: a hung coordinator must not hang the suite
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  return [json.loads((tmp_path / f'p{i}.json').read_text()) for i in range(2)]


@pytest.fixture
def tiny_checkpoint(shared_fixtures):
  path = shared_fixtures.joinpath(*FIXTURE)
  if not path.is_dir():
    pytest.skip(f'optional fixture {path} is absent')
  return path


def test_two_processes_restore_t5x_and_hf_slices(tiny_checkpoint, tmp_path):
  config, params = checkpoints.load_t5(tiny_checkpoint)
  hf_dir = tmp_path / 'hf'
  checkpoints.save_hf_t5(hf_dir, config, params)
  for name, path in (('t5x', tiny_checkpoint), ('hf', hf_dir)):
    (tmp_path / f'{name}_reports').mkdir()
    reports = _two_processes(path, tmp_path / f'{name}_reports')
    assert sorted(r['process'] for r in reports) == [0, 1]
    assert all(r['devices'] == 8 for r in reports)
    total = reports[0]['total']
    for r in reports:
      assert r['bytes_read'] < total, (name, r)   # strictly less than the whole checkpoint
      assert r['bytes_read'] == r['held'], (name, r)   # each distinct slice read exactly once
    assert sum(r['bytes_read'] for r in reports) >= total   # together, everything


def test_single_process_restore_equals_unsharded_reader_and_casts(tiny_checkpoint):
  import jax
  from prompt_transfer_jax import partitioning
  ckpt = sharded.open_t5(tiny_checkpoint, dtype='bfloat16')
  assert ckpt.config.param_dtype == 'bfloat16'
  mesh = partitioning.make_mesh(1, jax.devices()[:1])
  params = t5x.flatten(ckpt.restore(_shardings(ckpt, mesh, 1), log=lambda _: None))
  _, reference = checkpoints.load_t5(tiny_checkpoint, dtype='bfloat16')
  for key, expected in t5x.flatten(reference).items():
    assert params[key].dtype == expected.dtype
    np.testing.assert_array_equal(np.asarray(params[key]), expected, err_msg=str(key))
  assert ckpt.stats.bytes_read == ckpt.total_bytes   # one device: every slice is whole


def test_hf_untied_scaled_head_and_wrong_config(tiny_checkpoint, tmp_path):
  """An HF head under `scale_decoder_outputs` is read transposed and scaled like read_hf_t5."""
  config, params = checkpoints.load_t5(tiny_checkpoint)
  hf_dir = tmp_path / 'hf'
  checkpoints.save_hf_t5(hf_dir, config, params)
  hf = json.loads((hf_dir / 'config.json').read_text())
  hf.update(scale_decoder_outputs=True, tie_word_embeddings=True)
  (hf_dir / 'config.json').write_text(json.dumps(hf))
  import jax
  from prompt_transfer_jax import partitioning
  ckpt = sharded.open_t5(hf_dir)
  ref_config, reference = checkpoints.load_t5(hf_dir)
  assert ckpt.config == ref_config and not ckpt.config.logits_via_embedding
  mesh = partitioning.make_mesh(1, jax.devices()[:1])
  restored = t5x.flatten(ckpt.restore(_shardings(ckpt, mesh, 1), log=lambda _: None))
  for key, expected in t5x.flatten(reference).items():
    np.testing.assert_array_equal(np.asarray(restored[key]), expected, err_msg=str(key))
  for path in (tiny_checkpoint, hf_dir):
    with pytest.raises(ValueError, match=r'decoder/decoder_norm/scale has shape \(4,\) but '
                       r'(preset t5x_tiny|the given config) expects \(8,\)'):
      sharded.open_t5(path, 't5x_tiny')


def test_frozen_model_sharded_restore_reads_only_when_placed(tiny_checkpoint):
  """`ptj.t5_model.sharded_restore=True`: no weight is read until the trainer places them."""
  import jax
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.trainer import frozen_model
  model = frozen_model.t5_model(checkpoint=str(tiny_checkpoint), sharded_restore=True,
                                frozen_dtype='bfloat16')
  assert model.is_abstract and model.sharded.stats.bytes_read == 0
  mesh = partitioning.make_mesh(1, jax.devices()[:1])
  placed = t5x.flatten(model.placed(model.shardings(mesh)))
  _, reference = checkpoints.load_t5(tiny_checkpoint, dtype='bfloat16')
  for key, expected in t5x.flatten(reference).items():
    np.testing.assert_array_equal(np.asarray(placed[key]), expected, err_msg=str(key))
  np.testing.assert_array_equal(model.embedding_table(),
                                reference['token_embedder']['embedding'].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Peak host memory of a bfloat16 restore.


def _write_t5x(step_dir, arrays, chunk_rows):
  import flax.serialization
  import tensorstore as ts
  target = {}
  for path, value in arrays.items():
    name = 'target.' + '.'.join(path)
    chunks = [min(chunk_rows, value.shape[0])] + list(value.shape[1:])
    store = ts.open({'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': str(step_dir / name)},
                     'metadata': {'shape': list(value.shape), 'chunks': chunks, 'dtype': '<f4',
                                  'compressor': None}}, create=True).result()
    store.write(value).result()
    target[path] = {'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': name + '/'},
                    'metadata': {'shape': list(value.shape), 'dtype': '<f4'}}
  tree = {'version': 3, 'optimizer': {'target': t5x.unflatten(target), 'state': {'step': 1}}}
  (step_dir / 'checkpoint').write_bytes(flax.serialization.msgpack_serialize(tree))


class _PeakRss:
  """Samples this process's resident set size every millisecond (Linux /proc); freed heap
  memory is first given back to the system (glibc `malloc_trim`) so the baseline is tight."""

  def __enter__(self):
    import ctypes
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    self.page = os.sysconf('SC_PAGE_SIZE')
    self.base = self.peak = self._rss()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _rss(self) -> int:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * self.page

  def _sample(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self._rss())
      time.sleep(0.001)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._rss())

  @property
  def increase(self) -> int:
    return self.peak - self.base


@pytest.mark.skipif(not os.path.exists('/proc/self/statm') or sys.platform != 'linux',
                    reason='needs Linux /proc and glibc')
def test_bf16_restore_never_holds_a_float32_copy_of_a_large_parameter(tmp_path):
  """T5 1.1 base widths (d_model 768, vocab 32128: a 94 MiB float32 embedding), 1 + 1 layers."""
  import jax
  import ml_dtypes
  from prompt_transfer_jax import partitioning
  from prompt_transfer_jax.config import t5_preset
  config = t5_preset('t5_1_1_base').replace(num_encoder_layers=1, num_decoder_layers=1)
  rng = np.random.default_rng(0)
  arrays = {p: rng.random(s, dtype=np.float32)
            for p, s in checkpoints.expected_shapes(config).items()}
  step_dir = tmp_path / 'checkpoint_1'
  step_dir.mkdir()
  _write_t5x(step_dir, arrays, chunk_rows=2048)   # T5X writes chunks; a read is >= one chunk
  embedding = arrays[('token_embedder', 'embedding')]
  f32_bytes = embedding.nbytes
  expected = embedding.astype(ml_dtypes.bfloat16)
  del arrays, embedding

  # 1. every stored float32 block handed to the host during a whole restore is small
  ckpt = sharded.open_t5(step_dir, config, dtype='bfloat16')
  largest = []
  for path, leaf in list(ckpt.leaves.items()):
    def read(index, read=leaf.read):
      block = read(index)
      largest.append(block.nbytes)
      return block
    ckpt.leaves[path] = sharded.Leaf(leaf.shape, leaf.dtype, read, leaf.where)
  mesh = partitioning.make_mesh(1, jax.devices()[:1])
  params = ckpt.restore(_shardings(ckpt, mesh, 1), log=lambda _: None)
  restored = params['token_embedder']['embedding']
  assert all(a.dtype == ml_dtypes.bfloat16 for a in jax.tree.leaves(params))
  np.testing.assert_array_equal(np.asarray(restored), expected)
  assert max(largest) <= sharded.BLOCK_BYTES < f32_bytes / 4
  del params, restored

  # 2. peak host memory of reading the embedding whole in bf16 (the replicated worst case)
  ckpt = sharded.open_t5(step_dir, config, dtype='bfloat16')
  leaf = ckpt.leaves[('token_embedder', 'embedding')]
  with _PeakRss() as host_read:
    value = sharded.read_cast(leaf, tuple(slice(0, s) for s in leaf.shape), ml_dtypes.bfloat16,
                              sharded.ReadStats())
  np.testing.assert_array_equal(value, expected)
  del value
  # control: the unsharded reader does hold float32 copies, and the measurement sees them
  with _PeakRss() as unsharded:
    checkpoints.load_t5(step_dir, config, dtype='bfloat16')
  print(f'peak RSS increase: sharded bf16 read of the embedding {host_read.increase >> 20} MiB '
        f'(its bf16 value {f32_bytes >> 21} MiB, float32 {f32_bytes >> 20} MiB); unsharded '
        f'reader {unsharded.increase >> 20} MiB')
  assert host_read.increase < f32_bytes, host_read.increase
  assert unsharded.increase > f32_bytes, unsharded.increase


if __name__ == '__main__':
  import jax
  _path, _out, _coordinator, _process = sys.argv[1:5]
  jax.distributed.initialize(_coordinator, num_processes=2, process_id=int(_process))
  _worker(_path, _out)
