"""A PEFT export loads with `peft` on a PyTorch T5 and gives our loss (fp32, 1e-4)."""
import json

import jax
import numpy as np
import pytest

from prompt_transfer_jax.checkpoints import save_hf_t5
from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.models import t5 as t5_lib
from prompt_transfer_jax.models.t5_backbone import T5Backbone
from prompt_transfer_jax.trainer import export
from prompt_transfer_jax.trainer.frozen_model import random_t5_params

torch = pytest.importorskip('torch')
peft = pytest.importorskip('peft')
transformers = pytest.importorskip('transformers')


def test_peft_export_gives_our_loss(tmp_path):
  config = t5_preset('t5x_tiny').replace(vocab_size=96, num_heads=2, head_dim=4)
  params = random_t5_params(config, seed=3)
  rng = np.random.default_rng(0)
  prompt = rng.normal(size=(5, config.emb_dim)).astype(np.float32)
  inputs = rng.integers(2, config.vocab_size, (3, 7)).astype(np.int32)
  inputs[1, 4:] = 0
  targets = rng.integers(2, config.vocab_size, (3, 4)).astype(np.int32)
  targets[2, 2:] = 0
  batch = {'encoder_input_tokens': inputs, 'decoder_target_tokens': targets,
           'decoder_input_tokens': np.asarray(t5_lib.shift_right(targets)),
           'decoder_loss_weights': (targets > 0).astype(np.int32)}
  total, count = jax.jit(T5Backbone(config).token_loss)(params, prompt, batch)
  ours = float(np.sum(total) / np.sum(count))

  save_hf_t5(tmp_path / 'hf', config, params)
  export.export_peft(prompt, str(tmp_path / 'peft'), base_model_name_or_path=str(tmp_path / 'hf'),
                     num_layers=config.num_encoder_layers, num_attention_heads=config.num_heads)
  assert json.loads((tmp_path / 'peft' / 'adapter_config.json').read_text())[
      'num_transformer_submodules'] == 1
  base = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / 'hf'))
  model = peft.PeftModel.from_pretrained(base, str(tmp_path / 'peft')).eval()
  labels = torch.tensor(np.where(targets > 0, targets, -100), dtype=torch.long)
  with torch.no_grad():
    out = model(input_ids=torch.tensor(inputs, dtype=torch.long),
                attention_mask=torch.tensor(inputs > 0, dtype=torch.long), labels=labels)
    with model.disable_adapter():
      without_prompt = model(input_ids=torch.tensor(inputs, dtype=torch.long),
                             attention_mask=torch.tensor(inputs > 0, dtype=torch.long),
                             labels=labels).loss
  loaded = model.get_prompt_embedding_to_save('default').detach().numpy()
  np.testing.assert_array_equal(loaded, prompt)
  assert abs(float(out.loss) - ours) < 1e-4
  assert abs(float(without_prompt) - ours) > 1e-3        # the prompt matters


def test_peft_export_is_atomic_and_checked(tmp_path):
  with pytest.raises(ValueError, match='2-D'):
    export.export_peft(np.zeros((2, 3, 4)), str(tmp_path / 'x'))
  with pytest.raises(ValueError, match='task_type'):
    export.export_peft(np.zeros((2, 3)), str(tmp_path / 'x'), task_type='MLM')
  assert not list(tmp_path.iterdir())
  path = export.export_peft(np.ones((2, 3)), str(tmp_path / 'x'))
  export.export_peft(np.full((2, 3), 2.0), path)        # replaces the old adapter
  np.testing.assert_array_equal(export.read_peft(path), np.full((2, 3), 2.0))
  assert [p.name for p in tmp_path.iterdir()] == ['x']
