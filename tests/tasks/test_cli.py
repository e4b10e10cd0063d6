"""`ptj tasks list / show / preview` and their one-line errors."""
import importlib.util

from prompt_transfer_jax import cli as ptj_cli
from prompt_transfer_jax.tasks import cli
from prompt_transfer_jax.tasks import settings


def test_list_prints_every_task_with_type_metric_words_source(tasks, capsys):
  assert ptj_cli.main(['tasks', 'list']) == 0
  out = capsys.readouterr().out
  lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
  assert set(lines) == set(tasks.task_names())
  assert lines['t5_mnli'].split()[1:3] == ['NLI', 'accuracy']
  assert 'contradiction/neutral/entailment' in lines['t5_mnli'] and 'tfds:glue/mnli' in lines['t5_mnli']
  assert 'validation=validation_matched' in lines['t5_mnli']
  justice = lines['roberta_ethics_justice']
  assert 'local:' in justice and 'unacceptable/acceptable' in justice
  assert 'rouge_l' in lines['t5_samsum'] and 'synthetic' in lines['synth_nli_a']
  assert cli.main(['list', '--family', 'synth']) == 0
  assert {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]} == set(
      tasks.task_names('synth'))
  assert cli.main(['list', '--mixtures']) == 0
  assert 't5_type_sa ' in capsys.readouterr().out


def test_show(tasks, capsys, t5_spm):
  assert cli.main(['show', 't5_qnli']) == 0
  out = capsys.readouterr().out
  assert "('contradiction', 'entailment')" in out and 'validation <- validation' in out
  assert f'label_targets      {tasks.label_targets("t5_qnli").tolist()}' in out
  assert cli.main(['show', 'synth_type_pi']) == 0
  assert 'synth_paraphrase_a' in capsys.readouterr().out


def test_preview_prints_preprocessed_examples(capsys):
  assert cli.main(['preview', 'synth_paraphrase_b', '--n', '3', '--split', 'test']) == 0
  out = capsys.readouterr().out
  assert out.count('--- synth_paraphrase_b [test] example') == 3
  assert out.count('inputs_pretokenized: sentence1: ') == 3 and 'label: ' in out


def test_errors_are_one_line_and_nonzero(capsys, tmp_path):
  assert cli.main(['show', 't5_qnlii']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("ptj tasks show: error: unknown task 't5_qnlii'; close matches: t5_qnli")
  assert '\n' not in err
  assert cli.main(['bogus']) == 2
  assert 'unknown command' in capsys.readouterr().err
  if importlib.util.find_spec('datasets') is None:  # else a missing file falls back to the HF hub
    try:
      assert cli.main(['preview', 't5_tweeteval_sentiment', '--data_dir', str(tmp_path)]) == 2  # missing input file
    finally:
      settings.reset('data_dir')
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / 'tweeteval_sentiment') in err and '\n' not in err


def test_show_prints_the_file_format_of_a_local_file_task(capsys, t5_spm):
  from prompt_transfer_jax.tasks import prepare
  assert cli.main(['show', 't5_laptop']) == 0
  line = [l for l in capsys.readouterr().out.splitlines() if l.startswith('file format')]
  assert line == [f'{"file format":<18} {prepare.local_format("laptop")}']
