"""Local-file and synthetic sources: formats, label mapping, splits, one-line errors."""
import json
import sys

import pytest
import seqio

from prompt_transfer_jax.tasks import settings
from prompt_transfer_jax.tasks import sources


def test_local_rows_follow_the_1_0_formats(local_data, tasks):
  laptop = sources.load_local_rows('laptop', 'train')          # JSON array
  assert laptop[1]['label'] == 1 and set(laptop[0]) == {'text', 'aspect', 'label'}
  assert len(sources.load_local_rows('laptop', 'validation')) == 8   # JSON lines (test.json)
  tweets = sources.load_local_rows('tweeteval_sentiment', 'validation')  # dev.json, labels "0".."2"
  assert [r['label'] for r in tweets] == [0, 1, 2, 0, 1, 2]
  deon = sources.load_local_rows('ethics_deontology', 'train')   # CSV, header row dropped
  assert len(deon) == 12 and set(deon[0]) == {'scenario', 'excuse', 'label'}
  assert [r['label'] for r in deon[:4]] == [0, 1, 0, 1]
  assert set(sources.load_local_rows('ethics_justice', 'test')[0]) == {'scenario', 'label'}


def test_heldout_splits_partition_train(local_data, tasks):
  source = sources.local_source('ethics_justice', 'EJ')
  train = source.rows('train')
  held_train, held_val = source.rows('heldout_train'), source.rows('heldout_validation')
  assert held_train + held_val == train and len(held_val) == 1   # 5% of 12 rows, rounded
  assert source.num_input_examples('heldout_train') == 11
  assert sources.TFDS_SPECS['mnli'].splits()['heldout_validation'] == 'train[95%:]'
  assert sources.TFDS_SPECS['mnli'].splits()['validation'] == 'validation_matched'


def test_missing_local_file_is_a_one_line_error_naming_it(tasks, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'datasets', None)   # without the Hugging Face fallback
  settings.configure(data_dir=str(tmp_path))
  try:
    with pytest.raises(sources.DataFileError) as e:
      seqio.get_mixture_or_task('t5_restaurant').get_dataset(None, split='train', shuffle=False)
    message = str(e.value)
    assert '\n' not in message
    assert str(tmp_path / 'restaurant' / 'train.json') in message and 'pip install datasets' in message
  finally:
    settings.reset('data_dir')


def test_malformed_row_is_a_one_line_error(tasks, tmp_path):
  (tmp_path / 'laptop').mkdir()
  (tmp_path / 'laptop' / 'train.json').write_text(json.dumps([{'sentence': 'x', 'aspect': 'y',
                                                                'sentiment': 'angry'}]))
  settings.configure(data_dir=str(tmp_path))
  try:
    with pytest.raises(sources.DataFileError, match=r'train.json: row 0 is not a SemEval') as e:
      sources.load_local_rows('laptop', 'train')
    assert '\n' not in str(e.value)
  finally:
    settings.reset('data_dir')


def test_data_dir_setting_order(monkeypatch, tmp_path):
  monkeypatch.setenv('PTJ_DATA_DIR', str(tmp_path / 'env'))
  assert sources.local_path('laptop', 'train') == tmp_path / 'env' / 'laptop' / 'train.json'
  settings.configure(data_dir=str(tmp_path / 'cfg'))
  try:
    assert sources.local_path('ethics_justice', 'validation') == (
        tmp_path / 'cfg' / 'ethics' / 'justice' / 'justice_test.csv')
  finally:
    settings.reset('data_dir')
