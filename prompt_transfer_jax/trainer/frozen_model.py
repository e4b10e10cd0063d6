"""The frozen backbone a prompt is tuned on: loaded from a checkpoint (or a preset), selected by gin.

`t5_model(...)` and `roberta_model(...)` return a `FrozenModel`: the backbone (the `Backbone`
protocol of `models/backbone.py`), its parameters as numpy arrays, and their logical axes (boxed
abstract tree) for placement on a mesh. Model gin files bind one of them to `MODEL`.

Large checkpoints: with `sharded_restore=True` (or inside `abstract_weights()`, as `ptj plan`
does) no weight is read when the model is built: `params` holds `jax.ShapeDtypeStruct`s, and
`placed(shardings)` reads each process's slices straight onto the mesh
(`checkpoints/sharded.py`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Mapping, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.trainer.gin_utils import require


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A frozen backbone and its parameters."""
  family: str            # 't5' or 'roberta'
  config: Any            # T5Config or RobertaConfig
  backbone: Any          # T5Backbone or RobertaBackbone
  params: Any            # nested dict of numpy arrays
  abstract: Any          # boxed abstract params (logical axis names)
  pad_id: int            # padding id of the encoder input
  source: str            # checkpoint path or preset name, for logs
  sharded: Any = None    # a sharded.ShardedCheckpoint read by `placed` (params are then abstract)

  @property
  def embed_dim(self) -> int:
    return int(self.backbone.embed_dim)

  @property
  def is_abstract(self) -> bool:
    """True when `params` are shapes only (sharded restore, or `abstract_weights`)."""
    return any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(self.params))

  def embedding_table(self) -> np.ndarray:
    if self.sharded is not None:
      table = self.sharded.read(('token_embedder', 'embedding'),
                                jnp.dtype(self.config.param_dtype))
      return np.asarray(table, np.float32)
    if self.is_abstract:
      raise ValueError(f'{self.source}: the model was built without weights (abstract)')
    return np.asarray(self.backbone.embedding_table(self.params), np.float32)

  def placed(self, shardings):
    """The parameters as global arrays with `shardings`; a sharded checkpoint is read slice by
    slice onto the mesh, host parameters are placed as they are."""
    if self.sharded is not None:
      return self.sharded.restore(shardings, self.config.param_dtype)
    if self.is_abstract:
      raise ValueError(f'{self.source}: the model was built without weights (abstract)')
    return partitioning.place(self.params, shardings)

  def on_mesh(self, model_parallel: int = 1) -> partitioning.PlacedParams:
    """A (data, model) mesh over the devices, the parameters' shardings and the placed
    parameters: the start of every run."""
    mesh = partitioning.make_mesh(model_parallel)
    shardings = self.shardings(mesh)
    return partitioning.PlacedParams(mesh, shardings, self.placed(shardings))

  def for_task(self, label_targets: Optional[np.ndarray]) -> Any:
    """The backbone for one task: RoBERTa needs the task's verbalizer ids for its loss."""
    if self.family != 'roberta':
      return self.backbone
    if label_targets is None:
      raise ValueError('RoBERTa prompt tuning needs a classification task (label words)')
    ids = tuple(int(i) for i in np.asarray(label_targets)[:, 0])
    return dataclasses.replace(self.backbone, label_token_ids=ids)

  def shardings(self, mesh, rules=None):
    rules = partitioning.standard_logical_axis_rules() if rules is None else rules
    return partitioning.logical_shardings(self.abstract, mesh, rules)


def _cast_floats(params, dtype: Optional[str]):
  if dtype is None:
    return params
  target = jnp.dtype(dtype)
  return jax.tree.map(
      lambda x: np.asarray(x, target) if np.issubdtype(np.asarray(x).dtype, np.floating) else x,
      params)


_ABSTRACT = [False]


@contextlib.contextmanager
def abstract_weights():
  """Within: `t5_model` / `roberta_model` read and draw no weights (`params` are shapes)."""
  _ABSTRACT[0] = True
  try:
    yield
  finally:
    _ABSTRACT[0] = False


def _shapes_of(abstract, dtype: str):
  """ShapeDtypeStructs of boxed abstract params, floats in `dtype`."""
  from flax import linen as nn
  target = jnp.dtype(dtype)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, target if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype),
      nn.meta.unbox(abstract))


def random_t5_params(config, seed: int = 0):
  """Random T5 weights (numpy), jitted and drawn with the fast `unsafe_rbg` generator."""
  return jax.device_get(_t5_init(config)(jax.random.key(seed, impl='unsafe_rbg')))


