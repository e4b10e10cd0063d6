"""Raw data of the 17 tasks (and the synthetic ones), converted to each type's canonical fields.

* TFDS where the dataset exists there (glue/*, imdb_reviews, snli, squad, natural_questions_open,
  multi_news, samsum, movie_rationales), read from TFDS's data dir (`TFDS_DATA_DIR`).
* Local files under the data dir (`settings`: PTJ_DATA_DIR, default `data`) for the datasets TFDS
  lacks, in the layout and format the 1.0 code read (paper-spec §1.1):
    laptop/{train,test}.json, restaurant/{train,test}.json   [{"sentence", "aspect", "sentiment"}]
    tweeteval_sentiment/{train,dev,test}.json               [{"sentence", "label"}]  (label "0".."2")
    ethics/deontology/deontology_{train,test}.csv           label,scenario,excuse (Hendrycks tar)
    ethics/justice/justice_{train,test}.csv                 label,scenario
  `.json` files may be a JSON array or JSON lines. When a file is missing, the Hugging Face
  `datasets` hub copy is used if that package is installed; otherwise a one-line error names it.
* Generated rows for the synthetic tasks.

Splits (paper-spec §1.1): `train`; `validation` = the split the paper evaluates every epoch and
reports (MNLI validation_matched; IMDB, laptop, restaurant and ETHICS use their test file);
`test` = the labeled test split, or `validation` where there is none. Held-out option:
`heldout_train` / `heldout_validation` are the first 95% / last 5% of `train`, for model
selection on data the reported `validation` score never sees.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import pathlib
from typing import Callable, Mapping, Optional

import seqio

from prompt_transfer_jax.tasks import settings
from prompt_transfer_jax.tasks import synthetic
from prompt_transfer_jax.tasks._tf import tf

HELDOUT_PERCENT = 5
SPLITS = ('train', 'validation', 'test', 'heldout_train', 'heldout_validation')


class DataFileError(ValueError):
  """A task's local data file is missing or malformed (message: one line naming the file)."""


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  name: str                                  # name:version
  validation: str
  test: str
  fields: Mapping[str, str]                  # canonical field -> TFDS feature ('a/b' = nested)
  label_remap: Optional[tuple[int, ...]] = None  # our class = label_remap[TFDS class]
  tfds_label_names: Optional[tuple[str, ...]] = None

  def splits(self) -> dict[str, str]:
    cut = 100 - HELDOUT_PERCENT
    return {'train': 'train', 'validation': self.validation, 'test': self.test,
            'heldout_train': f'train[:{cut}%]', 'heldout_validation': f'train[{cut}%:]'}


_SA = lambda f: {'text': f}  # noqa: E731
_NLI_REMAP = (2, 1, 0)  # GLUE/SNLI {entailment, neutral, contradiction} -> ours (reversed)
TFDS_SPECS: dict[str, TfdsSpec] = {
    'imdb': TfdsSpec('imdb_reviews/plain_text:1.0.0', 'test', 'test', _SA('text'), (0, 1),
                     ('neg', 'pos')),
    'sst2': TfdsSpec('glue/sst2:2.0.0', 'validation', 'validation', _SA('sentence'), (0, 1),
                     ('negative', 'positive')),
    'movie_rationales': TfdsSpec('movie_rationales:0.1.0', 'validation', 'test', _SA('review'),
                                 (0, 1), ('NEG', 'POS')),
    'mnli': TfdsSpec('glue/mnli:2.0.0', 'validation_matched', 'validation_matched',
                     {'premise': 'premise', 'hypothesis': 'hypothesis'}, _NLI_REMAP,
                     ('entailment', 'neutral', 'contradiction')),
    'qnli': TfdsSpec('glue/qnli:2.0.0', 'validation', 'validation',
                     {'premise': 'sentence', 'hypothesis': 'question'}, (1, 0),
                     ('entailment', 'not_entailment')),
    'snli': TfdsSpec('snli:1.1.0', 'validation', 'test',
                     {'premise': 'premise', 'hypothesis': 'hypothesis'}, _NLI_REMAP,
                     ('entailment', 'neutral', 'contradiction')),
    'qqp': TfdsSpec('glue/qqp:2.0.0', 'validation', 'validation',
                    {'sentence1': 'question1', 'sentence2': 'question2'}, (0, 1),
                    ('not_duplicate', 'duplicate')),
    'mrpc': TfdsSpec('glue/mrpc:2.0.0', 'validation', 'validation',
                     {'sentence1': 'sentence1', 'sentence2': 'sentence2'}, (0, 1),
                     ('not_equivalent', 'equivalent')),
    'squad': TfdsSpec('squad/v1.1:3.0.0', 'validation', 'validation',
                      {'question': 'question', 'context': 'context', 'answers': 'answers/text'}),
    'nq_open': TfdsSpec('natural_questions_open:1.0.0', 'validation', 'validation',
                        {'question': 'question', 'answers': 'answer'}),
    'multi_news': TfdsSpec('multi_news:2.1.0', 'validation', 'test',
                           {'document': 'document', 'summary': 'summary'}),
    'samsum': TfdsSpec('samsum:1.0.0', 'validation', 'test',
                       {'document': 'dialogue', 'summary': 'summary'}),
}


