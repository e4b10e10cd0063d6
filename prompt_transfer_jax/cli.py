"""`ptj`: one entry point, one sub-command per concern; each imports only what it needs.

Every sub-command runs through `prompt_transfer_jax.command`: absl flags (`--snake_case`,
`--gin_file`, `--gin.NAME=VALUE`), exit 2 for usage or bad input, 1 for other failures,
`--log_level=debug` (or `PTJ_DEBUG=1`) for the traceback.
"""
from __future__ import annotations

import importlib
import sys

from prompt_transfer_jax import command

# sub-command -> (module, function, one-line help). Each function takes argv (without the
# sub-command name) and returns an exit code.
COMMANDS = {
    'train': ('prompt_transfer_jax.trainer.cli', 'train_main', 'prompt-tune a frozen model (gin + absl flags)'),
    'eval': ('prompt_transfer_jax.trainer.cli', 'eval_main', 'evaluate a prompt file on a task'),
    'plan': ('prompt_transfer_jax.trainer.plan', 'main', 'memory and FLOPs per device of a train config, ahead of time'),
    'export': ('prompt_transfer_jax.trainer.cli', 'export_main', 'export a prompt (npy / PEFT directory)'),
    'demo': ('prompt_transfer_jax.study.cli', 'demo_main', 'the synthetic study of `make demo` (ptj study, studies/synth.gin)'),
    'transfer': ('prompt_transfer_jax.transfer.cli', 'main', 'cross-task transfer: zero-shot matrix, TPT speedups, synthetic study'),
    'project': ('prompt_transfer_jax.transfer.project_cli', 'main', 'cross-model transfer: train / apply a projector, zero-shot, TPT_MODEL'),
    'study': ('prompt_transfer_jax.study.cli', 'main', "the paper's cross-task study from a gin file, every stage resumable"),
    'tasks': ('prompt_transfer_jax.tasks.cli', 'main', 'list / show / preview the registered tasks'),
    'data': ('prompt_transfer_jax.tasks.data_cli', 'main', 'prepare: download / check task datasets'),
    'analyze': ('prompt_transfer_jax.analysis.cli', 'analyze_main', 'transferability indicators, Spearman, report'),
    'bank': ('prompt_transfer_jax.analysis.cli', 'bank_main', 'a bank of trained prompts: add / list / recommend'),
}


def _usage() -> str:
  lines = ['usage: ptj COMMAND [ARGS...]', '', 'commands:']
  lines += [f'  {name:<9} {help_}' for name, (_, _, help_) in COMMANDS.items()]
  lines += ['', "run 'ptj COMMAND --help' for a command's options"]
  return '\n'.join(lines)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ('-h', '--help', 'help'):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    return command.fail('ptj', command.UsageError(
        f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}"))
  module, func, _ = COMMANDS[name]
  with command.quiet_stderr():   # TensorFlow / XLA start-up chatter on fd 2
    entry = getattr(importlib.import_module(module), func)
  return int(entry(rest) or 0)


if __name__ == '__main__':
  sys.exit(main())
