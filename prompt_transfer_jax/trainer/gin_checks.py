"""Checks of a parsed gin configuration that gin itself leaves out.

Gin ignores a macro that is set but never referenced (`--gin.TRAIN_STEP=5`, `PROMPT_LENGHT = 7`
in a file) and only fails late on a macro referenced but never set. `check_macros` makes both
one-line errors with the closest known name: every unused macro set by a command-line binding,
and every unused macro set in a file whose name is very close to a used one (a gin file may set
macros that only another entry point uses). `positive_int` checks integer-valued settings
(`TRAIN_STEPS=2.5` is an error, not 3 steps).
"""
from __future__ import annotations

import difflib
import numbers
import re
from typing import Sequence

import gin

_MACRO = 'gin.macro'
TYPO_CUTOFF = 0.85    # difflib ratio above which an unused file macro is taken for a typo
# Macros read by the runner itself rather than referenced by a binding.
RUNNER_MACROS = frozenset({'MIXTURE_OR_TASK_MODULE'})
_BINDING_NAME = re.compile(r'^\s*([A-Za-z_][\w.]*)\s*=')


def _macro_name(scoped_selector: str) -> str:
  return scoped_selector[:-len('/' + _MACRO)]


def macro_usage() -> tuple[set[str], set[str]]:
  """(macros set, macros referenced) in the current gin configuration."""
  config = gin.config._CONFIG  # noqa: SLF001  (gin has no public view of its bindings)
  defined = {scope for scope, selector in config if selector == _MACRO}
  referenced = {_macro_name(ref.scoped_selector) for ref in gin.config.iterate_references(
      config, to=gin.get_configurable(gin.config.macro))}
  return defined, referenced


def _hint(name: str, candidates, cutoff: float = 0.7) -> str:
  close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=cutoff)
  return f' (did you mean {close[0]}?)' if close else ''


def macro_problems(bindings: Sequence[str] = ()) -> list[str]:
  """Unused macros (see the module doc) and macros referenced but never set."""
  defined, referenced = macro_usage()
  from_bindings = {m.group(1) for m in map(_BINDING_NAME.match, bindings) if m}
  problems = []
  for name in sorted(defined - referenced - RUNNER_MACROS):
    if name in from_bindings or _hint(name, referenced, TYPO_CUTOFF):
      problems.append(f'gin macro {name} is set but never used{_hint(name, referenced)}')
  for name in sorted(referenced - defined):
    problems.append(f'gin macro {name} is used (%{name}) but never set{_hint(name, defined)}')
  return problems


def check_macros(bindings: Sequence[str] = ()) -> None:
  """Raises a one-line ValueError listing `macro_problems`; call right after parsing gin."""
  problems = macro_problems(bindings)
  if problems:
    raise ValueError('; '.join(problems))


def macro_value(name: str, default=None):
  """The value bound to gin macro `name` (`NAME = value`), `default` if it is not set."""
  bindings = gin.config._CONFIG.get((name, _MACRO))  # noqa: SLF001
  return default if bindings is None else bindings.get('value', default)


def task_modules() -> list[str]:
  """MIXTURE_OR_TASK_MODULE (T5X's name): a module name or a list of them, [] if unset."""
  value = macro_value('MIXTURE_OR_TASK_MODULE')
  if value is None:
    return []
  values = list(value) if isinstance(value, (list, tuple)) else [value]
  if not all(isinstance(v, str) for v in values):
    raise ValueError(f'MIXTURE_OR_TASK_MODULE must be a module name or a list of them, got {value!r}')
  return values


def positive_int(name: str, value) -> int:
  """`value` as an int if it is a whole number >= 1 (not a bool, not 2.5); else a one-line error."""
  whole = (isinstance(value, numbers.Integral) or
           (isinstance(value, numbers.Real) and float(value).is_integer()))
  if isinstance(value, bool) or not whole or value < 1:
    raise ValueError(f'{name} must be a positive integer, got {value!r}')
  return int(value)
