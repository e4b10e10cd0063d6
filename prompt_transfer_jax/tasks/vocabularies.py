"""The vocabularies of the task families, as seqio Vocabularies.

* `t5` / `mt5`: SentencePiece (+100 extra ids); the model file comes from `settings` at first use.
* `byt5`: `seqio.ByteVocabulary`.
* `roberta`: RoBERTa byte-level BPE from a local HF tokenizer directory (`tokenizer.json`, or
  `vocab.json` + `merges.txt`) read with `tokenizers`; ids are RoBERTa's own (`<s>` 0, `<pad>` 1,
  `</s>` 2, `<unk>` 3, `<mask>` 50264 in roberta-base/large).
* `synth`: a word-level vocabulary over the synthetic tasks' words (no file, no download).
"""
from __future__ import annotations

import functools
import os
import pathlib
from typing import Optional, Sequence

import numpy as np
import seqio

from prompt_transfer_jax.tasks import settings
from prompt_transfer_jax.tasks import synthetic
from prompt_transfer_jax.tasks._tf import tf

FAMILIES = ('t5', 'mt5', 'byt5', 'roberta', 'synth')


class ConfiguredSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """A SentencePiece vocabulary whose model path is the `settings` value `setting` at load time."""

  def __init__(self, setting: str, extra_ids: int = 100):
    self._setting = setting
    super().__init__(settings.get(setting), extra_ids=extra_ids)

  @property
  def sentencepiece_model_file(self) -> str:
    return settings.get(self._setting)

  def _model_context(self):
    path = settings.get(self._setting)
    if path != self._sentencepiece_model_file:
      self._sentencepiece_model_file, self._model = path, None
    if self._model is None:
      try:
        return super()._model_context()
      except (tf.errors.OpError, OSError) as e:
        raise ValueError(
            f'cannot read the SentencePiece model {path} ({type(e).__name__}); set '
            f'{settings.ENV_VARS[self._setting]} or tasks.configure({self._setting}=...)') from None
    return self._model


def load_roberta_tokenizer(path: str):
  """A `tokenizers.Tokenizer` from a directory (tokenizer.json or vocab.json + merges.txt) or,
  failing that, a tokenizer name already in the Hugging Face cache (via `transformers`)."""
  import tokenizers
  directory = pathlib.Path(path)
  if (directory / 'tokenizer.json').is_file():
    return tokenizers.Tokenizer.from_file(str(directory / 'tokenizer.json'))
  if (directory / 'vocab.json').is_file() and (directory / 'merges.txt').is_file():
    tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(
        str(directory / 'vocab.json'), str(directory / 'merges.txt')))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.add_special_tokens(['<s>', '<pad>', '</s>', '<unk>', '<mask>'])
    return tok
  if directory.exists():
    raise ValueError(f'RoBERTa tokenizer directory {path} has neither tokenizer.json nor '
                     'vocab.json + merges.txt')
  try:
    import transformers
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True).backend_tokenizer
  except Exception as e:  # noqa: BLE001 - any failure means "not available here"
    raise ValueError(
        f'RoBERTa tokenizer {path!r} is neither a local directory nor in the Hugging Face cache '
        f'({type(e).__name__}); set {settings.ENV_VARS["roberta_tokenizer"]} or '
        'tasks.configure(roberta_tokenizer=DIR)') from None