@functools.lru_cache(maxsize=8)
def _t5_init(config):
  from prompt_transfer_jax.models import t5 as t5_lib
  return jax.jit(functools.partial(t5_lib.init_params, config))


@gin.configurable(module='ptj')
def t5_model(checkpoint: Optional[str] = None, preset: Optional[str] = None,
             config_overrides: Optional[Mapping[str, Any]] = None,
             frozen_dtype: Optional[str] = None,
             activation_dtype: Optional[str] = None,
             sharded_restore: bool = False) -> FrozenModel:
  """A frozen T5 from `checkpoint` (T5X, Orbax or HF directory) or, without one, `preset`
  with random weights.

  `preset` names the architecture (`config.T5_PRESETS`); with a checkpoint it is the config the
  weights are checked against (T5X stores none; None infers it from the shapes).
  `config_overrides` replaces `T5Config` fields (e.g. `vocab_size`, `dropout_rate`).
  `frozen_dtype='bfloat16'` stores the frozen weights in bf16 (accelerators) and
  `activation_dtype` sets the compute dtype; the prompt and its optimizer stay float32.
  `sharded_restore=True` reads the checkpoint only when placed, each process its own slices,
  cast to `frozen_dtype` at read (for models too large to load whole on every host).
  """
  from prompt_transfer_jax import checkpoints
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.models import t5 as t5_lib
  from prompt_transfer_jax.models.t5_backbone import T5Backbone
  require(INITIAL_CHECKPOINT_PATH=checkpoint, MODEL_PRESET=preset)
  if checkpoint is None and preset is None:
    raise ValueError('t5_model needs a checkpoint (INITIAL_CHECKPOINT_PATH) or a preset')
  overrides = dict(config_overrides or {})
  lazy = sharded_restore or _ABSTRACT[0]
  ckpt = params = None
  if checkpoint is None:
    config = t5_preset(preset).replace(**overrides)
    source = f'random {preset}'
  elif lazy:
    from prompt_transfer_jax.checkpoints import sharded
    ckpt = sharded.open_t5(checkpoint, config=preset)
    config, source = ckpt.config.replace(**overrides), str(checkpoint)
  else:
    config, params = checkpoints.load_t5(checkpoint, config=preset)
    if overrides:
      config = config.replace(**overrides)
    source = str(checkpoint)
  if frozen_dtype is not None:
    config = config.replace(param_dtype=jnp.dtype(frozen_dtype).name)
  if activation_dtype is not None:
    config = config.replace(dtype=jnp.dtype(activation_dtype).name)
  abstract = t5_lib.abstract_params(config)
  if lazy:
    params = _shapes_of(abstract, config.param_dtype)
  else:
    params = _cast_floats(random_t5_params(config) if params is None else params,
                          config.param_dtype)
  return FrozenModel('t5', config, T5Backbone(config), params, abstract, pad_id=0, source=source,
                     sharded=None if _ABSTRACT[0] else ckpt)


@gin.configurable(module='ptj')
def roberta_model(checkpoint: Optional[str] = None, preset: str = 'roberta_large',
                  config_overrides: Optional[Mapping[str, Any]] = None,
                  frozen_dtype: Optional[str] = None,
                  activation_dtype: Optional[str] = None) -> FrozenModel:
  """A frozen RoBERTa (masked LM) from an HF directory `checkpoint`, or `preset` with random
  weights; `config_overrides` replaces `RobertaConfig` fields (e.g. `prompt_layout`)."""
  from prompt_transfer_jax.checkpoints import roberta as roberta_ckpt
  from prompt_transfer_jax.models import roberta as roberta_lib
  from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone
  require(INITIAL_CHECKPOINT_PATH=checkpoint, MODEL_PRESET=preset)
  overrides = dict(config_overrides or {})
  if frozen_dtype is not None:
    overrides['param_dtype'] = jnp.dtype(frozen_dtype).name
  if activation_dtype is not None:
    overrides['dtype'] = jnp.dtype(activation_dtype).name
  if _ABSTRACT[0]:
    config = (roberta_ckpt.read_config(checkpoint, **overrides) if checkpoint else
              roberta_lib.roberta_preset(preset, **overrides))
    params = _shapes_of(roberta_lib.abstract_params(config), config.param_dtype)
  else:
    config, params = roberta_ckpt.load_roberta(checkpoint or preset, **overrides)
    params = _cast_floats(params, config.param_dtype)
  return FrozenModel('roberta', config, RobertaBackbone(config), params,
                     roberta_lib.abstract_params(config), pad_id=config.pad_token_id,
                     source=str(checkpoint or f'random {preset}'))
