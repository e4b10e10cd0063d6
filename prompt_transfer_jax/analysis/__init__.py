"""Transferability analysis: prompt similarity indicators, Spearman against transfer, report, bank.

The numpy modules (`indicators`, `spearman`, `layer_groups`, `activation_store`, `report`, `bank`,
`recommend`) import neither JAX nor TensorFlow, so the `ptj analyze` / `ptj bank` commands start
fast; only `activations` (the extractor) needs JAX.
"""
