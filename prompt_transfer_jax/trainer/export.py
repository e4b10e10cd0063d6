"""Writing a trained prompt in other tools' formats.

* `export_peft`: a Hugging Face PEFT prompt-tuning adapter directory, `adapter_config.json` +
  `adapter_model.safetensors` holding `prompt_embeddings` `[P, E]` float32 with
  `num_transformer_submodules: 1` (encoder-side prompt only, as here), which
  `peft.PeftModel.from_pretrained(base_model, directory)` loads.
* `export_numpy`: the google-research/prompt-tuning file `encoder.prompt.prompt.prompt` (NPY).

Both write to temporary names first and rename when complete.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import numpy as np

from prompt_transfer_jax.models import prompt as prompt_lib

PEFT_CONFIG_FILE = 'adapter_config.json'
PEFT_WEIGHTS_FILE = 'adapter_model.safetensors'
PEFT_PROMPT_KEY = 'prompt_embeddings'
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


def export_peft(prompt, out_dir: str, task_type: str = 'SEQ_2_SEQ_LM',
                base_model_name_or_path: Optional[str] = None, num_layers: Optional[int] = None,
                num_attention_heads: Optional[int] = None) -> str:
  """Writes the PEFT adapter directory `out_dir` (replacing an existing one); returns its path."""
  import safetensors.numpy
  value = np.ascontiguousarray(np.asarray(prompt, np.float32))
  if value.ndim != 2:
    raise ValueError(f'a prompt must be 2-D [P, E], got shape {value.shape}')
  config = peft_config(value.shape[0], value.shape[1], task_type, base_model_name_or_path,
                       num_layers, num_attention_heads)
  out_dir = os.path.abspath(out_dir)
  tmp = f'{out_dir}.tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  safetensors.numpy.save_file({PEFT_PROMPT_KEY: value}, os.path.join(tmp, PEFT_WEIGHTS_FILE),
                              metadata={'format': 'pt'})
  with open(os.path.join(tmp, PEFT_CONFIG_FILE), 'w') as f:
    json.dump(config, f, indent=2)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return out_dir


def export_numpy(prompt, out_dir: str) -> str:
  """Writes `out_dir/encoder.prompt.prompt.prompt` (NPY, prompt-tuning's name); returns its path."""
  path = os.path.join(out_dir, prompt_lib.T5X_PROMPT_NAME)
  prompt_lib.save_prompt(path, prompt)
  return path


def read_peft(directory: str) -> np.ndarray:
  """The `[P * num_transformer_submodules, E]` prompt of a PEFT adapter directory."""
  import safetensors.numpy
  path = os.path.join(directory, PEFT_WEIGHTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{directory}: no {PEFT_WEIGHTS_FILE}')
  tensors = safetensors.numpy.load_file(path)
  if PEFT_PROMPT_KEY not in tensors:
    raise ValueError(f'{path}: no {PEFT_PROMPT_KEY!r} tensor (has {", ".join(tensors)})')
  return tensors[PEFT_PROMPT_KEY].astype(np.float32)
