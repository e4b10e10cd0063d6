"""Checks on checkpoint tensors as they are read: every leaf must be floating point.

A safetensors file with bool or int tensors has the right names and shapes yet is no model;
casting it to the parameter dtype would load and train silently. The readers call
`check_floating` on each raw tensor (before any cast) or `check_tree` on what they read.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp


def check_floating(value: Any, where: str) -> Any:
  """`value` if its dtype is floating point (float16/32/64, bfloat16); else a one-line error."""
  dtype = getattr(value, 'dtype', None)
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f'{where}: checkpoint tensors must be floating point, got dtype {dtype} '
                     f'(shape {getattr(value, "shape", None)})')
  return value


def check_tree(tree: Mapping, where: str) -> Mapping:
  """Checks every leaf of a nested mapping with `check_floating`; returns `tree`."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    check_floating(leaf, f'{where}: {jax.tree_util.keystr(path, simple=True, separator="/")}')
  return tree