def tfds_adapter(spec: TfdsSpec) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
  """Preprocessor: TFDS features -> canonical fields; drops unlabeled (-1) rows, remaps labels."""
  def get(ex, path):
    for part in path.split('/'):
      ex = ex[part]
    return ex

  def adapt(ds):
    if spec.label_remap is not None:
      ds = ds.filter(lambda ex: ex['label'] >= 0)

    def fn(ex):
      out = {name: get(ex, path) for name, path in spec.fields.items()}
      if spec.label_remap is not None:
        remap = tf.constant(spec.label_remap, tf.int32)
        out['label'] = tf.gather(remap, tf.cast(ex['label'], tf.int32))
      return out
    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
  adapt.__name__ = f'tfds_adapter_{spec.name.split(":")[0].replace("/", "_")}'
  return adapt


# ----------------------------------------------------------------------------- local files

ABSA_LABELS = {'negative': 0, 'neutral': 1, 'positive': 2, 'conflict': 3}
TWEETEVAL_LABELS = {'negative': 0, 'neutral': 1, 'positive': 2}


@dataclasses.dataclass(frozen=True)
class LocalSpec:
  subdir: str
  files: Mapping[str, str]                   # base split -> file name
  row: Callable[[object], dict]              # file row -> canonical example
  hf: tuple[str, Optional[str], Mapping[str, str]]  # (path, config, base split -> HF split)
  hf_row: Callable[[dict], dict]
  about: str


def _label(mapping: Mapping[str, int], value) -> int:
  text = str(value).strip().lower()
  if text.lstrip('-').isdigit() and int(text) in mapping.values():
    return int(text)
  if text in mapping:
    return mapping[text]
  raise KeyError(f'label {value!r} not in {sorted(mapping)}')


def _absa(row) -> dict:
  return {'text': row['sentence'], 'aspect': row['aspect'],
          'label': _label(ABSA_LABELS, row['sentiment'])}


def _absa_hf(row) -> dict:
  return {'text': row['text'], 'aspect': row['span'], 'label': _label(ABSA_LABELS, row['label'])}


def _tweeteval(row) -> dict:
  return {'text': row['sentence'] if 'sentence' in row else row['text'],
          'label': _label(TWEETEVAL_LABELS, row['label'])}


def _ethics(excuse: bool):
  def row_fn(row) -> dict:
    out = {'scenario': row[1], 'label': int(row[0])}
    if excuse:
      out['excuse'] = row[2]
    return out
  return row_fn


def _ethics_hf(excuse: bool):
  def row_fn(row) -> dict:
    return _ethics(excuse)([row['label'], row['scenario']] + ([row['excuse']] if excuse else []))
  return row_fn


def _absa_spec(domain: str) -> LocalSpec:
  return LocalSpec(domain, {'train': 'train.json', 'validation': 'test.json', 'test': 'test.json'},
                   _absa, (f'tomaarsen/setfit-absa-semeval-{domain}s', None,
                           {'train': 'train', 'validation': 'test', 'test': 'test'}), _absa_hf,
                   f'SemEval-2014 Task 4 {domain} aspect-term sentiment (GCAE "atsa" JSON)')


def _ethics_spec(name: str, excuse: bool) -> LocalSpec:
  return LocalSpec(f'ethics/{name}', {'train': f'{name}_train.csv', 'validation': f'{name}_test.csv',
                                      'test': f'{name}_test.csv'}, _ethics(excuse),
                   ('hendrycks/ethics', name, {'train': 'train', 'validation': 'validation',
                                               'test': 'validation'}), _ethics_hf(excuse),
                   f'Hendrycks ETHICS {name} CSV')


LOCAL_SPECS: dict[str, LocalSpec] = {
    'laptop': _absa_spec('laptop'),
    'restaurant': _absa_spec('restaurant'),
    'tweeteval_sentiment': LocalSpec(
        'tweeteval_sentiment', {'train': 'train.json', 'validation': 'dev.json', 'test': 'test.json'},
        _tweeteval, ('tweet_eval', 'sentiment', {'train': 'train', 'validation': 'validation',
                                                 'test': 'test'}),
        _tweeteval, 'TweetEval sentiment JSON'),
    'ethics_deontology': _ethics_spec('deontology', excuse=True),
    'ethics_justice': _ethics_spec('justice', excuse=False),
}


def _read_rows(path: pathlib.Path) -> list:
  """JSON array / JSON lines (dict rows) or CSV / TSV (list rows; header lines kept)."""
  if path.suffix in ('.csv', '.tsv'):
    with open(path, newline='', encoding='utf-8') as f:
      return list(csv.reader(f, delimiter='\t' if path.suffix == '.tsv' else ','))
  text = path.read_text(encoding='utf-8')
  try:
    data = json.loads(text)
    return data if isinstance(data, list) else [data]
  except json.JSONDecodeError:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def local_path(key: str, split: str) -> pathlib.Path:
  spec = LOCAL_SPECS[key]
  return pathlib.Path(settings.get('data_dir')).expanduser() / spec.subdir / spec.files[split]


