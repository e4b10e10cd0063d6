"""`ptj data prepare`: TFDS builders prepared, local files checked (format shown when missing),
synthetic tasks ready; the user's own SeqIO task modules imported."""
import json

import pytest

from prompt_transfer_jax.tasks import data_cli, prepare, settings


class FakeBuilder:
  calls = []

  def __init__(self, name, data_dir=None, fail=None, prepared=False):
    self.name, self.data_dir, self.fail, self.prepared = name, data_dir or '/tfds', fail, prepared

  def is_prepared(self):
    return self.prepared

  def download_and_prepare(self):
    FakeBuilder.calls.append(self.name)
    if self.fail:
      raise self.fail


@pytest.fixture
def data_dir(tmp_path):
  yield tmp_path
  settings.reset('data_dir')


def test_task_keys_expand_names_and_mixtures(tasks):
  assert prepare.task_keys(['t5_sst2', 'sst2', 'synth_sentiment_a']) == ['sst2', 'synth_sentiment_a']
  assert prepare.task_keys(['t5_type_sa'])[:2] == ['imdb', 'sst2']
  with pytest.raises(ValueError, match="unknown task, task key or mixture 't5_sst'; close matches: t5_sst2"):
    prepare.task_keys(['t5_sst'])


def test_tfds_tasks_are_prepared_and_failures_reported(tasks, data_dir):
  FakeBuilder.calls = []
  out = prepare.prepare(['t5_sst2'], str(data_dir), builder_fn=FakeBuilder)
  assert [(r.key, r.status, r.source) for r in out] == [('sst2', 'prepared', 'tfds:glue/sst2:2.0.0')]
  assert FakeBuilder.calls == ['glue/sst2:2.0.0']
  ready = prepare.prepare(['sst2'], builder_fn=lambda n, data_dir: FakeBuilder(n, prepared=True))
  assert ready[0].status == 'ready' and FakeBuilder.calls == ['glue/sst2:2.0.0']
  failing = lambda n, data_dir: FakeBuilder(n, fail=ConnectionError('no\nnetwork'))  # noqa: E731
  out = prepare.prepare(['sst2', 'mnli'], builder_fn=failing)
  assert [r.status for r in out] == ['failed', 'failed']
  assert out[0].detail == 'ConnectionError: no network' and '\n' not in out[0].line()


def test_local_files_checked_with_their_format(tasks, data_dir):
  (data_dir / 'laptop').mkdir()
  row = {'sentence': 'The screen is great', 'aspect': 'screen', 'sentiment': 'positive'}
  for name in ('train.json', 'test.json'):
    (data_dir / 'laptop' / name).write_text(json.dumps([row]))
  out = prepare.prepare(['laptop', 'restaurant', 'synth_nli_a'], str(data_dir), hf_fallback=False,
                        builder_fn=FakeBuilder)
  assert [r.status for r in out] == ['ready', 'missing', 'ready']
  assert 'restaurant/test.json' in out[1].detail and '"aspect"' in out[1].detail
  (data_dir / 'laptop' / 'test.json').write_text(json.dumps([{'sentence': 'x'}]))
  bad = prepare.prepare(['laptop'], str(data_dir), hf_fallback=False, builder_fn=FakeBuilder)[0]
  assert bad.status == 'failed' and 'test.json: row 0' in bad.detail
  assert prepare.local_format('ethics_justice').startswith('CSV')
  assert prepare.local_format('sst2') is None


def test_cli(tasks, data_dir, capsys):
  assert data_cli.main(['prepare', '--tasks=synth_sentiment_a,synth_nli_a']) == 0
  assert capsys.readouterr().out.split('\n')[0].split()[:2] == ['synth_sentiment_a', 'ready']
  assert data_cli.main(['prepare', '--tasks=restaurant', f'--data_dir={data_dir}',
                        '--nohf_fallback']) == 1
  assert 'missing' in capsys.readouterr().out
  assert data_cli.main(['prepare']) == 2
  assert data_cli.main(['prepare', '--tasks=nope']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 2 and err.split('\n')[1].startswith('ptj data prepare: error: unknown task')
  assert data_cli.main(['fetch', '--tasks=sst2']) == 2


def test_user_task_modules_are_imported(tasks, tmp_path):
  import seqio
  module = tmp_path / 'my_ptj_tasks.py'
  module.write_text(
      'import seqio\n'
      'from prompt_transfer_jax.tasks import registry\n'
      "if 'my_copy_of_sst2' not in seqio.TaskRegistry.names():\n"
      "  base = seqio.get_mixture_or_task('t5_sst2')\n"
      "  seqio.TaskRegistry.add('my_copy_of_sst2', source=base.source,\n"
      '                         preprocessors=base.preprocessors,\n'
      '                         output_features=base.output_features)\n')
  assert prepare.import_task_modules([str(module)]) == ['my_ptj_tasks']
  assert 'my_copy_of_sst2' in seqio.TaskRegistry.names()
  with pytest.raises(ValueError, match="task module 'no_such_module_x' not found"):
    prepare.import_task_modules(['no_such_module_x'])
  broken = tmp_path / 'broken_tasks.py'
  broken.write_text('raise RuntimeError("bad\\nregistration")\n')
  with pytest.raises(ValueError, match="'.*broken_tasks.py' failed to import: RuntimeError: bad "
                                       'registration'):
    prepare.import_task_modules([str(broken)])
  with pytest.raises(FileNotFoundError, match='task module not found'):
    prepare.import_task_modules([str(tmp_path / 'absent.py')])


def test_tfds_builders_of_the_paper_construct_offline(tmp_path):
  """What `ptj data prepare` needs before any download (TFDS imports importlib_resources)."""
  pytest.importorskip('importlib_resources', reason='install requirements-lock.txt (TFDS prepare)')
  import tensorflow_datasets as tfds
  builder = tfds.builder('glue/sst2:2.0.0', data_dir=str(tmp_path))
  assert builder.info.full_name == 'glue/sst2/2.0.0' and not builder.is_prepared()
