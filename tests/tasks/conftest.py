"""Fixtures for the task tests: vocabularies, TFDS mock data and tiny local data files."""
import csv
import io
import json
import pathlib

import pytest

TESTDATA = pathlib.Path(__file__).resolve().parent / 'testdata'
TFDS_METADATA = TESTDATA / 'tfds'
SHARED_SPM = TESTDATA.parents[2].parent / 'shared' / 'fixtures' / 't5x' / 't5_spm_32000.model'
WORDS = ('alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november '
         'oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu').split()


def _sentence(i: int, n: int = 6) -> str:
  return ' '.join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n))


@pytest.fixture(scope='module')
def tasks():
  from prompt_transfer_jax import tasks as tasks_lib
  return tasks_lib


@pytest.fixture(scope='module')
def t5_spm(tmp_path_factory, tasks):
  """The real T5 SentencePiece model when ../shared is there, else a tiny one trained here;
  configured as the t5 vocabulary for the module."""
  from prompt_transfer_jax.tasks import settings
  path = SHARED_SPM
  if not path.exists():
    import sentencepiece as spm
    model = io.BytesIO()
    corpus = [_sentence(i, 12) for i in range(300)] + ['negative positive moderate conflict neutral '
                                                       'contradiction entailment false true '
                                                       'unacceptable acceptable'] * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model,
                                   vocab_size=400, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   byte_fallback=True, character_coverage=1.0,
                                   hard_vocab_limit=False)
    path = tmp_path_factory.mktemp('spm') / 'tiny.model'
    path.write_bytes(model.getvalue())
  settings.configure(t5_vocab=str(path))
  yield path
  settings.reset('t5_vocab')


@pytest.fixture(scope='module')
def roberta_dir(tmp_path_factory, tasks):
  """A tiny RoBERTa-style byte-level BPE tokenizer (label words are single tokens), configured as
  the roberta vocabulary for the module."""
  import tokenizers
  from prompt_transfer_jax.tasks import settings
  tok = tokenizers.ByteLevelBPETokenizer()
  labels = ('negative moderate positive conflict neutral no yes false true acceptable unacceptable '
            'contradiction entailment').split()
  corpus = [_sentence(i, 10) for i in range(200)] + [w for w in labels for _ in range(30)]
  tok.train_from_iterator(corpus, vocab_size=600, min_frequency=1,
                          special_tokens=['<s>', '<pad>', '</s>', '<unk>', '<mask>'])
  directory = tmp_path_factory.mktemp('roberta_tok')
  tok.save(str(directory / 'tokenizer.json'))
  settings.configure(roberta_tokenizer=str(directory))
  yield directory
  settings.reset('roberta_tokenizer')


@pytest.fixture(scope='module')
def tfds_mock():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_FILES,
                              data_dir=str(TFDS_METADATA)):
    yield


def write_local_data(root: pathlib.Path) -> pathlib.Path:
  """Tiny files in the 1.0 formats for the five tasks TFDS lacks (JSON array, JSON lines, CSV)."""
  absa = ['negative', 'neutral', 'positive', 'conflict']
  for domain in ('laptop', 'restaurant'):
    (root / domain).mkdir(parents=True)
    rows = [{'sentence': _sentence(i), 'aspect': WORDS[i % 26], 'sentiment': absa[i % 4]}
            for i in range(12)]
    (root / domain / 'train.json').write_text(json.dumps(rows))
    (root / domain / 'test.json').write_text('\n'.join(json.dumps(r) for r in rows[:8]))
  (root / 'tweeteval_sentiment').mkdir()
  for split, n in (('train', 12), ('dev', 6), ('test', 6)):
    rows = [{'sentence': _sentence(i + n), 'label': str(i % 3)} for i in range(n)]
    (root / 'tweeteval_sentiment' / f'{split}.json').write_text(json.dumps(rows))
  for name, header in (('deontology', ['label', 'scenario', 'excuse']),
                       ('justice', ['label', 'scenario'])):
    folder = root / 'ethics' / name
    folder.mkdir(parents=True)
    for split, n in (('train', 12), ('test', 6)):
      with open(folder / f'{name}_{split}.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(n):
          writer.writerow([str(i % 2), _sentence(i), _sentence(i + 1, 4)][:len(header)])
  return root


@pytest.fixture(scope='module')
def local_data(tmp_path_factory, tasks):
  from prompt_transfer_jax.tasks import settings
  root = write_local_data(tmp_path_factory.mktemp('ptj_data'))
  settings.configure(data_dir=str(root))
  yield root
  settings.reset('data_dir')
