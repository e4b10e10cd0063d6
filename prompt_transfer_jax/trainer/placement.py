"""Moving arrays between hosts and the mesh, the same way on one process or many."""
from __future__ import annotations

import jax
import numpy as np


def place(tree, shardings):
  """Host numpy arrays (identical on every process) -> global arrays with `shardings`."""
  return jax.tree.map(
      lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx]),
      tree, shardings)


def host(x) -> np.ndarray:
  """A replicated (or single-device) global array as numpy, on any process."""
  return np.asarray(x.addressable_shards[0].data)
