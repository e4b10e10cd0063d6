"""Small synthetic tasks, generated deterministically (fixed seeds, no download), in three types.

* SA  (`synth_sentiment_{a,b,c}`): a few domain words plus 1 or 3 sentiment words; the label is the
  majority polarity. Domains differ in their filler and in half of their sentiment words (shared:
  good/bad...), like IMDB vs restaurant vs laptop. Label words negative / positive.
* NLI (`synth_nli_{a,b}`): the premise lists domain nouns and one adjective, the hypothesis names
  one of the nouns with an adjective of the same dimension (big/small, hot/cold, fast/slow; two
  synonyms per pole, shared by both tasks): entailment iff both adjectives are on the same pole.
  Label words contradiction / entailment (RoBERTa: no / yes).
* PI  (`synth_paraphrase_{a,b}`): each domain's words form two topics; the sentences are
  paraphrases iff both draw from the same topic. Label words false / true.

Within a type the rule and label words are shared and only the word distribution changes, so a
prompt trained on one task transfers to its siblings; across types the input form, rule and label
words all differ. The pair rules compare two small features (a pole, a topic) rather than exact
words, so a tiny T5 learns them in a few hundred steps. Training-set sizes differ on purpose so
example-count mixing rates are visible. Texts only use `VOCAB_WORDS`, the `synth` vocabulary.
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from prompt_transfer_jax.tasks import templates

VALIDATION_SIZE = 200
TEST_SIZE = 200
SHARED_POSITIVE = ('good', 'great', 'excellent', 'wonderful', 'pleasant', 'superb')
SHARED_NEGATIVE = ('bad', 'awful', 'terrible', 'poor', 'horrible', 'dreadful')
# NLI adjectives: dimension -> (pole 0 synonyms, pole 1 synonyms).
ADJECTIVES = ((('big', 'large'), ('small', 'tiny')), (('hot', 'warm'), ('cold', 'cool')),
              (('fast', 'quick'), ('slow', 'sluggish')))


@dataclasses.dataclass(frozen=True)
class SynthSpec:
  key: str
  task_type: str
  words: tuple[str, ...]                      # the domain's own words (fillers / nouns)
  train_size: int
  length: tuple[int, int]                     # min, max number of domain words per text
  positive: tuple[str, ...] = ()              # SA: domain-specific sentiment words
  negative: tuple[str, ...] = ()


def _w(text: str) -> tuple[str, ...]:
  return tuple(text.split())


SYNTH_SPECS: dict[str, SynthSpec] = {s.key: s for s in [
    SynthSpec('synth_sentiment_a', 'SA', _w('film actor scene plot director script camera cast '
                                             'story ending screen sequel studio role drama comedy '
                                             'villain hero soundtrack trailer'), 4000, (4, 8),
              _w('gripping moving'), _w('boring dull')),
    SynthSpec('synth_sentiment_b', 'SA', _w('dinner waiter menu table dessert soup chef kitchen '
                                             'salad pasta wine bread lunch steak sauce portion '
                                             'plate booth bill coffee'), 2000, (4, 8),
              _w('tasty fresh'), _w('bland stale')),
    SynthSpec('synth_sentiment_c', 'SA', _w('laptop battery screenshot keyboard charger display '
                                             'trackpad speaker fan port driver webcam memory disk '
                                             'hinge case update warranty cable monitor'), 3000, (4, 8),
              _w('snappy sleek'), _w('laggy buggy')),
    SynthSpec('synth_nli_a', 'NLI', _w('cat dog horse cow sheep goat pig duck goose hen fox wolf '
                                        'bear deer mouse rabbit otter seal whale shark'), 3000, (4, 6)),
    SynthSpec('synth_nli_b', 'NLI', _w('hammer saw drill wrench chisel ladder bucket rope shovel '
                                        'rake brush nail screw bolt glue tape ruler pliers clamp '
                                        'file'), 2000, (5, 8)),
    SynthSpec('synth_paraphrase_a', 'PI', _w('apple banana cherry grape lemon mango melon olive '
                                              'peach pear plum berry onion carrot potato tomato '
                                              'pepper garlic rice bean'), 3000, (3, 5)),
    SynthSpec('synth_paraphrase_b', 'PI', _w('red blue green yellow purple orange pink brown black '
                                              'white silver golden violet indigo crimson amber '
                                              'teal navy ivory beige'), 2000, (4, 6)),
]}
SYNTH_KEYS = tuple(SYNTH_SPECS)

LABEL_WORDS = {'SA': templates.SENTIMENT2, 'NLI': templates.NLI2, 'PI': templates.PI2}
MLM_LABEL_WORDS = {'SA': templates.SENTIMENT2, 'NLI': templates.MLM_NLI2, 'PI': templates.PI2}

_TEMPLATE_WORDS = _w('sentence: premise: hypothesis: sentence1: sentence2:')
_ALL_LABEL_WORDS = _w('negative moderate positive conflict contradiction neutral entailment no '
                      'yes false true unacceptable acceptable')
VOCAB_WORDS = tuple(dict.fromkeys(
    _TEMPLATE_WORDS + _ALL_LABEL_WORDS + SHARED_POSITIVE + SHARED_NEGATIVE
    + tuple(w for dim in ADJECTIVES for pole in dim for w in pole)
    + tuple(w for s in SYNTH_SPECS.values() for w in s.words + s.positive + s.negative)))
# pad 0, eos 1, unk 2, then the words; rounded up to a multiple of 128 for the model's embedding.
SYNTH_VOCAB_SIZE = -(-(len(VOCAB_WORDS) + 3) // 128) * 128


def split_size(key: str, split: str) -> int:
  return {'train': SYNTH_SPECS[key].train_size, 'validation': VALIDATION_SIZE,
          'test': TEST_SIZE}[split]


def _rng(key: str, split: str) -> np.random.RandomState:
  # RandomState's stream is frozen across numpy versions, so the data never changes.
  return np.random.RandomState(zlib.crc32(f'{key}/{split}'.encode()))


def _sentiment(spec: SynthSpec, rng, label: int) -> dict:
  pools = [(SHARED_NEGATIVE, spec.negative), (SHARED_POSITIVE, spec.positive)]
  k = 1 if rng.rand() < 0.5 else 3
  polarities = [label] * (k // 2 + 1) + [1 - label] * (k // 2)
  sentiment = [str(rng.choice(pools[p][rng.randint(2)])) for p in polarities]
  words = [str(w) for w in rng.choice(spec.words, rng.randint(spec.length[0], spec.length[1] + 1))]
  for w in sentiment:
    words.insert(rng.randint(len(words) + 1), w)
  return {'text': ' '.join(words), 'label': label}


def _nli(spec: SynthSpec, rng, label: int) -> dict:
  count = rng.randint(spec.length[0], spec.length[1] + 1)
  nouns = [spec.words[i] for i in rng.permutation(len(spec.words))[:count]]
  dim, pole = ADJECTIVES[rng.randint(len(ADJECTIVES))], rng.randint(2)
  premise = nouns + [str(rng.choice(dim[pole]))]
  premise = [premise[i] for i in rng.permutation(len(premise))]
  hypothesis = f'{nouns[rng.randint(len(nouns))]} {rng.choice(dim[pole if label else 1 - pole])}'
  return {'premise': ' '.join(premise), 'hypothesis': hypothesis, 'label': label}


def _paraphrase(spec: SynthSpec, rng, label: int) -> dict:
  half = len(spec.words) // 2
  topics = (spec.words[:half], spec.words[half:])
  first = rng.randint(2)
  second = first if label else 1 - first
  sentences = []
  for topic in (first, second):
    count = rng.randint(spec.length[0], spec.length[1] + 1)
    sentences.append(' '.join(str(w) for w in rng.choice(topics[topic], count, replace=False)))
  return {'sentence1': sentences[0], 'sentence2': sentences[1], 'label': label}


_MAKERS = {'SA': _sentiment, 'NLI': _nli, 'PI': _paraphrase}


def generate(key: str, split: str) -> list[dict]:
  """The examples of one split (`train`, `validation` or `test`), balanced labels, fixed seed."""
  if key not in SYNTH_SPECS:
    raise ValueError(f'unknown synthetic task {key!r}; choose one of {SYNTH_KEYS}')
  spec = SYNTH_SPECS[key]
  rng = _rng(key, split)
  size = split_size(key, split)
  labels = rng.permutation(np.arange(size) % 2)
  return [_MAKERS[spec.task_type](spec, rng, int(label)) for label in labels]
