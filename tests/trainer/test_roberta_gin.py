"""The RoBERTa gin presets (gin_configs/models/roberta_*.gin) bind the paper's recipe to the trainer."""
import pathlib

import gin
import pytest

from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone

GIN_DIR = pathlib.Path(__file__).resolve().parents[2] / 'gin_configs' / 'models'


def _parse_preset(size, bindings=()):
  gin.clear_config()
  gin.add_config_file_search_path(str(GIN_DIR.parent))
  gin.parse_config_files_and_bindings([str(GIN_DIR / f'roberta_{size}.gin')], list(bindings),
                                      finalize_config=False)


@pytest.mark.parametrize('size,lr', [('tiny', 1e-3), ('base', 1e-3), ('large', 1e-4)])
def test_gin_presets_bind_the_paper_recipe(size, lr):
  try:
    _parse_preset(size)
    assert gin.query_parameter('%MODEL_PRESET') == f'roberta_{size}'
    assert gin.query_parameter('ptj.make_optimizer.learning_rate') == lr
    assert gin.query_parameter('ptj.make_optimizer.name') == 'adamw'
    assert gin.query_parameter('ptj.normal_init.stddev') == 0.02
  finally:
    gin.clear_config()


def test_gin_tiny_preset_builds_the_frozen_model():
  from prompt_transfer_jax.trainer import frozen_model
  try:
    _parse_preset('tiny', ["PROMPT_LAYOUT = 'plain'"])
    model = frozen_model.roberta_model()
  finally:
    gin.clear_config()
  assert model.config == roberta_lib.roberta_preset('roberta_tiny').replace(prompt_layout='plain')
  assert isinstance(model.backbone, RobertaBackbone)
