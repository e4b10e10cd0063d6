"""SeqIO tasks -> fixed-shape model batches -> global `jax.Array`s on the mesh.

Training reads an endless, seeded, shuffled stream; each host reads its own shard
(`seqio.ShardInfo(process_index, process_count)`) and contributes `batch_size / process_count`
rows of every global batch (`jax.make_array_from_process_local_data`). The stream is a pure
function of (seed, shard), so the iterator position is just the number of batches consumed:
resuming skips that many batches. No packing: one example per row, inputs padded with the
backbone's pad id, targets with 0.

Evaluation reads a split once, in order, and keeps every example: the last batch is padded with
masked rows (`example_mask` 0) so one compiled function serves every batch. Every host reads the
whole split and feeds its own rows of each global batch, so all hosts see identical metrics.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Mapping, Optional

import jax
import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import tensorflow as tf  # noqa: E402
import seqio  # noqa: E402

try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF already initialised its devices.
  pass

MODEL_FEATURES = ('encoder_input_tokens', 'decoder_input_tokens', 'decoder_target_tokens',
                  'decoder_loss_weights', 'label')


def provider(name: str):
  """The registered seqio task or mixture `name` (one-line error otherwise)."""
  import prompt_transfer_jax.tasks  # noqa: F401  (registers the project's tasks)
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    from prompt_transfer_jax import tasks
    close = [n for n in list(tasks.task_names()) + list(tasks.mixture_names())
             if name in n or n in name][:3]
    hint = f'; close matches: {", ".join(close)}' if close else '; run `ptj tasks list`'
    raise ValueError(f'unknown task or mixture {name!r}{hint}') from None


def task_names_of(name: str) -> list[str]:
  """The tasks of a mixture, or `[name]` for a task."""
  p = provider(name)
  return [t.name for t in p.tasks] if isinstance(p, seqio.Mixture) else [p.name]


def _pad(x, length: int, value: int):
  x = x[:length]
  return tf.pad(x, [[0, length - tf.shape(x)[0]]], constant_values=value)


def model_features(lengths: Mapping[str, int], pad_id: int = 0,
                   label_ids: Optional[np.ndarray] = None):
  """A tf map fn: task example (`inputs`, `targets`[, `label`]) -> the model's fixed features.

  `label` is the example's class index; without one it is looked up from the first target token
  among `label_ids` (the first token of each label word), else -1.
  """
  in_len, tgt_len = int(lengths['inputs']), int(lengths['targets'])

  def fn(ex):
    targets = _pad(tf.cast(ex['targets'], tf.int32), tgt_len, 0)
    if 'label' in ex:
      label = tf.cast(ex['label'], tf.int32)
    elif label_ids is not None:
      hits = tf.cast(tf.equal(tf.constant(np.asarray(label_ids, np.int32)), targets[0]), tf.int32)
      label = tf.where(tf.reduce_any(hits > 0), tf.cast(tf.argmax(hits), tf.int32), -1)
    else:
      label = tf.constant(-1, tf.int32)
    return {
        'encoder_input_tokens': _pad(tf.cast(ex['inputs'], tf.int32), in_len, pad_id),
        'decoder_target_tokens': targets,
        'decoder_input_tokens': tf.concat([[0], targets[:-1]], 0),
        'decoder_loss_weights': tf.cast(targets > 0, tf.int32),
        'label': tf.reshape(label, []),
    }
  return fn


def local_batch_size(batch_size: int, process_count: int) -> int:
  if batch_size % process_count:
    raise ValueError(f'BATCH_SIZE {batch_size} is not divisible by the {process_count} processes')
  return batch_size // process_count


def check_batch_size(batch_size: int, mesh, name: str = 'BATCH_SIZE') -> None:
  """Batches are split evenly over the mesh's `data` axis."""
  shards = mesh.shape['data']
  if batch_size % shards:
    raise ValueError(f'{name} {batch_size} is not divisible by the {shards} data-parallel devices')


