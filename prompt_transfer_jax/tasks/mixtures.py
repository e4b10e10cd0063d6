"""Mixtures: per task type, all classification tasks, and all tasks, for each family and layout.

Names: `{family}_type_{sa|nli|ej|pi|qa|sum}`, `{family}_classification`, `{family}_all` (paper
tasks; `_v1` appended for the 1.0 layouts), `{family}_synth_type_{sa|nli|pi}` and
`{family}_synth_all` (synthetic; the `synth` family drops the `{family}_` prefix). Each task is
sampled in proportion to its training-set size, capped at `RATE_CAP` examples (T5's
"examples-proportional mixing").
"""
from __future__ import annotations

import functools
from typing import Optional

import seqio

from prompt_transfer_jax.tasks import registry
from prompt_transfer_jax.tasks import templates

RATE_CAP = 2 ** 16

_MIXTURES: dict[str, tuple[str, ...]] = {}


def rate(task: seqio.Task, cap: Optional[int] = RATE_CAP) -> float:
  """min(number of training examples, cap)."""
  return seqio.mixing_rate_num_examples(task, maximum=cap)


def _add(name: str, tasks: list[str]) -> None:
  if len(tasks) < 2:
    return
  _MIXTURES[name] = tuple(tasks)
  if name not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(name, tasks, default_rate=functools.partial(rate, cap=RATE_CAP))


def register_all() -> None:
  """Registers the mixtures of every registered task family (idempotent)."""
  groups: dict[tuple[str, str, bool], list] = {}
  for name in registry.task_names():
    info = registry.get_task_info(name)
    synth = info.key.startswith('synth_')
    groups.setdefault((info.family, info.layout, synth), []).append(info)
  for (family, layout, synth), infos in groups.items():
    prefix = 'synth_' if family == 'synth' else f'{family}_synth_' if synth else f'{family}_'
    suffix = '_v1' if layout == 'v1' else ''
    for task_type in templates.TASK_TYPES:
      _add(f'{prefix}type_{task_type.lower()}{suffix}',
           [i.name for i in infos if i.task_type == task_type])
    if not synth:
      _add(f'{prefix}classification{suffix}', [i.name for i in infos if i.is_classification])
    _add(f'{prefix}all{suffix}', [i.name for i in infos])


def mixture_names() -> list[str]:
  return list(_MIXTURES)


def mixture_tasks(name: str) -> tuple[str, ...]:
  if name not in _MIXTURES:
    raise registry._unknown(name, 'mixture', _MIXTURES)  # noqa: SLF001
  return _MIXTURES[name]
