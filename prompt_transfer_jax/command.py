"""The one runner every `ptj` command goes through: absl flags, one exit-code policy, one-line errors.

    def main(argv):
      return command.run('ptj export', argv, __doc__, define_flags, body)

Flags are absl flags with snake_case names (`--batch_size`); gin-configured commands add
`--gin_file` (repeated) and `--gin.NAME=VALUE` (T5X's shorthand for `--gin_bindings`). Exit codes:
0 success, 2 usage or bad input (`UsageError`, flag errors, `ValueError` / `FileNotFoundError` /
`KeyError` (an unknown name) from input validation), 1 any other failure, 130 on Ctrl-C (a
`KeyboardInterrupt` with an `exit_code`, e.g. 143 for SIGTERM, returns that). Errors print one line
`PROG: error: MESSAGE` on stderr; `--log_level=debug` (or `PTJ_DEBUG=1`) prints the traceback too.
This module is the bottom layer: it imports nothing else of the package.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import traceback
from typing import Callable, Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import flags  # noqa: E402

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOG_LEVELS = ('debug', 'info', 'warning', 'error')
_BAD_INPUT = (ValueError, FileNotFoundError, KeyError)   # UsageError is a ValueError; KeyError: unknown name

DefineFlags = Callable[[flags.FlagValues], None]
Body = Callable[..., Optional[int]]


class UsageError(ValueError):
  """Bad command-line usage: exit 2 with the message."""


def one_line(error: BaseException) -> str:
  """The error as one line (gin's `In call to configurable ...` suffix dropped)."""
  if isinstance(error, KeyError) and error.args:
    error = error.args[0]
  text = re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", '', str(error))
  return ' '.join(text.split()) or type(error).__name__


def debug_requested(fv: Optional[flags.FlagValues] = None) -> bool:
  if os.environ.get('PTJ_DEBUG', '') not in ('', '0'):
    return True
  return fv is not None and 'log_level' in fv and fv['log_level'].value == 'debug'


def fail(prog: str, error: BaseException, debug: bool = False) -> int:
  """Prints `error` the one way every command does, and returns its exit code."""
  if isinstance(error, KeyboardInterrupt):   # a subclass may carry its message and exit code
    print(f'{prog}: {one_line(error) if error.args else "interrupted"}', file=sys.stderr)
    return getattr(error, 'exit_code', EXIT_INTERRUPTED)
  if debug:
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
  print(f'{prog}: error: {one_line(error)}', file=sys.stderr)
  return EXIT_USAGE if isinstance(error, (flags.Error,) + _BAD_INPUT) else EXIT_ERROR


def gin_file_flags(fv: flags.FlagValues) -> None:
  """`--gin_file` (repeated) and `--gin_bindings` (or `--gin.NAME=VALUE`)."""
  flags.DEFINE_multi_string('gin_file', [], 'gin file(s), applied in order', flag_values=fv)
  flags.DEFINE_multi_string('gin_bindings', [], "gin bindings, e.g. 'BATCH_SIZE = 16'",
                            flag_values=fv)


def gin_flags(fv: flags.FlagValues) -> None:
  """The flags of a gin-configured run: gin files and bindings, search paths, data, multi-host."""
  gin_file_flags(fv)
  flags.DEFINE_list('gin_search_paths', [], 'directories searched for relative --gin_file paths',
                    flag_values=fv)
  flags.DEFINE_string('tfds_data_dir', None, 'TFDS data directory override', flag_values=fv)
  flags.DEFINE_bool('multiprocess', False, 'call jax.distributed.initialize()', flag_values=fv)
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0', flag_values=fv)
  flags.DEFINE_integer('num_processes', None, 'number of processes', flag_values=fv)
  flags.DEFINE_integer('process_id', None, 'index of this process', flag_values=fv)
  flags.DEFINE_bool('progress', True, 'show the live progress line', flag_values=fv)
  flags.DEFINE_multi_string('module', [], "the user's SeqIO task module(s) to import (a module "
                            'name or a .py file); same as MIXTURE_OR_TASK_MODULE', flag_values=fv)


def require(fv: flags.FlagValues, *names: str) -> None:
  """Marks flags as required (a missing one is a usage error at parse time)."""
  for name in names:
    flags.mark_flag_as_required(name, flag_values=fv)


def _expand_gin(argv: Sequence[str]) -> list[str]:
  """`--gin.NAME=VALUE` -> `--gin_bindings=NAME = VALUE` (T5X's shorthand)."""
  args = []
  for arg in argv:
    if arg.startswith('--gin.'):
      name, sep, value = arg[len('--gin.'):].partition('=')
      if not sep or not name:
        raise UsageError(f'malformed gin flag {arg!r}; use --gin.NAME=VALUE')
      arg = f'--gin_bindings={name} = {value}'
    args.append(arg)
  return args


def parse(fv: flags.FlagValues, prog: str, argv: Sequence[str],
          positional: Sequence[str] = ()) -> list[str]:
  """absl parsing; returns the positional arguments (exactly `positional` of them)."""
  args = _expand_gin(argv)
  try:
    rest = fv([prog] + args)[1:]
  except flags.Error as e:
    raise UsageError(one_line(e)) from None
  if len(rest) != len(positional):
    if len(rest) < len(positional):
      raise UsageError(f'missing argument {positional[len(rest)].upper()}')
    raise UsageError(f'unexpected arguments: {" ".join(rest[len(positional):])}')
  return rest


def _common_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum('log_level', 'error', list(LOG_LEVELS),
                    'absl / Python logging level; debug also prints tracebacks', flag_values=fv)


def usage(prog: str, doc: str, fv: flags.FlagValues, positional: Sequence[str] = ()) -> str:
  args = ''.join(f' {p.upper()}' for p in positional)
  lines = [f'usage: {prog}{args} [flags]', '', (doc or '').strip(), '', 'flags:']
  lines += [f'  --{name}: {fv[name].help}' for name in sorted(fv)]
  return '\n'.join(lines)


def run(prog: str, argv: Sequence[str], doc: str, define_flags: DefineFlags, body: Body,
        positional: Sequence[str] = ()) -> int:
  """Defines and parses the flags, calls `body(fv, *positional_values)`, maps errors to codes.

  Args:
    prog: the command as the user typed it, e.g. 'ptj bank add' (prefix of every error line).
    argv: the arguments after the command name.
    doc: help text printed by `--help`.
    define_flags: defines the command's flags on the FlagValues it is given.
    body: does the work; returns an exit code (None means 0).
    positional: names of required positional arguments, passed to `body` after `fv`.
  """
  argv = list(argv)
  fv = flags.FlagValues()
  _common_flags(fv)
  define_flags(fv)
  if any(a in ('-h', '--help', '--helpfull') for a in argv):
    print(usage(prog, doc, fv, positional))
    return EXIT_OK
  try:
    values = parse(fv, prog, argv, positional)
    return int(body(fv, *values) or 0)
  except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001  (every failure: one line + a code)
    return fail(prog, e, debug_requested(fv))
  finally:
    if 'gin' in sys.modules:  # bindings of this run must not leak into a later in-process call
      sys.modules['gin'].clear_config()


@dataclasses.dataclass(frozen=True)
class Command:
  """One sub-command of a command group (`ptj bank add`)."""
  name: str
  help: str
  define_flags: DefineFlags
  body: Body
  positional: tuple = ()


def no_flags(fv: flags.FlagValues) -> None:
  del fv


def run_group(prog: str, argv: Sequence[str], doc: str, commands: Sequence[Command]) -> int:
  """`prog SUBCOMMAND [flags]`: dispatches to one of `commands` through `run`."""
  argv = list(argv)
  by_name = {c.name: c for c in commands}
  if argv and argv[0] in ('-h', '--help', 'help'):
    lines = [f'usage: {prog} COMMAND [flags]', '', (doc or '').strip(), '', 'commands:']
    width = max(len(c.name) for c in commands)
    lines += [f'  {c.name:<{width}}  {c.help}' for c in commands]
    lines += ['', f"run '{prog} COMMAND --help' for a command's flags"]
    print('\n'.join(lines))
    return EXIT_OK
  if not argv or argv[0].startswith('-'):
    return fail(prog, UsageError(f'missing command; choose one of: {", ".join(by_name)}'))
  command = by_name.get(argv[0])
  if command is None:
    return fail(prog, UsageError(f'unknown command {argv[0]!r}; choose one of: '
                                 f'{", ".join(by_name)}'))
  return run(f'{prog} {command.name}', argv[1:], command.help, command.define_flags,
             command.body, command.positional)


@contextlib.contextmanager
def quiet_stderr():
  """Silences C++ start-up chatter (TensorFlow, XLA) written to fd 2 while heavy modules import."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)
