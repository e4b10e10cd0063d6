"""The FLOP count reproduces the worked numbers of performance-and-interop.md (A2)."""
import pytest

from prompt_transfer_jax.config import t5_preset
from prompt_transfer_jax.trainer import flops


@pytest.mark.parametrize('size, fine_tuning, prompt_tuning', [
    ('base', 340, 289), ('large', 1199, 1002), ('xl', 4400, 3596), ('xxl', 17280, 13933)])
def test_t5_1_1_gflop_per_example(size, fine_tuning, prompt_tuning):
  config = t5_preset(f't5_1_1_{size}')
  ft = flops.train_step_flops(config, 1, 512, 8, prompt_length=0, prompt_tuning=False) / 1e9
  pt = flops.train_step_flops(config, 1, 512, 8, prompt_length=100) / 1e9
  assert ft == pytest.approx(fine_tuning, rel=0.005)
  assert pt == pytest.approx(prompt_tuning, rel=0.005)


def test_xl_full_batch_step():
  """t5-v1_1-xl, 2048 examples at 512/114: 10.9 PFLOP (fine-tuning)."""
  config = t5_preset('t5_1_1_xl')
  assert flops.train_step_flops(config, 2048, 512, 114, prompt_tuning=False) / 1e15 == \
      pytest.approx(10.9, rel=0.01)
