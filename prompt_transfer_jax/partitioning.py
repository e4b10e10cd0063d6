"""Device mesh, T5X logical-axis rules and placement: where every parameter and batch lives.

The logical axis names are declared once, in the models; this module maps them to a
`('data', 'model')` mesh with T5X's `standard_logical_axis_rules` (plus replicated prompt axes),
and moves host arrays onto the mesh (`place`) and back (`host`) the same way on one process or
many.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LogicalRules = Sequence[tuple[str, Optional[str]]]

PROMPT_RULES: LogicalRules = (('prompt', None), ('prompt_embed', None))


def standard_logical_axis_rules(activation_partitioning_dims: int = 1,
                                parameter_partitioning_dims: int = 1,
                                additional_rules: LogicalRules = PROMPT_RULES) -> tuple:
  """T5X's priority-ordered rules (first match wins per array), 1-D or 2-D partitioning."""
  if activation_partitioning_dims not in (1, 2) or parameter_partitioning_dims not in (1, 2):
    raise ValueError('partitioning dims must be 1 or 2, got '
                     f'activation={activation_partitioning_dims} parameter={parameter_partitioning_dims}')
  rules = [('batch', 'data'), ('vocab', 'model'), ('embed', None), ('mlp', 'model'),
           ('heads', 'model'), ('kv', None), ('joined_kv', 'model')]
  if activation_partitioning_dims == 2 and parameter_partitioning_dims == 1:
    rules = [('batch', 'data'), ('vocab', 'model'), ('mlp', 'model'), ('heads', 'model'),
             ('kv', None), ('joined_kv', 'model'), ('embed', 'model')]
  elif activation_partitioning_dims == 1 and parameter_partitioning_dims == 2:
    rules = [('batch', 'data'), ('vocab', 'model'), ('mlp', 'model'), ('heads', 'model'),
             ('kv', None), ('joined_kv', 'model'), ('embed', 'data')]
  elif activation_partitioning_dims == 2 and parameter_partitioning_dims == 2:
    rules = [('batch', 'data'), ('vocab', 'model'), ('mlp', 'model'), ('heads', 'model'),
             ('kv', None), ('joined_kv', 'model'), ('embed', 'model'), ('embed', 'data')]
  replicated = [('relpos_buckets', None), ('abspos_buckets', None), ('length', None),
                ('layers', None), ('stack', None), ('mlp_activations', None),
                ('token_types', None)]
  return tuple(rules + replicated + list(additional_rules))


def make_mesh(model_parallel: int = 1, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A `('data', 'model')` mesh with Auto axis types over all (or the given) devices."""
  devices = list(jax.devices() if devices is None else devices)
  if model_parallel < 1 or len(devices) % model_parallel:
    raise ValueError(f'model_parallel={model_parallel} does not divide the {len(devices)} devices')
  grid = np.asarray(devices).reshape(len(devices) // model_parallel, model_parallel)
  return Mesh(grid, ('data', 'model'),
              axis_types=(jax.sharding.AxisType.Auto, jax.sharding.AxisType.Auto))


def logical_shardings(boxed_tree, mesh: Mesh, rules: LogicalRules):
  """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (e.g. from `eval_shape`)."""
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def constrain_activations(fn: Callable, mesh: Mesh, rules: Optional[LogicalRules] = None) -> Callable:
  """`fn` traced under `mesh` and the logical-axis `rules` (default: the standard ones).

  The models' `nn.with_logical_constraint` calls are no-ops without both (flax needs the rules
  and a mesh in context): XLA would then choose the activations' layouts itself, e.g. replicate
  the attention logits instead of splitting heads over 'model' and the batch over 'data'. T5X
  lowers its steps under the same context. Use on the function passed to `jax.jit`.
  """
  rules = standard_logical_axis_rules() if rules is None else rules

  @functools.wraps(fn)
  def constrained(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(rules):
      return fn(*args, **kwargs)

  return constrained


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split on their leading dimension across the `data` axis."""
  return NamedSharding(mesh, PartitionSpec('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (prompts, label targets, optimizer state)."""
  return NamedSharding(mesh, PartitionSpec())


def place(tree, shardings):
  """Host numpy arrays (identical on every process) -> global arrays with `shardings`."""
  return jax.tree.map(
      lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx]),
      tree, shardings)


def host(x) -> np.ndarray:
  """A replicated (or single-device) global array as numpy, on any process."""
  return np.asarray(x.addressable_shards[0].data)


class PlacedParams(NamedTuple):
  """The start of every run on a mesh (`FrozenModel.on_mesh`)."""
  mesh: Mesh
  shardings: Any     # tree of NamedSharding, like the parameters
  params: Any        # the parameters as global arrays
