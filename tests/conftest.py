"""Shared test fixtures: the read-only ../shared/fixtures folder (skipped when absent)."""
import os
import pathlib

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / 'shared' / 'fixtures'


@pytest.fixture
def shared_fixtures() -> pathlib.Path:
  """Path to ../shared/fixtures; skips the test when the folder is absent (a user's machine)."""
  if not SHARED_FIXTURES.is_dir():
    pytest.skip(f'optional fixtures folder {SHARED_FIXTURES} is absent')
  return SHARED_FIXTURES


@pytest.fixture
def spm_model_path(shared_fixtures) -> pathlib.Path:
  """The real T5 SentencePiece model (32,000 pieces)."""
  path = shared_fixtures / 't5x' / 't5_spm_32000.model'
  if not path.exists():
    pytest.skip(f'optional fixture {path} is absent')
  return path
