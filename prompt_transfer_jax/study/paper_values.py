"""The paper's numbers, as the slides print them (/work/shared/docs/seed-slides.txt), by task key.

Cells the slide text garbles (split or merged digits) are None rather than guessed: RoBERTa-Large
QQP (PT and TPT), the RoBERTa-Large MRPC convergence speedup, and the comparable-result speedups
the slides print as N/A. Scores are percentages; speedups are ratios; Spearman values x100.

`CROSS_MODEL` holds the slides' cross-model table, RoBERTa-Large -> T5-XXL on the 13
classification tasks: the target's PT (its IMDB cell is missing from the slide text), a random
prompt, zero-shot Proj(P_src_t) for projectors trained on laptop and on MNLI by distance
minimizing ("Prompt Mapping") and by task tuning (keys `METHOD:TRAIN_KEY`), and TPT_MODEL from
the laptop and MNLI projectors (the slides do not say which method trained those; the Movie
comparable-result cells are N/A).
"""
from __future__ import annotations

from typing import Optional

_CLASSIFICATION = ('imdb', 'sst2', 'laptop', 'restaurant', 'movie_rationales',
                   'tweeteval_sentiment', 'mnli', 'qnli', 'snli', 'ethics_deontology',
                   'ethics_justice', 'qqp', 'mrpc')
_ALL = _CLASSIFICATION + ('squad', 'nq_open', 'multi_news', 'samsum')


def _row(keys, values) -> dict[str, Optional[float]]:
  assert len(keys) == len(values)
  return dict(zip(keys, values))


PAPER = {
    'roberta_large': {
        'model': 'RoBERTa-Large',
        'pt': _row(_CLASSIFICATION, [92.2, 96.1, 76.4, 83.7, 84.9, 76.1, 87.3, 92.4, 91.9, 85.6,
                                     81.0, None, 81.2]),
        'tpt': _row(_CLASSIFICATION, [92.4, 96.3, 79.1, 85.8, 85.1, 76.1, 87.9, 93.1, 91.9, 85.6,
                                      78.2, None, 79.2]),
        'convergence_speedup': _row(_CLASSIFICATION, [1.7, 1.1, 1.0, 1.9, 1.2, 0.9, 1.2, 1.2, 1.3,
                                                      0.9, 0.7, 0.8, None]),
        'comparable_result_speedup': _row(_CLASSIFICATION, [2.5, 2.4, 1.0, 3.8, 1.5, 1.3, 1.1, 2.3,
                                                            1.0, 0.9, None, None, None]),
        'spearman': {'E_concat': 22.6, 'E_average': 2.8, 'C_concat': 24.8, 'C_average': 44.7,
                     'ON': 49.7},
    },
    't5_xxl': {
        'model': 'T5-XXL',
        'pt': _row(_ALL, [96.5, 97.4, 76.6, 90.1, 97.9, 76.2, 90.5, 95.2, 93.4, 87.0, 92.5, 90.0,
                          86.3, 86.3, 20.8, 29.2, 45.8]),
        'tpt': _row(_ALL, [96.6, 97.8, 84.2, 88.6, 97.5, 77.0, 92.0, 96.2, 94.0, 95.3, 90.7, 90.9,
                           89.0, 85.9, 21.3, 29.3, 46.8]),
        'convergence_speedup': _row(_ALL, [1.2, 49.7, 2.2, 1.1, 3.9, 1.4, 12.5, 24.9, 49.9, 29.8,
                                           1.5, 1.0, 3.3, 1.1, 1.0, 2.0, 2.0]),
        'comparable_result_speedup': _row(_ALL, [1.2, 48.9, 219.8, None, None, 1.5, 12.5, 29.9,
                                                 49.9, 29.9, None, 1.0, 5.0, None, 1.0, 2.0, 2.5]),
        'spearman': {'E_concat': 12.9, 'E_average': -2.5, 'C_concat': 31.6, 'C_average': 33.5,
                     'ON': 36.9},
    },
}


