"""The frozen backbone a prompt is tuned on: one loader for every family and entry point.

`load(model, family, ...)` returns a `FrozenModel`: the backbone (the `Backbone` protocol of
`models/backbone.py`), its parameters as numpy arrays, and their logical axes (boxed abstract
tree) for placement on a mesh. `model` is a checkpoint or a preset name, told apart by the one
preset rule (`checkpoints.is_checkpoint_path`); presets get the one random initializer
(`checkpoints.random_params`), so `ptj train/eval/transfer/analyze/bank` and the Python API see
bit-identical weights for the same preset and seed. The gin configurables `t5_model(...)` and
`roberta_model(...)` (bound to `MODEL` by the model gin files) call it.

Large checkpoints: with `sharded_restore=True` no weight is read when the model is built:
`params` holds `jax.ShapeDtypeStruct`s and `placed(shardings)` reads each process's slices
straight onto the mesh (`checkpoints/sharded.py`). Inside `abstract_weights()` (as `ptj plan`
does) or with `abstract=True` nothing is read at all.

Callers ask the model what it can do (`can_generate`, `needs_label_words`) rather than its family.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.trainer.gin_utils import require

FAMILIES = ('t5', 'roberta')


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A frozen backbone and its parameters."""
  family: str            # 't5' or 'roberta' (metadata for logs and files; not for branching)
  config: Any            # T5Config or RobertaConfig
  backbone: Any          # T5Backbone or RobertaBackbone
  params: Any            # nested dict of numpy arrays (ShapeDtypeStructs when abstract)
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

  @property
  def can_generate(self) -> bool:
    """Whether the backbone decodes text (generation tasks), not only scores label words."""
    return callable(getattr(self.backbone, 'greedy_decode', None))

  @property
  def needs_label_words(self) -> bool:
    """Whether the training loss is over the task's label words (a masked LM's verbalizer)."""
    return hasattr(self.backbone, 'label_token_ids')

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
    """The backbone for one task: one that needs label words gets the task's verbalizer ids."""
    if not self.needs_label_words:
      return self.backbone
    if label_targets is None:
      raise ValueError(f'prompt tuning {self.source} needs a classification task (label words)')
    ids = tuple(int(i) for i in np.asarray(label_targets)[:, 0])
    return dataclasses.replace(self.backbone, label_token_ids=ids)

  def shardings(self, mesh, rules=None):
    rules = partitioning.standard_logical_axis_rules() if rules is None else rules
    return partitioning.logical_shardings(self.abstract, mesh, rules)


_ABSTRACT = [False]


@contextlib.contextmanager
def abstract_weights():
  """Within: `load` (and so `t5_model` / `roberta_model`) reads and draws no weights."""
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
  """Random T5 weights (numpy): `checkpoints.random_params`, the one random initializer."""
  from prompt_transfer_jax.checkpoints import random_params
  return random_params(config, seed)


def load(model: Optional[str] = None, family: str = 't5', preset: Optional[str] = None,
         config_overrides: Optional[Mapping[str, Any]] = None,
         frozen_dtype: Optional[str] = None, activation_dtype: Optional[str] = None,
         seed: int = 0, abstract: bool = False, sharded_restore: bool = False) -> FrozenModel:
  """A frozen `family` model from `model` (a checkpoint or, by the one preset rule, a preset).

  Args:
    model: a checkpoint (T5X / Orbax / HF directory; local or gs://) or a preset name.
    family: 't5' or 'roberta'.
    preset: with a checkpoint, the config it is checked against (T5X stores none; None infers
      it from the shapes, or reads config.json); without one, the preset of the random weights.
    config_overrides: config fields to replace (`dropout_rate`, `prompt_layout`, ...).
    frozen_dtype: the dtype the frozen weights are read into (each array cast as it is read).
    activation_dtype: the compute dtype; the prompt stays float32.
    seed: the seed of random preset weights.
    abstract: read and draw nothing: shapes only (`jax.ShapeDtypeStruct` params).
    sharded_restore: read a T5 checkpoint only when placed, each process its own slices.
  """
  from prompt_transfer_jax import checkpoints
  if family not in FAMILIES:
    raise ValueError(f'unknown model family {family!r}; choose one of {", ".join(FAMILIES)}')
  if model is None and preset is None:
    raise ValueError(f'a {family} model needs a checkpoint (INITIAL_CHECKPOINT_PATH) or a preset '
                     '(MODEL_PRESET)')
  if model is not None and not checkpoints.is_checkpoint_path(model):
    model, preset = None, model
  overrides = dict(config_overrides or {})
  dtype = None if frozen_dtype is None else jnp.dtype(frozen_dtype).name
  if activation_dtype is not None:
    overrides['dtype'] = jnp.dtype(activation_dtype).name
  source = str(model) if model is not None else f'random {preset} (seed {seed})'
  if abstract or _ABSTRACT[0]:
    return _abstract(family, model, preset, overrides, dtype, source)
  if family == 'roberta':
    return _roberta(model, preset, overrides, dtype, seed, source)
  return _t5(model, preset, overrides, dtype, seed, source, sharded_restore)


