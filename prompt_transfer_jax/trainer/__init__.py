"""Prompt tuning: the train step, the loop, evaluation, checkpoints, exports and the CLI."""