_TPT_MODEL = ('performance', 'convergence_speedup', 'comparable_result_speedup')

CROSS_MODEL = {
    'roberta_large_to_t5_xxl': {
        'model': 'RoBERTa-Large -> T5-XXL',
        'pt': _row(_CLASSIFICATION, [None, 97.4, 76.6, 88.1, 97.9, 72.5, 90.5, 95.2, 93.4, 87.0,
                                     92.5, 90.0, 86.3]),
        'random': _row(_CLASSIFICATION, [49.7, 49.0, 19.8, 17.0, 51.6, 15.5, 31.8, 49.3, 31.9,
                                         51.3, 50.0, 36.4, 67.0]),
        'zero_shot': {
            'distance:laptop': _row(_CLASSIFICATION, [49.6, 49.0, 76.6, 17.5, 51.5, 14.4, 31.8,
                                                      48.1, 32.8, 53.3, 49.9, 36.8, 66.6]),
            'task_tuning:laptop': _row(_CLASSIFICATION, [82.9, 89.3, 80.3, 85.7, 78.6, 58.4, 32.4,
                                                         50.7, 33.6, 54.9, 51.6, 33.9, 63.7]),
            'distance:mnli': _row(_CLASSIFICATION, [49.6, 50.1, 19.8, 18.3, 51.2, 15.0, 90.5, 49.0,
                                                    32.9, 50.3, 49.0, 36.8, 65.6]),
            'task_tuning:mnli': _row(_CLASSIFICATION, [49.7, 48.8, 19.8, 17.0, 51.6, 16.0, 89.8,
                                                       82.7, 88.2, 49.7, 50.0, 36.8, 67.7]),
        },
        'tpt_model': {
            'laptop': dict(zip(_TPT_MODEL, [
                _row(_CLASSIFICATION, [96.5, 97.4, 82.9, 90.3, 97.4, 74.4, 91.0, 95.4, 93.4, 92.5,
                                       92.5, 90.0, 87.9]),
                _row(_CLASSIFICATION, [1.1, 1.7, 1.9, 1.3, 0.6, 1.3, 0.9, 0.9, 1.0, 1.0, 0.7, 1.1,
                                       1.1]),
                _row(_CLASSIFICATION, [1.0, 19.0, 16.0, 6.0, None, 2.2, 3.6, 1.1, 6.0, 6.0, 0.9,
                                       1.8, 3.4])])),
            'mnli': dict(zip(_TPT_MODEL, [
                _row(_CLASSIFICATION, [96.5, 97.4, 82.7, 88.5, 95.8, 74.7, 91.2, 95.9, 93.5, 94.6,
                                       92.5, 90.0, 87.7]),
                _row(_CLASSIFICATION, [1.0, 1.6, 1.8, 0.9, 0.4, 1.3, 1.0, 1.1, 1.4, 2.0, 1.7, 0.9,
                                       0.9]),
                _row(_CLASSIFICATION, [1.0, 18.0, 15.0, 1.6, None, 1.5, 18.0, 20.0, 30.0, 7.5, 5.0,
                                       1.5, 1.9])])),
        },
    },
}


def cross_model_values(name: Optional[str]) -> dict:
  """The slides' cross-model table `name` ('roberta_large_to_t5_xxl'), or {} for None."""
  if name is None:
    return {}
  if name not in CROSS_MODEL:
    raise ValueError(f'no paper cross-model values named {name!r}; choose one of '
                     f'{", ".join(CROSS_MODEL)}')
  return CROSS_MODEL[name]


def paper_values(name: Optional[str]) -> dict:
  """The slides' tables of `name` ('roberta_large', 't5_xxl'), or {} for None."""
  if name is None:
    return {}
  if name not in PAPER:
    raise ValueError(f'no paper values named {name!r}; choose one of {", ".join(PAPER)}')
  return PAPER[name]
