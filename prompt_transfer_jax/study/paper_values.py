"""The paper's numbers, as the slides print them (/work/shared/docs/seed-slides.txt), by task key.

Cells the slide text garbles (split or merged digits) are None rather than guessed: RoBERTa-Large
QQP (PT and TPT), the RoBERTa-Large MRPC convergence speedup, and the comparable-result speedups
the slides print as N/A. Scores are percentages; speedups are ratios; Spearman values x100.
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


def paper_values(name: Optional[str]) -> dict:
  """The slides' tables of `name` ('roberta_large', 't5_xxl'), or {} for None."""
  if name is None:
    return {}
  if name not in PAPER:
    raise ValueError(f'no paper values named {name!r}; choose one of {", ".join(PAPER)}')
  return PAPER[name]
