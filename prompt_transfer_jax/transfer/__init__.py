"""Cross-task transfer: zero-shot matrices, transfer by initialization (TPT) speedups, the study.

Modules: `zero_shot` (many source prompts on many target tasks, batched and jitted), `speedup`
(convergence and comparable-result speedups from two runs' histories; pure Python), `study`
(the synthetic transfer study end to end) and `cli` (`ptj transfer zero-shot | speedup |
study`).
"""