class RobertaBPEVocabulary(seqio.Vocabulary):
  """RoBERTa's BPE as a seqio Vocabulary. Text is encoded without special tokens and without a
  leading space (as the 1.0 code encodes label words); the task adds `<s>` / `</s>` itself."""

  def __init__(self, path: Optional[str] = None):
    self._path = os.fspath(path) if path is not None else None
    self._loaded: dict[str, object] = {}
    super().__init__(extra_ids=0)

  @property
  def path(self) -> str:
    return self._path or settings.get('roberta_tokenizer')

  @property
  def tokenizer(self):
    path = self.path
    if path not in self._loaded:
      self._loaded[path] = load_roberta_tokenizer(path)
    return self._loaded[path]

  def token_id(self, token: str) -> int:
    idx = self.tokenizer.token_to_id(token)
    if idx is None:
      raise ValueError(f'RoBERTa tokenizer {self.path} has no {token!r} token')
    return idx

  @property
  def bos_id(self) -> int:
    return self.token_id('<s>')

  @property
  def eos_id(self) -> int:
    return self.token_id('</s>')

  @property
  def pad_id(self) -> int:
    return self.token_id('<pad>')

  @property
  def unk_id(self) -> int:
    return self.token_id('<unk>')

  @property
  def mask_id(self) -> int:
    return self.token_id('<mask>')

  @property
  def _base_vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str) -> Sequence[int]:
    return self.tokenizer.encode(s, add_special_tokens=False).ids

  def _decode(self, ids) -> str:
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  def _encode_tf(self, s):
    def encode(text):
      return np.asarray(self._encode(np.asarray(text).item().decode('utf-8')), np.int32)
    ids = tf.numpy_function(encode, [s], tf.int32, stateful=False)
    ids.set_shape([None])
    return ids

  def _decode_tf(self, ids):
    def decode(row):
      return np.asarray(self._decode(row).encode('utf-8'), dtype=object)
    if ids.shape.rank == 1:
      return tf.numpy_function(decode, [ids], tf.string, stateful=False)
    return tf.map_fn(self._decode_tf, ids, fn_output_signature=tf.string)

  def __eq__(self, other):
    return isinstance(other, RobertaBPEVocabulary) and self.path == other.path

  def __hash__(self):
    return hash(('RobertaBPEVocabulary', self.path))

  def __getstate__(self):
    return {**self.__dict__, '_loaded': {}}

  def __str__(self) -> str:
    return f'RobertaBPEVocabulary(path={self.path})'


class WordVocabulary(seqio.Vocabulary):
  """Whitespace-split words: pad 0, eos 1, unk 2, then `words` in order; `size` pads the id space
  (unused ids decode as `<unk>`)."""

  def __init__(self, words: Sequence[str], size: Optional[int] = None):
    self._words = tuple(words)
    if len(set(self._words)) != len(self._words) or any(not w or w.split() != [w] for w in words):
      raise ValueError('WordVocabulary words must be distinct and contain no whitespace')
    self._ids = {w: i + 3 for i, w in enumerate(self._words)}
    self._size = size or len(self._words) + 3
    if self._size < len(self._words) + 3:
      raise ValueError(f'WordVocabulary size {self._size} < {len(self._words) + 3} needed')
    self._table = None
    super().__init__(extra_ids=0)

  @property
  def words(self) -> tuple[str, ...]:
    return self._words

  @property
  def eos_id(self) -> int:
    return 1

  @property
  def unk_id(self) -> int:
    return 2

  @property
  def _base_vocab_size(self) -> int:
    return self._size

  def _encode(self, s: str) -> Sequence[int]:
    return [self._ids.get(w, 2) for w in s.split()]

  def _decode(self, ids) -> str:
    pieces = []
    for i in ids:
      i = int(i)
      if i > 1:
        pieces.append(self._words[i - 3] if 3 <= i < len(self._words) + 3 else '<unk>')
    return ' '.join(pieces)

  def _lookup_table(self):
    if self._table is None:
      with tf.init_scope():
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(self._words), tf.range(3, len(self._words) + 3, dtype=tf.int64))
        self._table = tf.lookup.StaticHashTable(init, default_value=2)
    return self._table

  def _encode_tf(self, s):
    return tf.cast(self._lookup_table().lookup(tf.strings.split(s)), tf.int32)

  def _decode_tf(self, ids):
    unused = ['<unk>'] * (self._size - len(self._words) - 3)
    tokens = tf.constant(['', '', '<unk>', *self._words, *unused])
    text = tf.strings.reduce_join(tf.gather(tokens, ids), separator=' ', axis=-1)
    return tf.strings.strip(tf.strings.regex_replace(text, ' +', ' '))

  def __eq__(self, other):
    return isinstance(other, WordVocabulary) and (self._words, self._size) == (other._words, other._size)

  def __hash__(self):
    return hash((self._words, self._size))

  def __getstate__(self):
    return {**self.__dict__, '_table': None}

  def __str__(self) -> str:
    return f'WordVocabulary({len(self._words)} words, size={self._size})'


@functools.cache
def get_vocabulary(family: str) -> seqio.Vocabulary:
  """The one shared vocabulary object of a family (tasks of a family share it, so mixtures work)."""
  if family == 't5':
    return ConfiguredSentencePieceVocabulary('t5_vocab')
  if family == 'mt5':
    return ConfiguredSentencePieceVocabulary('mt5_vocab')
  if family == 'byt5':
    return seqio.ByteVocabulary()
  if family == 'roberta':
    return RobertaBPEVocabulary()
  if family == 'synth':
    return WordVocabulary(synthetic.VOCAB_WORDS, synthetic.SYNTH_VOCAB_SIZE)
  raise ValueError(f'unknown task family {family!r}; choose one of {FAMILIES}')

