"""The paper's experiments as one resumable study (`ptj study`, `ptj demo`): the top layer.

Modules: `stages` (PT per task -> zero-shot matrix -> TPT -> activations -> indicators, Spearman
and report -> the paper's tables), `paper_values` (the slides' numbers) and `cli`.
"""
