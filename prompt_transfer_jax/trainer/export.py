"""Writing a trained prompt in other tools' formats.

* `export_peft`: a Hugging Face PEFT prompt-tuning adapter directory, `adapter_config.json` +
  `adapter_model.safetensors` holding `prompt_embeddings` `[P, E]` float32 with
  `num_transformer_submodules: 1` (encoder-side prompt only, as here), which
  `peft.PeftModel.from_pretrained(base_model, directory)` loads.
* `export_numpy`: the google-research/prompt-tuning file `encoder.prompt.prompt.prompt` (NPY).

Both write into a new or empty directory, or into a directory holding only a previous export
(recognized by its marker file `.ptj_export`); anything else is refused (`ExportRefused`), so an
export never deletes a run or other user files. Files are written under temporary names first
and renamed when complete. `import_prompt` reads a prompt back from a `.npy` file, a MODEL_DIR
(its best_prompt.npy) or a PEFT adapter directory, checked like every prompt.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import numpy as np

from prompt_transfer_jax import files
from prompt_transfer_jax.models import prompt as prompt_lib

PEFT_CONFIG_FILE = 'adapter_config.json'
PEFT_WEIGHTS_FILE = 'adapter_model.safetensors'
PEFT_PROMPT_KEY = 'prompt_embeddings'
MARKER_FILE = '.ptj_export'
EXPORT_FILES = {'peft': (PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE), 'numpy': (prompt_lib.T5X_PROMPT_NAME,)}
PEFT_TASK_TYPES = ('SEQ_2_SEQ_LM', 'CAUSAL_LM', 'SEQ_CLS', 'TOKEN_CLS', 'QUESTION_ANS',
                   'FEATURE_EXTRACTION')


def peft_config(num_virtual_tokens: int, token_dim: int, task_type: str = 'SEQ_2_SEQ_LM',
                base_model_name_or_path: Optional[str] = None,
                num_layers: Optional[int] = None,
                num_attention_heads: Optional[int] = None) -> dict:
  """The `adapter_config.json` of a PEFT PROMPT_TUNING adapter with an encoder-only prompt."""
  if task_type not in PEFT_TASK_TYPES:
    raise ValueError(f'unknown PEFT task_type {task_type!r}; choose one of {", ".join(PEFT_TASK_TYPES)}')
  return {
      'peft_type': 'PROMPT_TUNING', 'task_type': task_type,
      'num_virtual_tokens': int(num_virtual_tokens), 'token_dim': int(token_dim),
      'num_transformer_submodules': 1, 'num_attention_heads': num_attention_heads,
      'num_layers': num_layers, 'prompt_tuning_init': 'RANDOM', 'prompt_tuning_init_text': None,
      'tokenizer_name_or_path': None, 'tokenizer_kwargs': None,
      'base_model_name_or_path': base_model_name_or_path, 'revision': None,
      'inference_mode': True, 'auto_mapping': None, 'modules_to_save': None,
  }


class ExportRefused(ValueError):
  """The output directory holds something that is not a previous export."""


def check_out_dir(out_dir: str) -> None:
  """Refuses `out_dir` unless it is absent, empty, or a previous export (marker + its files)."""
  if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
    raise ExportRefused(f'--out={out_dir} is an existing file; choose a new or empty directory')
  if not os.path.isdir(out_dir):
    return
  present = set(os.listdir(out_dir))
  if not present:
    return
  known = {MARKER_FILE}.union(*EXPORT_FILES.values())
  if MARKER_FILE in present and present <= known:
    return
  others = sorted(present - known)
  shown = ', '.join(others[:3]) + (', ...' if len(others) > 3 else '')
  raise ExportRefused(f'--out={out_dir} is not empty and is not a previous `ptj export` (it holds '
                      f'{shown or ", ".join(sorted(present))}); choose a new or empty directory')


def _write_export(out_dir: str, kind: str, write) -> str:
  """Fills a temporary sibling with `write(tmp)`, then renames it to `out_dir`, or (into an
  existing empty directory or previous export) renames its files in, marker last; no temporary
  survives a failure."""
  out_dir = os.path.abspath(out_dir)
  check_out_dir(out_dir)
  tmp = files.atomic_path(out_dir)
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    write(tmp)
    files.write_json(os.path.join(tmp, MARKER_FILE), {'format': kind})
    if not os.path.isdir(out_dir):
      os.replace(tmp, out_dir)
      return out_dir
    for name in set(os.listdir(out_dir)) - set(EXPORT_FILES[kind]) - {MARKER_FILE}:
      os.remove(os.path.join(out_dir, name))      # the other format's files (checked above)
    for name in (*EXPORT_FILES[kind], MARKER_FILE):
      os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out_dir


def export_peft(prompt, out_dir: str, task_type: str = 'SEQ_2_SEQ_LM',
                base_model_name_or_path: Optional[str] = None, num_layers: Optional[int] = None,
                num_attention_heads: Optional[int] = None) -> str:
  """Writes the PEFT adapter directory `out_dir` (see `check_out_dir`); returns its path."""
  import safetensors.numpy
  value = np.ascontiguousarray(files.check_prompt(np.asarray(prompt), 'the exported prompt'))
  config = peft_config(value.shape[0], value.shape[1], task_type, base_model_name_or_path,
                       num_layers, num_attention_heads)

  def write(tmp):
    safetensors.numpy.save_file({PEFT_PROMPT_KEY: value}, os.path.join(tmp, PEFT_WEIGHTS_FILE),
                                metadata={'format': 'pt'})
    with open(os.path.join(tmp, PEFT_CONFIG_FILE), 'w') as f:
      json.dump(config, f, indent=2)

  return _write_export(out_dir, 'peft', write)


def export_numpy(prompt, out_dir: str) -> str:
  """Writes `out_dir/encoder.prompt.prompt.prompt` (NPY, prompt-tuning's name); returns its path."""
  value = files.check_prompt(np.asarray(prompt), 'the exported prompt')

  def write(tmp):
    with open(os.path.join(tmp, prompt_lib.T5X_PROMPT_NAME), 'wb') as f:
      np.save(f, value, allow_pickle=False)

  return os.path.join(_write_export(out_dir, 'numpy', write), prompt_lib.T5X_PROMPT_NAME)


def read_peft(directory: str) -> np.ndarray:
  """The `[P * num_transformer_submodules, E]` prompt of a PEFT adapter directory, checked
  against its adapter_config.json (PROMPT_TUNING, num_virtual_tokens, token_dim)."""
  import safetensors
  import safetensors.numpy
  path = os.path.join(directory, PEFT_WEIGHTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{directory}: no {PEFT_WEIGHTS_FILE}')
  config_path = os.path.join(directory, PEFT_CONFIG_FILE)
  config = files.read_json(config_path, 'PEFT adapter config') if os.path.exists(config_path) else {}
  if config.get('peft_type', 'PROMPT_TUNING') != 'PROMPT_TUNING':
    raise ValueError(f'{config_path}: peft_type is {config.get("peft_type")!r}, only PROMPT_TUNING '
                     'adapters hold a soft prompt')
  try:
    tensors = safetensors.numpy.load_file(path)
  except (safetensors.SafetensorError, OSError, ValueError) as e:
    raise ValueError(f'{path}: not a readable safetensors file ({" ".join(str(e).split())})') from None
  if PEFT_PROMPT_KEY not in tensors:
    raise ValueError(f'{path}: no {PEFT_PROMPT_KEY!r} tensor (has {", ".join(tensors) or "none"})')
  expected = None
  if 'num_virtual_tokens' in config and 'token_dim' in config:
    rows = int(config['num_virtual_tokens']) * int(config.get('num_transformer_submodules') or 1)
    expected = (rows, int(config['token_dim']))
  return files.check_prompt(tensors[PEFT_PROMPT_KEY], f'{path}[{PEFT_PROMPT_KEY}]', expected)


def import_prompt(path: str) -> np.ndarray:
  """A checked prompt from a `.npy` file, a MODEL_DIR (its best_prompt.npy) or a PEFT adapter
  directory (its `prompt_embeddings`)."""
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, PEFT_WEIGHTS_FILE)):
      return read_peft(path)
    from prompt_transfer_jax.trainer import run_record
    if os.path.exists(os.path.join(path, run_record.METRICS_FILE)):
      problem = run_record.verify_best_prompt(path)   # runs from before checksums: unverified
      if problem is not None and not problem.endswith('no checksum recorded'):
        raise ValueError(f'{problem}; export another prompt file of the run')
    path = os.path.join(path, run_record.BEST_PROMPT_FILE)
  return files.read_prompt(path)
