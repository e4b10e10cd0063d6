"""Getting the paper's datasets onto disk before training: `ptj data prepare`.

Each task's data comes from one place (see `sources`): a TFDS builder (downloaded and prepared
into the TFDS data dir), local files under the data dir (checked here; their formats are in
`LOCAL_FORMATS`, shown by `ptj tasks show`; absent files are read from the Hugging Face hub
through `datasets` when it is installed), or the synthetic generator (nothing to do).
`prepare(names)` takes task names, task keys or mixtures and returns one `Prepared` line per task
key; a failure is reported, never raised, so one missing dataset does not stop the others.
`import_task_modules` imports a user's own SeqIO task modules (T5X's MIXTURE_OR_TASK_MODULE).
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from typing import Callable, Optional, Sequence

from prompt_transfer_jax.tasks import mixtures, registry, settings, sources, synthetic

LOCAL_FORMATS = {
    'laptop': 'JSON array or JSON lines of {"sentence": ..., "aspect": ..., "sentiment": '
              'negative|neutral|positive|conflict} (SemEval-2014 ATSA, GCAE layout)',
    'restaurant': 'JSON array or JSON lines of {"sentence": ..., "aspect": ..., "sentiment": '
                  'negative|neutral|positive|conflict} (SemEval-2014 ATSA, GCAE layout)',
    'tweeteval_sentiment': 'JSON array or JSON lines of {"text" (or "sentence"): ..., "label": '
                           'negative|neutral|positive or 0|1|2}',
    'ethics_deontology': 'CSV with a header line, rows label,scenario,excuse (label 0 or 1)',
    'ethics_justice': 'CSV with a header line, rows label,scenario (label 0 or 1)',
}


@dataclasses.dataclass(frozen=True)
class Prepared:
  """The outcome for one task key: status is ready, prepared, missing or failed."""
  key: str
  source: str
  status: str
  detail: str = ''

  def line(self) -> str:
    return f'{self.key:<22} {self.status:<9} {self.source}' + (f'  ({self.detail})' if self.detail
                                                                 else '')


def local_format(key: str) -> Optional[str]:
  """The expected layout of a local-file task's files (None for TFDS / synthetic tasks)."""
  return LOCAL_FORMATS.get(key)


def task_keys(names: Sequence[str]) -> list[str]:
  """Task keys (`sst2`) of task names (`t5_sst2`), keys and mixtures, in order, once each."""
  known = set(sources.TFDS_SPECS) | set(sources.LOCAL_SPECS) | set(synthetic.SYNTH_SPECS)
  keys: list[str] = []
  for name in names:
    if name in mixtures.mixture_names():
      found = [registry.get_task_info(t).key for t in mixtures.mixture_tasks(name)]
    elif name in registry.task_names():
      found = [registry.get_task_info(name).key]
    elif name in known:
      found = [name]
    else:
      raise registry._unknown(name, 'task, task key or mixture',  # noqa: SLF001
                              list(known) + registry.task_names() + mixtures.mixture_names())
    keys += [k for k in found if k not in keys]
  return keys


def _prepare_tfds(key: str, tfds_data_dir: Optional[str], builder_fn: Callable) -> Prepared:
  spec = sources.TFDS_SPECS[key]
  source = f'tfds:{spec.name}'
  try:
    builder = builder_fn(spec.name, data_dir=tfds_data_dir)
    if builder.is_prepared():
      return Prepared(key, source, 'ready', builder.data_dir)
    builder.download_and_prepare()
    return Prepared(key, source, 'prepared', builder.data_dir)
  except Exception as e:  # noqa: BLE001  (network, disk, manual-download datasets: report, go on)
    return Prepared(key, source, 'failed', f'{type(e).__name__}: {" ".join(str(e).split())[:300]}')


def _prepare_local(key: str, hf_fallback: bool) -> Prepared:
  spec = sources.LOCAL_SPECS[key]
  paths = sorted({str(sources.local_path(key, s)) for s in spec.files})
  missing = [p for p in paths if not os.path.isfile(p)]
  source = sources.describe(key)
  if not missing:
    try:
      for split in spec.files:
        sources.load_local_rows(key, split)
    except sources.DataFileError as e:
      return Prepared(key, source, 'failed', str(e))
    return Prepared(key, source, 'ready', ', '.join(paths))
  if hf_fallback:
    try:
      for split in spec.files:
        sources.load_local_rows(key, split)          # through `datasets`, into its cache
      return Prepared(key, source, 'prepared', f'hf:{spec.hf[0]} (cached by datasets)')
    except Exception as e:  # noqa: BLE001
      return Prepared(key, source, 'missing', f'{", ".join(missing)}; format: {LOCAL_FORMATS[key]}; '
                      f'hub fallback failed: {" ".join(str(e).split())[:200]}')
  return Prepared(key, source, 'missing', f'{", ".join(missing)}; format: {LOCAL_FORMATS[key]}')


def prepare(names: Sequence[str], data_dir: Optional[str] = None,
            tfds_data_dir: Optional[str] = None, hf_fallback: bool = True,
            builder_fn: Optional[Callable] = None) -> list[Prepared]:
  """Prepares the data of every task in `names` (see the module doc); one `Prepared` per key."""
  if data_dir is not None:
    settings.configure(data_dir=data_dir)
  if builder_fn is None:
    import tensorflow_datasets as tfds
    builder_fn = tfds.builder
  out = []
  for key in task_keys(names):
    if key in sources.TFDS_SPECS:
      out.append(_prepare_tfds(key, tfds_data_dir, builder_fn))
    elif key in sources.LOCAL_SPECS:
      out.append(_prepare_local(key, hf_fallback))
    else:
      out.append(Prepared(key, sources.describe(key), 'ready', 'generated on the fly'))
  return out


def import_task_modules(modules: Sequence[str]) -> list[str]:
  """Imports the user's SeqIO task modules (`my_tasks` or `path/to/my_tasks.py`) so that their
  `seqio.TaskRegistry.add` calls run; returns the module names. A missing module or a failing
  import is a one-line error naming it."""
  imported = []
  for spec in modules:
    name = spec
    if spec.endswith('.py'):
      directory, file = os.path.split(os.path.abspath(spec))
      if not os.path.isfile(spec):
        raise FileNotFoundError(f'task module not found: {spec}')
      if directory not in sys.path:
        sys.path.insert(0, directory)
      name = file[:-3]
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name == name.split('.')[0] or e.name == name:
        raise ValueError(f'task module {spec!r} not found (not on PYTHONPATH; give a .py path or '
                         'set PYTHONPATH)') from None
      raise ValueError(f'task module {spec!r} failed to import: {e}') from None
    except Exception as e:  # noqa: BLE001  (a user's module: one line naming it)
      raise ValueError(f'task module {spec!r} failed to import: {type(e).__name__}: '
                       f'{" ".join(str(e).split())}') from None
    imported.append(name)
  return imported
