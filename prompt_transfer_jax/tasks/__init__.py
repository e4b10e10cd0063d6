"""The paper's 17 tasks (and small synthetic ones) as SeqIO tasks and mixtures, per backbone family.

Importing this package registers everything (idempotent). Public API:
`get_task_info(name) -> TaskInfo`, `label_targets(name) -> [K, T] int32`, `task_names()`,
`mixture_names()`, `mixture_tasks(name)`, `configure(...)` (data dir and vocabulary paths),
`get_vocabulary(family)`, `metrics`, `MlmFeatureConverter` (RoBERTa batches), `SYNTH_VOCAB_SIZE`;
`ptj tasks list` prints the table.
"""
from prompt_transfer_jax.tasks import _tf  # noqa: F401  (first: quiet TF, keep it off the GPU)
from prompt_transfer_jax.tasks import metrics  # noqa: F401
from prompt_transfer_jax.tasks.feature_converters import MlmFeatureConverter  # noqa: F401
from prompt_transfer_jax.tasks import mixtures
from prompt_transfer_jax.tasks import registry
from prompt_transfer_jax.tasks.mixtures import mixture_names, mixture_tasks  # noqa: F401
from prompt_transfer_jax.tasks.registry import (  # noqa: F401
    TaskInfo, get_task_info, label_targets, task_name, task_names)
from prompt_transfer_jax.tasks.settings import configure  # noqa: F401
from prompt_transfer_jax.tasks.synthetic import SYNTH_VOCAB_SIZE  # noqa: F401
from prompt_transfer_jax.tasks.vocabularies import get_vocabulary  # noqa: F401

registry.register_all()
mixtures.register_all()