def load_local_rows(key: str, split: str) -> list[dict]:
  """Canonical examples of a base split (`train`, `validation`, `test`) of a local-file task."""
  path = local_path(key, split)
  if not path.is_file():
    return _load_hf_rows(key, split, path)
  return _read_local(key, str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _read_local(key: str, path: str, mtime_ns: int) -> list[dict]:
  del mtime_ns  # cache key only: an edited file is read again
  spec = LOCAL_SPECS[key]
  rows = []
  for i, row in enumerate(_read_rows(pathlib.Path(path))):
    if isinstance(row, list) and (not row or row[0].strip() not in ('0', '1')):
      continue  # ETHICS CSV: header and malformed rows (1.0 keeps rows starting with 0/1)
    try:
      rows.append(spec.row(row))
    except (KeyError, IndexError, TypeError, ValueError) as e:
      raise DataFileError(f'{path}: row {i} is not a {spec.about} row ({e})') from None
  return rows


def _load_hf_rows(key: str, split: str, path: pathlib.Path) -> list[dict]:
  spec = LOCAL_SPECS[key]
  hf_path, hf_config, hf_splits = spec.hf
  try:
    import datasets
  except ImportError:
    raise DataFileError(
        f'missing local data file {path} for task {key!r} ({spec.about}); put it there (data dir: '
        f'{settings.ENV_VARS["data_dir"]}) or `pip install datasets` to read {hf_path} from the '
        'Hugging Face hub') from None
  data = datasets.load_dataset(hf_path, hf_config, split=hf_splits[split])
  return [spec.hf_row(row) for row in data]


# ----------------------------------------------------------------------------- in-memory rows

class RowsSource(seqio.FunctionDataSource):
  """Rows from a Python loader (local files, generated data) as a seqio source, with the held-out
  splits carved from `train` and example counts for mixing rates."""

  def __init__(self, load: Callable[[str], list[dict]], features: Mapping[str, tf.dtypes.DType]):
    self._load = load
    self._features = dict(features)
    super().__init__(self._dataset_fn, splits=SPLITS)

  def rows(self, split: str) -> list[dict]:
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; choose one of {SPLITS}')
    if split.startswith('heldout_'):
      train = self.rows('train')
      cut = round(len(train) * (100 - HELDOUT_PERCENT) / 100)
      return train[:cut] if split == 'heldout_train' else train[cut:]
    return self._load(split)

  def _dataset_fn(self, split: str, shuffle_files: bool, seed: Optional[int] = None):
    del shuffle_files, seed  # the Task shuffles examples
    rows = self.rows(split)
    columns = {name: tf.constant([r[name] for r in rows], dtype, shape=[len(rows)])
               for name, dtype in self._features.items()}
    return tf.data.Dataset.from_tensor_slices(columns)

  def num_input_examples(self, split: str) -> int:
    return len(self.rows(split))


def canonical_features(task_type: str, key: str) -> dict[str, tf.dtypes.DType]:
  fields = {'SA': ['text'], 'NLI': ['premise', 'hypothesis'], 'PI': ['sentence1', 'sentence2'],
            'EJ': ['scenario']}[task_type]
  if key in ('laptop', 'restaurant'):
    fields.append('aspect')
  if key == 'ethics_deontology':
    fields.append('excuse')
  return {**{f: tf.string for f in fields}, 'label': tf.int32}


def local_source(key: str, task_type: str) -> RowsSource:
  return RowsSource(lambda split: load_local_rows(key, split), canonical_features(task_type, key))


@functools.lru_cache(maxsize=None)
def _synthetic_rows(key: str, split: str) -> list[dict]:
  return synthetic.generate(key, split)


def synthetic_source(key: str) -> RowsSource:
  spec = synthetic.SYNTH_SPECS[key]
  return RowsSource(lambda split: _synthetic_rows(key, split),
                    canonical_features(spec.task_type, key))


def describe(key: str) -> str:
  """Where a task's data comes from, in one line (`<data_dir>`: the `data_dir` setting)."""
  if key in TFDS_SPECS:
    return f'tfds:{TFDS_SPECS[key].name}'
  if key in LOCAL_SPECS:
    spec = LOCAL_SPECS[key]
    files = ",".join(sorted(set(spec.files.values())))
    return f'local:<data_dir>/{spec.subdir}/{{{files}}} (else hf:{spec.hf[0]})'
  if key in synthetic.SYNTH_SPECS:
    return 'synthetic (generated, fixed seed)'
  raise ValueError(f'no data source for task key {key!r}')


def split_map(key: str) -> dict[str, str]:
  """Our split name -> the source's split (TFDS split, file name or generated split)."""
  cut = f'{100 - HELDOUT_PERCENT}%'
  if key in TFDS_SPECS:
    return TFDS_SPECS[key].splits()
  base = ('train', 'validation', 'test')
  files = LOCAL_SPECS[key].files if key in LOCAL_SPECS else {s: s for s in base}
  return {**files, 'heldout_train': f'train[:{cut}]', 'heldout_validation': f'train[{cut}:]'}
