"""Where the task data and the vocabularies live, resolved at first use (not at registration).

Each setting is read, in order, from `configure(...)` (also a gin configurable), an environment
variable, then a default, so tests, gin files and users can point tasks elsewhere after import.

| setting            | environment variable      | default                                                     |
|--------------------|---------------------------|-------------------------------------------------------------|
| data_dir           | PTJ_DATA_DIR              | `data` (local files for tweet_eval, ETHICS, SemEval laptop / restaurant) |
| t5_vocab           | PTJ_T5_VOCAB              | gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model |
| mt5_vocab          | PTJ_MT5_VOCAB             | gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model |
| roberta_tokenizer  | PTJ_ROBERTA_TOKENIZER     | `roberta-large` (a local tokenizer directory, or a name in the HF cache) |

TFDS datasets are read from TFDS's own `TFDS_DATA_DIR` (default ~/tensorflow_datasets).
"""
from __future__ import annotations

import os
from typing import Optional

import gin

ENV_VARS = {
    'data_dir': 'PTJ_DATA_DIR',
    't5_vocab': 'PTJ_T5_VOCAB',
    'mt5_vocab': 'PTJ_MT5_VOCAB',
    'roberta_tokenizer': 'PTJ_ROBERTA_TOKENIZER',
}
DEFAULTS = {
    'data_dir': 'data',
    't5_vocab': 'gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model',
    'mt5_vocab': 'gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model',
    'roberta_tokenizer': 'roberta-large',
}
_overrides: dict[str, str] = {}


@gin.configurable(module='ptj_tasks')
def configure(data_dir: Optional[str] = None, t5_vocab: Optional[str] = None,
              mt5_vocab: Optional[str] = None, roberta_tokenizer: Optional[str] = None) -> dict:
  """Overrides settings (None keeps the current value); returns the resolved settings."""
  given = dict(data_dir=data_dir, t5_vocab=t5_vocab, mt5_vocab=mt5_vocab,
               roberta_tokenizer=roberta_tokenizer)
  _overrides.update({k: os.fspath(v) for k, v in given.items() if v is not None})
  return {name: get(name) for name in DEFAULTS}


def reset(*names: str) -> None:
  """Drops `configure` overrides (all of them when no name is given)."""
  for name in names or list(_overrides):
    _overrides.pop(name, None)


def get(name: str) -> str:
  if name not in DEFAULTS:
    raise ValueError(f'unknown tasks setting {name!r}; choose one of {sorted(DEFAULTS)}')
  if name in _overrides:
    return _overrides[name]
  return os.environ.get(ENV_VARS[name]) or DEFAULTS[name]
