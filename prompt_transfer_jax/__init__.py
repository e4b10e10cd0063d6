"""prompt_transfer_jax: soft-prompt transfer (Su et al., NAACL 2022) on frozen T5 / RoBERTa in JAX."""

__version__ = '0.1.0'
