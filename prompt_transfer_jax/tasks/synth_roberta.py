"""A word-level RoBERTa tokenizer over the synthetic vocabulary (`roberta_synth_*` without downloads).

The `roberta_synth_*` tasks read RoBERTa's byte-level BPE by default (`roberta-large`, from the
Hugging Face cache). For the demo, the study and the tests a tiny RoBERTa needs none of it:
`write_tokenizer(directory)` writes a `tokenizer.json` with RoBERTa's special ids (`<s>` 0,
`<pad>` 1, `</s>` 2, `<unk>` 3), every word of `synthetic.VOCAB_WORDS` (label words included, one
token each) and `<mask>` as the last id of `SYNTH_VOCAB_SIZE`, so a RoBERTa with
`vocab_size=SYNTH_VOCAB_SIZE` finds its `<mask>` at the default place.
"""
from __future__ import annotations

import os

from prompt_transfer_jax.files import atomic_write
from prompt_transfer_jax.tasks import settings, synthetic

SPECIAL = ('<s>', '<pad>', '</s>', '<unk>')
TOKENIZER_FILE = 'tokenizer.json'


def vocabulary() -> dict[str, int]:
  """Token -> id of the synthetic RoBERTa tokenizer."""
  vocab = {token: i for i, token in enumerate(SPECIAL)}
  vocab.update({w: i + len(SPECIAL) for i, w in enumerate(synthetic.VOCAB_WORDS)})
  if len(vocab) >= synthetic.SYNTH_VOCAB_SIZE:
    raise ValueError(f'{len(vocab)} synthetic tokens leave no room for <mask> in '
                     f'SYNTH_VOCAB_SIZE={synthetic.SYNTH_VOCAB_SIZE}')
  vocab['<mask>'] = synthetic.SYNTH_VOCAB_SIZE - 1
  return vocab


def write_tokenizer(directory: str) -> str:
  """Writes `directory/tokenizer.json` (kept when present); returns the directory."""
  import tokenizers
  path = os.path.join(directory, TOKENIZER_FILE)
  if not os.path.exists(path):
    os.makedirs(directory, exist_ok=True)
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocabulary(), unk_token='<unk>'))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL) + ['<mask>'])
    text = tok.to_str()
    with atomic_write(path) as f:
      f.write(text)
  return directory


def use(directory: str) -> str:
  """Writes the tokenizer into `directory` and makes it the `roberta_tokenizer` setting."""
  settings.configure(roberta_tokenizer=write_tokenizer(directory))
  return directory
