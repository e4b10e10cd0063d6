"""The cross-model prompt projector (paper-spec section 4.1) and its files.

`Projector(target_dim)` maps a source model's prompt `[P, Es]` (or a batch `[B, P, Es]`) to the
target model's embedding space: flatten -> Dense(P*Es -> h) -> LeakyReLU(0.01) | tanh ->
Dense(h -> P*Et) -> reshape `[P, Et]` -> LayerNorm(Et) per row (eps 1e-5, learned scale and
bias; `layer_norm=False` drops it). RoBERTa-Large -> T5-XXL at h = 768 is ~393M parameters, so
every parameter carries T5X logical axis names: the hidden axis is 'mlp' (sharded over 'model'
by the standard rules) and the flattened prompt axes are 'embed' (replicated, or over 'data'
with 2-D parameter partitioning), like a T5 MLP block.

Source row 0 (RoBERTa's `<mask>` slot) is an input like any other row. For a RoBERTa target the
model itself overwrites output row 0 with the `<mask>` embedding (`models/roberta.py`,
mask_slot layout), so the projector needs no special case.

Kernels start as PyTorch's `nn.Linear` does (U(+-1/sqrt(fan_in)), `weight_init='torch'`), or
N(0, 1) (`'normal'`: the original code re-initializes the Linear weights of a projector into a
T5 target so, paper-spec 4.2); biases at 0.

A saved projector is a directory: `projector.json` (the module's config and the source prompt
shape it was built for) and `params/` (an Orbax checkpoint), written to a temporary sibling and
renamed when complete.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from prompt_transfer_jax import files, partitioning

ACTIVATIONS = ('leaky_relu', 'tanh')
CONFIG_FILE = 'projector.json'
PARAMS_DIR = 'params'
FLAT_AXIS, HIDDEN_AXIS = 'embed', 'mlp'
_KERNEL_INITS = {'torch': nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform'),
                 'normal': nn.initializers.normal(1.0)}
WEIGHT_INITS = tuple(_KERNEL_INITS)


class Projector(nn.Module):
  """Two-layer perceptron over the flattened prompt, LayerNorm over each output row."""
  target_dim: int
  hidden_dim: int = 768
  activation: str = 'leaky_relu'
  layer_norm: bool = True
  weight_init: str = 'torch'

  def _dense(self, features: int, axes: tuple[str, str], name: str):
    return nn.Dense(features, name=name,
                    kernel_init=nn.with_logical_partitioning(_KERNEL_INITS[self.weight_init],
                                                             axes),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))

  @nn.compact
  def __call__(self, source_prompt):
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'unknown projector activation {self.activation!r}; choose one of '
                       f'{", ".join(ACTIVATIONS)}')
    x = jnp.asarray(source_prompt, jnp.float32)
    if x.ndim not in (2, 3):
      raise ValueError(f'a source prompt must be [P, E] or [B, P, E], got shape {x.shape}')
    batch_shape, (length, width) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(batch_shape + (length * width,))
    h = self._dense(self.hidden_dim, (FLAT_AXIS, HIDDEN_AXIS), 'hidden')(flat)
    h = nn.leaky_relu(h, 0.01) if self.activation == 'leaky_relu' else jnp.tanh(h)
    out = self._dense(length * self.target_dim, (HIDDEN_AXIS, FLAT_AXIS), 'output')(h)
    out = out.reshape(batch_shape + (length, self.target_dim))
    if self.layer_norm:
      out = nn.LayerNorm(epsilon=1e-5, name='layer_norm',
                         scale_init=nn.with_logical_partitioning(nn.initializers.ones, ('embed',)),
                         bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                                ('embed',)))(out)
    return out


@dataclasses.dataclass(frozen=True)
class ProjectorSpec:
  """What a projector is built from: its module fields and the source prompt shape `[P, Es]`."""
  source_length: int
  source_dim: int
  target_dim: int
  hidden_dim: int = 768
  activation: str = 'leaky_relu'
  layer_norm: bool = True
  weight_init: str = 'torch'

  def __post_init__(self):
    for name in ('source_length', 'source_dim', 'target_dim', 'hidden_dim'):
      if int(getattr(self, name)) < 1:
        raise ValueError(f'projector {name} must be a positive integer, got {getattr(self, name)}')
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'unknown projector activation {self.activation!r}; choose one of '
                       f'{", ".join(ACTIVATIONS)}')
    if self.weight_init not in WEIGHT_INITS:
      raise ValueError(f'unknown projector weight_init {self.weight_init!r}; choose one of '
                       f'{", ".join(WEIGHT_INITS)}')

  @property
  def module(self) -> Projector:
    return Projector(self.target_dim, self.hidden_dim, self.activation, self.layer_norm,
                     self.weight_init)

  @property
  def source_shape(self) -> tuple[int, int]:
    return (self.source_length, self.source_dim)

  @property
  def target_shape(self) -> tuple[int, int]:
    return (self.source_length, self.target_dim)

  def check_source(self, prompts, where: str = 'source prompt') -> np.ndarray:
    """`prompts` `[P, Es]` or `[N, P, Es]` as float32, or a one-line error naming both shapes."""
    p = np.asarray(prompts, np.float32)
    if p.ndim not in (2, 3) or p.shape[-2:] != self.source_shape:
      raise ValueError(f'{where} has shape {p.shape}, but the projector takes [P, Es] = '
                       f'{list(self.source_shape)} prompts')
    return p

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: Any, where: str) -> 'ProjectorSpec':
    fields = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(data, dict) or not {'source_length', 'source_dim', 'target_dim'} <= set(data):
      raise ValueError(f'{where}: not a projector config (needs source_length, source_dim, '
                       'target_dim)')
    unknown = set(data) - fields
    if unknown:
      raise ValueError(f'{where}: unknown projector config fields {sorted(unknown)}')
    return cls(**data)


def abstract_params(spec: ProjectorSpec):
  """Boxed shape/dtype tree of the parameters (logical axis names), nothing computed."""
  return jax.eval_shape(lambda: spec.module.init(jax.random.PRNGKey(0),
                                                 jnp.zeros(spec.source_shape, jnp.float32)))['params']


def shardings(spec: ProjectorSpec, mesh, rules: Optional[partitioning.LogicalRules] = None):
  """NamedShardings of the parameters on `mesh` under `rules` (default: the standard rules)."""
  rules = partitioning.standard_logical_axis_rules() if rules is None else rules
  return partitioning.logical_shardings(abstract_params(spec), mesh, rules)


def init_params(spec: ProjectorSpec, seed: int = 0, param_shardings=None):
  """Initial parameters (unboxed), created in place with `param_shardings` when given."""
  def init():
    boxed = spec.module.init(jax.random.PRNGKey(seed), jnp.zeros(spec.source_shape, jnp.float32))
    return nn.meta.unbox(boxed['params'])
  return jax.jit(init, out_shardings=param_shardings)()


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def save(directory: str, spec: ProjectorSpec, params, extra: Optional[dict] = None) -> str:
  """Writes `directory` (config + Orbax params) all or nothing; replaces an older projector.

  Every process calls it (the Orbax save is collective); process 0 writes the config and renames.
  """
  import orbax.checkpoint as ocp
  directory = os.path.abspath(os.fspath(directory))
  tmp = os.path.join(os.path.dirname(directory), f'.{os.path.basename(directory)}.tmp')
  primary = jax.process_index() == 0
  if primary:
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
  _sync('projector_save_start')
  try:
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(os.path.join(tmp, PARAMS_DIR), params)
      ckpt.wait_until_finished()
    if primary:
      files.write_json(os.path.join(tmp, CONFIG_FILE), dict(spec.to_json(), **(extra or {})))
      old = f'{tmp}.old'
      if os.path.exists(directory):
        os.replace(directory, old)
      os.replace(tmp, directory)
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if primary:
      shutil.rmtree(tmp, ignore_errors=True)
  _sync('projector_save_end')
  return directory


def load_spec(directory: str) -> tuple[ProjectorSpec, dict]:
  """(spec, the whole config dict) of a saved projector; one-line errors otherwise."""
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'projector directory not found: {directory}')
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.isfile(path):
    raise ValueError(f'{directory} has no {CONFIG_FILE}: not a projector saved by ptj project')
  data = files.read_json(path, 'projector config')
  fields = {f.name for f in dataclasses.fields(ProjectorSpec)}
  spec = ProjectorSpec.from_json({k: v for k, v in data.items() if k in fields}, path)
  return spec, data


def load(directory: str, param_shardings=None) -> tuple[ProjectorSpec, Any, dict]:
  """(spec, params, config) of a saved projector; params placed with `param_shardings` if given
  (e.g. `shardings(spec, mesh)`), else on the default device."""
  import orbax.checkpoint as ocp
  spec, data = load_spec(directory)
  params_dir = os.path.join(os.path.abspath(directory), PARAMS_DIR)
  if not os.path.isdir(params_dir):
    raise ValueError(f'{directory} has no {PARAMS_DIR}/ checkpoint: not a complete projector')
  abstract = nn.meta.unbox(abstract_params(spec))
  if param_shardings is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    param_shardings = jax.tree.map(lambda _: device, abstract)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, param_shardings)
  with ocp.StandardCheckpointer() as ckpt:
    params = ckpt.restore(params_dir, target)
  return spec, params, data


def apply_fn(spec: ProjectorSpec):
  """`fn(params, prompts)`: the projection, jitted once per input shape."""
  return jax.jit(lambda params, prompts: spec.module.apply({'params': params}, prompts))


def project(spec: ProjectorSpec, params, prompts: np.ndarray, names: Sequence[str] = ()) -> np.ndarray:
  """Projects `[P, Es]` or `[N, P, Es]` host prompts; float32 numpy of the target shape."""
  p = spec.check_source(prompts, f'source prompts {list(names)}' if names else 'source prompt')
  return np.asarray(jax.device_get(apply_fn(spec)(params, p)), np.float32)
