"""Model FLOPs of a T5 train step, counted matmul by matmul (BigScience's T5 FLOP accounting).

Forward, per example (L = encoder length including the prompt, T = target length):

* encoder, per layer: Q, K, V, O projections `8 L d h` + MLP `2 L d f (n_wi + 1)` + attention
  scores and weighted values `4 L^2 h`;
* decoder, per layer: self-attention `8 T d h` + `4 T^2 h`, cross-attention Q, O `4 T d h`, K, V
  on the encoder output `4 L d h`, scores `4 T L h`, MLP `2 T d f (n_wi + 1)`;
* LM head `2 T d V`.

Full fine-tuning costs 3x forward (forward, activation gradients, weight gradients). Prompt
tuning needs no weight gradients: weight matmuls cost 2x forward; attention-score matmuls, whose
operands are both activations, still cost 3x (see performance-and-interop.md, A2).
"""
from __future__ import annotations

from prompt_transfer_jax.config import T5Config


def forward_flops(config: T5Config, input_length: int, target_length: int) -> dict:
  """{'weights': ..., 'attention': ...} forward matmul FLOPs of one example."""
  d, h, f = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
  wi = len(config.mlp_activations)
  L, T = input_length, target_length  # noqa: N806
  enc_w = 8 * L * d * h + 2 * L * d * f * (wi + 1)
  enc_a = 4 * L * L * h
  dec_w = 8 * T * d * h + 4 * T * d * h + 4 * L * d * h + 2 * T * d * f * (wi + 1)
  dec_a = 4 * T * T * h + 4 * T * L * h
  head = 2 * T * d * config.vocab_size
  return {'weights': config.num_encoder_layers * enc_w + config.num_decoder_layers * dec_w + head,
          'attention': config.num_encoder_layers * enc_a + config.num_decoder_layers * dec_a}


def train_step_flops(config: T5Config, batch_size: int, input_length: int, target_length: int,
                     prompt_length: int = 0, prompt_tuning: bool = True) -> float:
  """Model FLOPs of one train step on `batch_size` examples (the prompt lengthens the encoder)."""
  fwd = forward_flops(config, input_length + prompt_length, target_length)
  weight_factor = 2 if prompt_tuning else 3
  return float(batch_size * (weight_factor * fwd['weights'] + 3 * fwd['attention']))