def _abstract(family, checkpoint, preset, overrides, dtype, source) -> FrozenModel:
  from prompt_transfer_jax.checkpoints import roberta as roberta_ckpt
  from prompt_transfer_jax.checkpoints import sharded
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.models import roberta as roberta_lib
  from prompt_transfer_jax.models import t5 as t5_lib
  from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone
  from prompt_transfer_jax.models.t5_backbone import T5Backbone
  if dtype is not None:
    overrides['param_dtype'] = dtype
  if family == 'roberta':
    config = (roberta_ckpt.read_config(checkpoint, **overrides) if checkpoint else
              roberta_lib.roberta_preset(preset, **overrides))
    boxed, backbone = roberta_lib.abstract_params(config), RobertaBackbone(config)
    pad_id = config.pad_token_id
  else:
    config = (sharded.open_t5(checkpoint, config=preset).config if checkpoint else
              t5_preset(preset)).replace(**overrides)
    boxed, backbone, pad_id = t5_lib.abstract_params(config), T5Backbone(config), 0
  return FrozenModel(family, config, backbone, _shapes_of(boxed, config.param_dtype), boxed,
                     pad_id, f'abstract {source}')


def _t5(checkpoint, preset, overrides, dtype, seed, source, sharded_restore) -> FrozenModel:
  from prompt_transfer_jax import checkpoints
  from prompt_transfer_jax.config import t5_preset
  from prompt_transfer_jax.models import t5 as t5_lib
  from prompt_transfer_jax.models.t5_backbone import T5Backbone
  ckpt = None
  if checkpoint is None:
    config = t5_preset(preset).replace(**overrides)
    if dtype is not None:
      config = config.replace(param_dtype=dtype)
    params = checkpoints.random_params(config, seed)
  elif sharded_restore:
    from prompt_transfer_jax.checkpoints import sharded
    ckpt = sharded.open_t5(checkpoint, config=preset)
    config = ckpt.config.replace(**overrides)
    if dtype is not None:
      config = config.replace(param_dtype=dtype)
    params = _shapes_of(t5_lib.abstract_params(config), config.param_dtype)
  else:
    config, params = checkpoints.load_t5(checkpoint, config=preset, dtype=dtype)
    config = config.replace(**overrides) if overrides else config
  return FrozenModel('t5', config, T5Backbone(config), params, t5_lib.abstract_params(config),
                     pad_id=0, source=source, sharded=ckpt)


def _roberta(checkpoint, preset, overrides, dtype, seed, source) -> FrozenModel:
  from prompt_transfer_jax.checkpoints import load_roberta
  from prompt_transfer_jax.models import roberta as roberta_lib
  from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone
  if dtype is not None:
    overrides['param_dtype'] = dtype
  config, params = load_roberta(checkpoint if checkpoint is not None else preset, seed,
                                **overrides)
  return FrozenModel('roberta', config, RobertaBackbone(config), params,
                     roberta_lib.abstract_params(config), pad_id=config.pad_token_id,
                     source=source)


@gin.configurable(module='ptj')
def t5_model(checkpoint: Optional[str] = None, preset: Optional[str] = None,
             config_overrides: Optional[Mapping[str, Any]] = None,
             frozen_dtype: Optional[str] = None, activation_dtype: Optional[str] = None,
             seed: int = 0, abstract: bool = False, sharded_restore: bool = False) -> FrozenModel:
  """A frozen T5 from `checkpoint` (T5X, Orbax or HF directory) or, without one, `preset`
  (`config.T5_PRESETS`) with random weights; see `load`."""
  require(INITIAL_CHECKPOINT_PATH=checkpoint, MODEL_PRESET=preset)
  return load(checkpoint, 't5', preset, config_overrides, frozen_dtype, activation_dtype, seed,
              abstract, sharded_restore)


@gin.configurable(module='ptj')
def roberta_model(checkpoint: Optional[str] = None, preset: Optional[str] = 'roberta_large',
                  config_overrides: Optional[Mapping[str, Any]] = None,
                  frozen_dtype: Optional[str] = None, activation_dtype: Optional[str] = None,
                  seed: int = 0, abstract: bool = False) -> FrozenModel:
  """A frozen RoBERTa (masked LM) from an HF directory `checkpoint` or, without one, `preset`
  with random weights; see `load`."""
  require(INITIAL_CHECKPOINT_PATH=checkpoint, MODEL_PRESET=preset)
  return load(checkpoint, 'roberta', preset, config_overrides, frozen_dtype, activation_dtype,
              seed, abstract)
