"""Resume guard: a run on a MODEL_DIR that already holds a run must be the same run.

Before anything is written, the operative gin config of the new run is compared with
`MODEL_DIR/config.gin`: a change of task, model (checkpoint, preset, config overrides), prompt
length or batch size would mix two runs into one record (or change the data order), so it is
refused unless forced; TRAIN_STEPS below the latest saved step is always refused.
"""
from __future__ import annotations

import ast
import os
import re
from typing import Mapping, Optional

CONFIG_FILE = 'config.gin'
# What may not change on resume: label -> pattern of operative-config names (scopes allowed).
GUARDED = {
    'task': r'train\.mixture_or_task_name',
    'model': r'(t5|roberta)_model\.(checkpoint|preset|config_overrides)',
    'prompt length': r'train\.prompt_length',
    'batch size': r'train\.batch_size',
}
_BINDING = re.compile(r'^([A-Za-z_][\w./]*)\s*=\s*(.*)$')


class ResumeRefused(ValueError):
  """The new run's configuration does not continue the run in MODEL_DIR."""


def parse_operative(text: str) -> dict[str, str]:
  """`{name: value text}` of gin's operative config (continuation lines joined, comments off)."""
  lines, current = [], ''
  for raw in text.splitlines():
    line = raw.rstrip()
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    if current and (raw[:1].isspace() or current.endswith('\\')):
      current = current.rstrip('\\').rstrip() + ' ' + line.strip()
    else:
      if current:
        lines.append(current)
      current = line
  if current:
    lines.append(current)
  out = {}
  for line in lines:
    match = _BINDING.match(line)
    if match:
      out[match.group(1)] = match.group(2).strip()
  return out


def _value(bindings: Mapping[str, str], text: str, depth: int = 0):
  """A binding's value with `%MACRO` references followed; Python literals parsed."""
  text = text.strip()
  if text.startswith('%') and depth < 20 and text[1:] in bindings:
    return _value(bindings, bindings[text[1:]], depth + 1)
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return ''.join(text.split())


def guarded_values(text: str) -> dict[str, dict]:
  """`{label: {name: value}}` of the GUARDED settings in an operative config (scope dropped)."""
  bindings = parse_operative(text)
  out = {label: {} for label in GUARDED}
  for name, value in bindings.items():
    base = name.rsplit('/', 1)[-1]
    for label, pattern in GUARDED.items():
      if re.fullmatch(r'(ptj\.)?' + pattern, base):
        out[label][re.sub(r'^ptj\.', '', base)] = _value(bindings, value)
  return out


def differences(saved_text: str, new_text: str) -> list[str]:
  """Human-readable changes of the GUARDED settings from `saved_text` to `new_text`."""
  saved, new = guarded_values(saved_text), guarded_values(new_text)
  changes = []
  for label in GUARDED:
    for name in sorted(set(saved[label]) | set(new[label])):
      old, now = saved[label].get(name, '<unset>'), new[label].get(name, '<unset>')
      if old != now:
        changes.append(f'{label} ({name}) {old!r} -> {now!r}')
  return changes


def check_resume(model_dir: str, new_config: str, latest_step: Optional[int], train_steps: int,
                 force: bool = False) -> None:
  """Raises `ResumeRefused` (one line) if the run in `model_dir` cannot be continued by a run
  with operative config `new_config` and `train_steps`; call before writing anything."""
  if latest_step is not None and int(train_steps) < int(latest_step):
    raise ResumeRefused(f'{model_dir} holds a checkpoint at step {latest_step}, beyond '
                        f'TRAIN_STEPS={train_steps}; raise TRAIN_STEPS or use a new MODEL_DIR')
  path = os.path.join(model_dir, CONFIG_FILE)
  if force or latest_step is None or not os.path.exists(path):
    return
  with open(path) as f:
    changes = differences(f.read(), new_config)
  if changes:
    raise ResumeRefused(f'{model_dir} holds another run: {"; ".join(changes)}; use a new '
                        'MODEL_DIR, or --force_resume to continue it anyway')
