"""`ptj eval --gin.EVAL_PREDICTIONS_DIR=...`: one JSONL file per task, rows checked against the
model run directly (greedy decoding one token at a time, teacher-forced label scores)."""
import json

import jax
import numpy as np
import pytest

from prompt_transfer_jax import tasks
from prompt_transfer_jax.trainer import cli
from tests.trainer.conftest import TINY_MODEL
from tests.trainer.test_evaluator import LENGTHS, _greedy_reference, _qa_task, _texts
from tests.trainer.test_evaluator import setup  # noqa: F401  (the fixture)


def _eval_args(prompt_file, task, predictions_dir, *extra):
  return ['--gin_file=models/t5_synth_prompt.gin', '--gin_file=runs/prompt_eval.gin',
          f'--gin.ptj.t5_model.config_overrides={TINY_MODEL}', '--gin.PROMPT_LENGTH=4',
          f"--gin.PROMPT_FILE='{prompt_file}'", f"--gin.MIXTURE_OR_TASK_NAME='{task}'",
          f'--gin.TASK_FEATURE_LENGTHS={LENGTHS}', '--gin.BATCH_SIZE=4',
          f"--gin.EVAL_PREDICTIONS_DIR='{predictions_dir}'", '--noprogress', *extra]


def _rows(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_generation_predictions_file(setup, monkeypatch, tmp_path, capsys):
  model, *_, prompt, _ = setup
  prompt_file = tmp_path / 'prompt.npy'
  np.save(prompt_file, prompt)
  vocab = tasks.get_vocabulary('synth')
  texts, tokens = _texts(7, seed=3)
  predicted = [vocab.decode(ids) for ids in _greedy_reference(model, prompt, tokens, vocab.eos_id)]
  golds = [p if i % 2 else 'zzz' for i, p in enumerate(predicted)]
  out = tmp_path / 'preds'
  with _qa_task(monkeypatch, 'ptj_test_predictions_qa', texts, golds) as name:
    code = cli.eval_main(_eval_args(prompt_file, name, out))
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert code == 0
  path = out / f'{name}.jsonl'
  assert printed['predictions'] == {name: str(path)}
  assert sorted(p.name for p in out.iterdir()) == [path.name]          # no temporary left
  rows = _rows(path)
  assert [r['index'] for r in rows] == list(range(7))
  assert [r['input'] for r in rows] == texts and [r['target'] for r in rows] == golds
  assert [r['prediction'] for r in rows] == predicted == [r['scored'] for r in rows]
  assert [r['gold'] for r in rows] == golds
  expected = tasks.metrics.squad_f1_em(golds, [r['prediction'] for r in rows])
  assert printed['tasks'][name] == pytest.approx(expected) and 0 < expected['f1'] < 100


def test_classification_predictions_file(setup, tmp_path, capsys):
  model, *_, prompt, _ = setup
  prompt_file = tmp_path / 'prompt.npy'
  np.save(prompt_file, prompt)
  out = tmp_path / 'preds'
  code = cli.eval_main(_eval_args(prompt_file, 'synth_nli_a', out,
                                  '--gin.ptj.evaluate.max_examples=10'))
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert code == 0
  rows = _rows(out / 'synth_nli_a.jsonl')
  assert len(rows) == 10 == printed['num_examples']['synth_nli_a']
  from prompt_transfer_jax.trainer import data as data_lib
  features = data_lib.eval_set('synth_nli_a', LENGTHS, max_examples=10).features
  labels = tasks.label_targets('synth_nli_a', LENGTHS['targets'])
  scores = np.asarray(jax.jit(model.backbone.score_labels)(model.params, prompt, features, labels))
  words = list(tasks.get_task_info('synth_nli_a').label_words)
  for row, want, gold in zip(rows, scores, features['label']):
    assert list(row['scores']) == words
    np.testing.assert_allclose(list(row['scores'].values()), want, rtol=1e-5, atol=1e-5)
    assert row['label'] == int(np.argmax(want)) and row['prediction'] == words[row['label']]
    assert row['gold'] == int(gold) and row['input'] and row['target'] in words
  accuracy = 100.0 * np.mean([r['label'] == r['gold'] for r in rows])
  assert printed['tasks']['synth_nli_a']['accuracy'] == pytest.approx(accuracy)


def test_a_file_in_the_way_is_refused_before_evaluating(tmp_path, capsys):
  prompt_file = tmp_path / 'prompt.npy'
  np.save(prompt_file, np.zeros((4, 32), np.float32))
  blocker = tmp_path / 'preds'
  blocker.write_text('mine')
  code = cli.eval_main(_eval_args(prompt_file, 'synth_nli_a', blocker))
  err = capsys.readouterr().err.strip()
  assert code == 2 and err.splitlines()[-1] == (
      f'ptj eval: error: EVAL_PREDICTIONS_DIR {blocker} exists and is not a directory')
  assert blocker.read_text() == 'mine' and sorted(tmp_path.iterdir()) == [blocker, prompt_file]
