"""Moved to `prompt_transfer_jax.partitioning` (`place`, `host`); kept for the modules not yet
re-pointed (trainer/evaluator.py, transfer/zero_shot.py)."""
from prompt_transfer_jax.partitioning import host, place  # noqa: F401
