"""Cross-task and cross-model transfer: zero-shot matrices, TPT speedups, the projector.

Modules: `zero_shot` (many source prompts on many target tasks, batched and jitted), `speedup`
(convergence and comparable-result speedups from two runs' histories; pure Python), `projector`
and `cross_model` (cross-model transfer), `cli` (`ptj transfer zero-shot | speedup`) and
`project_cli` (`ptj project ...`). The whole study, which also runs the analysis, lives a layer
above in `prompt_transfer_jax.study`.
"""