def train_batches(name: str, lengths: Mapping[str, int], batch_size: int, seed: int,
                  start_batch: int = 0, shuffle: bool = True, pad_id: int = 0,
                  label_ids: Optional[np.ndarray] = None, process_index: Optional[int] = None,
                  process_count: Optional[int] = None) -> Iterator[dict]:
  """Endless process-local training batches (numpy), from batch number `start_batch` on."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  local = local_batch_size(batch_size, count)
  shard = seqio.ShardInfo(index=index, num_shards=count) if count > 1 else None
  ds = provider(name).get_dataset(dict(lengths), split='train', shuffle=shuffle, seed=seed,
                                  shard_info=shard, num_epochs=None)
  ds = ds.map(model_features(lengths, pad_id, label_ids), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  ds = ds.batch(local, drop_remainder=True)
  if start_batch:
    ds = ds.skip(start_batch)
  return ds.prefetch(2).as_numpy_iterator()


@dataclasses.dataclass
class EvalSet:
  """One task's evaluation split: model features of every example, plus what metrics need."""
  task: str
  features: dict              # name -> [N, ...] numpy
  golds: list                 # postprocessed targets (class index, answers, text)
  examples: list              # raw examples (postprocessing of predictions may read them)

  def __len__(self) -> int:
    return len(self.golds)


def _to_python(value):
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [v.decode('utf-8') if isinstance(v, bytes) else v for v in value.tolist()]
  return value


def eval_set(task_name: str, lengths: Mapping[str, int], split: str = 'validation',
             pad_id: int = 0, max_examples: Optional[int] = None) -> EvalSet:
  """Reads a task's split in order (every example, no shuffling)."""
  task = seqio.get_mixture_or_task(task_name)
  if split not in task.splits:
    raise ValueError(f'task {task_name!r} has no split {split!r}; it has {", ".join(task.splits)}')
  ds = task.get_dataset(dict(lengths), split=split, shuffle=False, num_epochs=1)
  if max_examples:
    ds = ds.take(max_examples)
  convert = model_features(lengths, pad_id)
  ds = ds.map(lambda ex: (convert(ex), ex))
  rows, golds, examples = [], [], []
  for row, ex in ds.as_numpy_iterator():
    ex = {k: _to_python(v) for k, v in ex.items()}
    rows.append(row)
    golds.append(task.postprocess_fn(ex.get('targets_pretokenized', ''), example=ex, is_target=True)
                 if task.postprocess_fn else ex.get('targets_pretokenized'))
    examples.append(ex)
  if not rows:
    raise ValueError(f'task {task_name!r} split {split!r} has no examples')
  features = {k: np.stack([r[k] for r in rows]) for k in MODEL_FEATURES}
  return EvalSet(task_name, features, golds, examples)


def padded_batches(features: Mapping[str, np.ndarray], batch_size: int) -> Iterator[dict]:
  """Global batches of exactly `batch_size` rows; the last is padded with `example_mask` 0."""
  n = len(next(iter(features.values())))
  for start in range(0, n, batch_size):
    size = min(batch_size, n - start)
    batch = {}
    for k, v in features.items():
      chunk = v[start:start + size]
      if size < batch_size:
        chunk = np.concatenate([chunk, np.zeros((batch_size - size,) + v.shape[1:], v.dtype)])
      batch[k] = chunk
    batch['example_mask'] = (np.arange(batch_size) < size).astype(np.int32)
    yield batch


def local_rows(sharding, global_rows: int) -> slice:
  """The rows of a `global_rows`-row batch that this process's devices hold under `sharding`."""
  starts, stops = [], []
  for index in sharding.addressable_devices_indices_map((global_rows,)).values():
    rows = index[0]
    starts.append(rows.start or 0)
    stops.append(global_rows if rows.stop is None else rows.stop)
  return slice(min(starts), max(stops))


def to_global(local: Mapping[str, Any], sharding) -> dict:
  """Process-local numpy rows -> global arrays split on the batch dimension."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}
