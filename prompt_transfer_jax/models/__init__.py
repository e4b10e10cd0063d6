"""Flax backbones (T5, RoBERTa) and the soft-prompt module."""
