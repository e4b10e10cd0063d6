"""All 17 tasks yield formatted, tokenized EncDec batches (TFDS mock data + tiny local files)."""
import numpy as np
import pytest
import seqio

from prompt_transfer_jax.tasks import sources
from prompt_transfer_jax.tasks.feature_converters import MlmFeatureConverter
from prompt_transfer_jax.tasks import templates

CLEAN_PREFIX = {'SA': 'sentence:', 'NLI': 'premise:', 'PI': 'sentence1:', 'EJ': 'scenario:',
                'QA': 'question:', 'SUM': 'summarize:'}
BATCH = 4


@pytest.fixture(scope='module')
def data(t5_spm, roberta_dir, tfds_mock, local_data):
  return True


def _batch(name, info, split='validation'):
  lengths = {'inputs': info.input_length, 'targets': info.target_length}
  ds = seqio.get_dataset(name, lengths, dataset_split=split, shuffle=False, batch_size=BATCH,
                         feature_converter=seqio.EncDecFeatureConverter(pack=False))
  return next(ds.as_numpy_iterator())


@pytest.mark.parametrize('key', templates.PAPER_KEYS)
def test_t5_task_yields_encdec_batches(data, tasks, key):
  name = f't5_{key}'
  info = tasks.get_task_info(name)
  vocab = tasks.get_vocabulary('t5')
  batch = _batch(name, info)
  enc, dec_in, dec_tgt = (batch[k] for k in ('encoder_input_tokens', 'decoder_input_tokens',
                                              'decoder_target_tokens'))
  assert enc.shape == (BATCH, info.input_length) and enc.dtype == np.int32
  assert dec_tgt.shape == (BATCH, info.target_length)
  np.testing.assert_array_equal(dec_in[:, 1:], dec_tgt[:, :-1])
  assert np.all(dec_in[:, 0] == 0)
  for row in enc:
    ids = row[row > 0].tolist()
    assert ids[-1] == vocab.eos_id and row[len(ids):].sum() == 0  # EOS, then padding only
    assert vocab.decode(ids).startswith(CLEAN_PREFIX[info.task_type])
  if info.is_classification:
    label_rows = {tuple(r) for r in tasks.label_targets(name).tolist()}
    assert all(tuple(r) in label_rows for r in dec_tgt.tolist())
  else:
    assert all(vocab.eos_id in r or r[-1] != 0 for r in dec_tgt.tolist())


def test_examples_carry_label_answers_and_pretokenized_text(data, tasks):
  for name, extra in (('t5_mnli', 'label'), ('t5_squad', 'answers'), ('t5_laptop', 'label'),
                      ('t5_samsum', None)):
    info = tasks.get_task_info(name)
    ds = seqio.get_mixture_or_task(name).get_dataset(
        {'inputs': info.input_length, 'targets': info.target_length}, split='validation',
        shuffle=False)
    for ex in ds.take(3).as_numpy_iterator():
      assert {'inputs', 'targets', 'inputs_pretokenized', 'targets_pretokenized'} <= set(ex)
      if extra == 'label':
        assert ex['label'].dtype == np.int32
        assert ex['targets_pretokenized'].decode() == info.label_words[ex['label']]
        assert ex['targets'].tolist() == [t for t in tasks.label_targets(name)[ex['label']] if t]
      if extra == 'answers':
        assert ex['answers'].ndim == 1 and ex['answers'][0] == ex['targets_pretokenized']


def test_tfds_mixture_rates_come_from_split_sizes(data, tasks):
  mixture = seqio.get_mixture_or_task('t5_type_pi')
  assert [mixture.get_rate(t) for t in mixture.tasks] == [20, 20]   # testdata SPLIT_SIZE


def test_tfds_label_remaps_match_the_class_names(tasks):
  import tensorflow_datasets as tfds
  for key, spec in sources.TFDS_SPECS.items():
    if spec.label_remap is None:
      continue
    names = tfds.builder(spec.name, data_dir='/nonexistent').info.features['label'].names
    assert tuple(names) == spec.tfds_label_names, key
    ours = templates.PAPER_TEMPLATES[key].label_words
    assert sorted(spec.label_remap) == list(range(len(ours)))


