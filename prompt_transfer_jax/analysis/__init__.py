"""Transferability analysis: prompt similarity indicators, Spearman against transfer, report, bank.

Modules: `indicators` (E/C/ON matrices), `spearman`, `layer_groups`, `transferability` (all of
them against a transfer matrix), `recommend` (source ranking, hit rates), `bank`, `report`,
`activation_store` (the activation .npz), `files`, `activations` (the jitted extractor) and `cli`
(`ptj analyze`, `ptj bank`). Only `activations` imports JAX; the rest is numpy / scipy /
matplotlib, so the commands that need no model start fast.
"""
