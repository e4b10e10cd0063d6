"""RoBERTa seen through the backbone interface: classification by label words at the `<mask>` slot.

Batches hold `encoder_input_tokens` `[B, L]` (`<s> text </s>` right-padded with `pad_token_id`,
1 in RoBERTa's vocabulary) and `label` `[B]` (class index). The prompt is `[P, E]` or `[B, P, E]`
and is laid out as `config.prompt_layout` says (see `models/roberta.py`); `prompt=None` means no
trained rows: the `<mask>` slot alone (mask_slot layout) or no prompt rows (plain layout).
Label words are the first token of each class's verbalizer; the loss and the scores are a softmax
restricted to them, as in the paper's `PromptRoberta`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.models.backbone import cross_entropy
from prompt_transfer_jax.models.t5 import FFN_PRE_ACTIVATION


@dataclasses.dataclass(frozen=True)
class RobertaBackbone:
  """`RoBERTa(config)` behind the `Backbone` protocol.

  `label_token_ids`: one verbalizer token id per class, in class-index order (needed by
  `token_loss`; `score_labels` takes them as its `label_targets` argument instead).
  """
  config: roberta_lib.RobertaConfig
  label_token_ids: tuple[int, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, 'label_token_ids', tuple(int(i) for i in self.label_token_ids))
    for i in self.label_token_ids:
      if not 0 <= i < self.config.vocab_size:
        raise ValueError(f'label token id {i} is outside the vocabulary [0, {self.config.vocab_size})')

  @property
  def model(self) -> roberta_lib.RoBERTa:
    return roberta_lib.RoBERTa(self.config)

  @property
  def embed_dim(self) -> int:
    return self.config.hidden_size

  @property
  def ffn_dim(self) -> int:
    return self.config.intermediate_size

  def embedding_table(self, params):
    return params['embeddings']['word_embeddings']['embedding']

  def _prompt(self, prompt):
    if prompt is not None:
      return prompt
    rows = 1 if self.config.prompt_layout == 'mask_slot' else 0
    return jnp.zeros((rows, self.config.hidden_size), jnp.dtype(self.config.dtype))

  def mask_logits(self, params, prompt, batch, dropout_rng=None):
    """Full-vocabulary MLM logits `[B, V]` at the `<mask>` slot."""
    rngs = {'dropout': dropout_rng} if dropout_rng is not None else {}
    return self.model.apply({'params': params}, batch['encoder_input_tokens'], self._prompt(prompt),
                            enable_dropout=dropout_rng is not None, rngs=rngs,
                            method=roberta_lib.RoBERTa.prediction_logits)

  def label_logits(self, params, prompt, batch, label_ids, dropout_rng=None):
    """MLM logits of the label words `label_ids` `[K]` at the `<mask>` slot: `[B, K]`."""
    return jnp.take(self.mask_logits(params, prompt, batch, dropout_rng),
                    jnp.asarray(label_ids, jnp.int32), axis=-1)

  def token_loss(self, params, prompt, batch, dropout_rng=None, z_loss: float = 0.0,
                 label_smoothing: float = 0.0):
    """(cross-entropy over the label words per example [B], ones [B]): one prediction each."""
    if not self.label_token_ids:
      raise ValueError('RobertaBackbone.label_token_ids is empty: set the task verbalizer ids '
                       '(one per class) before computing the loss')
    logits = self.label_logits(params, prompt, batch, self.label_token_ids, dropout_rng)
    return cross_entropy(logits[:, None], batch['label'][:, None],
                         jnp.ones_like(batch['label'][:, None], jnp.float32), z_loss, label_smoothing)

  def score_labels(self, params, prompt, batch, label_targets):
    """log-softmax over the K label words (first id of each `label_targets` row `[K, T]`): `[B, K]`."""
    label_ids = jnp.asarray(label_targets)[:, 0]
    logits = self.label_logits(params, prompt, batch, label_ids)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)

  def ffn_activations(self, params, prompt, batch, stack: str = 'encoder',
                      kind: str = FFN_PRE_ACTIVATION):
    """FFN activations of every layer: `[B, layers, S, intermediate_size]` (S = prompt + text)."""
    if stack != 'encoder':
      raise ValueError(f"RoBERTa has only an 'encoder' stack, got stack={stack!r}")
    _, state = self.model.apply({'params': params}, batch['encoder_input_tokens'],
                                self._prompt(prompt), mutable=['intermediates'],
                                method=roberta_lib.RoBERTa.encode)
    layers = state['intermediates']['encoder']
    return jnp.stack([layers[f'layers_{i}']['mlp'][kind][0]
                      for i in range(self.config.num_hidden_layers)], axis=1)