def test_mnli_labels_are_remapped_and_unlabeled_rows_dropped(data, tasks):
  raw = seqio.get_mixture_or_task('t5_mnli').source.get_dataset('validation', shuffle=False)
  raw_labels = [int(ex['label']) for ex in raw.as_numpy_iterator()]
  ds = seqio.get_mixture_or_task('t5_mnli').get_dataset(None, split='validation', shuffle=False)
  ours = [int(ex['label']) for ex in ds.as_numpy_iterator()]
  assert ours == [2 - label for label in raw_labels if label >= 0]


@pytest.mark.parametrize('key', ['mnli', 'sst2', 'imdb', 'qqp', 'ethics_deontology', 'squad'])
def test_v1_layouts(data, tasks, key):
  name = f't5_{key}_v1'
  info = tasks.get_task_info(name)
  vocab = tasks.get_vocabulary('t5')
  ds = seqio.get_mixture_or_task(name).get_dataset(
      {'inputs': info.input_length, 'targets': info.target_length}, split='validation', shuffle=False)
  ex = next(ds.as_numpy_iterator())
  text = ex['inputs_pretokenized'].decode()
  inputs = ex['inputs'].tolist()
  want_eos = templates.PAPER_TEMPLATES[key].seq2seq['v1'][1]
  assert (inputs[-1] == vocab.eos_id) == want_eos
  assert inputs[:len(inputs) - want_eos] == vocab.encode(text)[:info.input_length - want_eos]
  target_ids = vocab.encode(ex['targets_pretokenized'].decode())
  assert ex['targets'].tolist() == target_ids[:info.target_length]
  if key == 'mnli':
    assert text.startswith('hypothesis: ') and ' [SEP] sentence: premise: ' in text
  if key == 'qqp':
    assert vocab.encode('<extra_id_0>')[0] in inputs
  if key == 'squad':
    assert text.startswith('context: ') and ' SEP question:' in text


@pytest.mark.parametrize('name', ['roberta_sst2', 'roberta_laptop', 'roberta_mnli', 'roberta_mnli_v1',
                                  'roberta_qnli', 'roberta_ethics_deontology_v1'])
def test_roberta_tasks_encode_bos_text_eos(data, tasks, name):
  info = tasks.get_task_info(name)
  vocab = tasks.get_vocabulary('roberta')
  task = seqio.get_mixture_or_task(name)
  lengths = {'inputs': info.input_length, 'targets': 1}
  ex = next(task.get_dataset(lengths, split='validation', shuffle=False).as_numpy_iterator())
  ids = ex['inputs'].tolist()
  segments = ex['inputs_pretokenized'].decode().split(' </s> ')
  expected = [vocab.bos_id]
  for seg in segments:
    expected += vocab.encode(seg) + [vocab.eos_id]
  assert ids == expected[:info.input_length]
  assert ex['targets'].tolist() == [tasks.label_targets(name)[ex['label'], 0]]
  batch = next(seqio.get_dataset(
      name, lengths, dataset_split='validation', shuffle=False, batch_size=BATCH,
      feature_converter=MlmFeatureConverter(pad_id=vocab.pad_id)).as_numpy_iterator())
  enc = batch['encoder_input_tokens']
  assert enc.shape == (BATCH, info.input_length) and np.all(enc[:, 0] == vocab.bos_id)
  for row in enc:
    last = np.flatnonzero(row == vocab.eos_id)[-1]
    assert np.all(row[last + 1:] == vocab.pad_id)
  np.testing.assert_array_equal(batch['decoder_target_tokens'][:, 0],
                                tasks.label_targets(name)[batch['label'], 0])


def test_mlm_converter_needs_a_label(data, tasks):
  with pytest.raises(ValueError, match='needs the int32 `label`'):
    seqio.get_dataset('t5_squad', {'inputs': 16, 'targets': 1}, dataset_split='validation',
                      shuffle=False, feature_converter=MlmFeatureConverter())


def test_roberta_nli_order_follows_the_layout(data, tasks):
  get = lambda n: next(seqio.get_mixture_or_task(n).get_dataset(  # noqa: E731
      None, split='validation', shuffle=False).as_numpy_iterator())
  raw = next(seqio.get_mixture_or_task('t5_mnli').source.get_dataset(
      'validation', shuffle=False).as_numpy_iterator())
  premise, hypothesis = raw['premise'].decode().strip(), raw['hypothesis'].decode().strip()
  assert get('roberta_mnli')['inputs_pretokenized'].decode() == f'{premise} </s> {hypothesis}'
  assert get('roberta_mnli_v1')['inputs_pretokenized'].decode() == f'{hypothesis} </s> {premise}'
