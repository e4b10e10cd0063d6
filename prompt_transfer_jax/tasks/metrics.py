"""Metrics, as seqio metric functions `(targets, predictions) -> {name: percent}`.

* `accuracy` for the classification tasks (labels or texts compared for equality);
* `squad_f1_em`: SQuAD v1.1 normalised token F1 and exact match, max over the gold answers;
* `rouge_l`: ROUGE-L F-measure from the `rouge-score` package (stemming on, as in T5);
* `rank_classification`: accuracy of scoring every label-word sequence (`scores [N, K]`).
"""
from __future__ import annotations

import collections
import re
import string
from typing import Callable, Sequence

import numpy as np

_ARTICLES = re.compile(r'\b(a|an|the)\b')
_PUNCTUATION = frozenset(string.punctuation)


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def accuracy(targets: Sequence, predictions: Sequence) -> dict:
  if len(targets) != len(predictions):
    raise ValueError(f'accuracy: {len(targets)} targets but {len(predictions)} predictions')
  if not len(targets):
    raise ValueError('accuracy: no examples')
  hits = [t == p for t, p in zip(targets, predictions)]
  return {'accuracy': 100.0 * float(np.mean(hits))}


def normalize_answer(text) -> str:
  """SQuAD v1.1 normalisation: lower case, drop punctuation, drop articles, squeeze spaces."""
  text = ''.join(ch for ch in _text(text).lower() if ch not in _PUNCTUATION)
  return ' '.join(_ARTICLES.sub(' ', text).split())


def _token_f1(prediction: str, gold: str) -> float:
  pred, ref = prediction.split(), gold.split()
  if not pred or not ref:
    return float(pred == ref)
  common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(pred), common / len(ref)
  return 2 * precision * recall / (precision + recall)


def squad_f1_em(targets: Sequence, predictions: Sequence) -> dict:
  """`targets[i]` is one gold answer or a list of them; returns {'f1', 'em'} in percent."""
  if len(targets) != len(predictions):
    raise ValueError(f'squad_f1_em: {len(targets)} targets but {len(predictions)} predictions')
  if not len(targets):
    raise ValueError('squad_f1_em: no examples')
  f1s, ems = [], []
  for golds, pred in zip(targets, predictions):
    golds = [golds] if isinstance(golds, (str, bytes)) else list(golds)
    if not golds:
      raise ValueError('squad_f1_em: an example has no gold answer')
    p = normalize_answer(pred)
    norm_golds = [normalize_answer(g) for g in golds]
    f1s.append(max(_token_f1(p, g) for g in norm_golds))
    ems.append(max(float(p == g) for g in norm_golds))
  return {'f1': 100.0 * float(np.mean(f1s)), 'em': 100.0 * float(np.mean(ems))}


def rouge_l(targets: Sequence, predictions: Sequence) -> dict:
  """Mean ROUGE-L (longest common subsequence) F-measure over examples, in percent."""
  from rouge_score import rouge_scorer
  if len(targets) != len(predictions):
    raise ValueError(f'rouge_l: {len(targets)} targets but {len(predictions)} predictions')
  if not len(targets):
    raise ValueError('rouge_l: no examples')
  scorer = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)
  scores = [scorer.score(_text(t), _text(p))['rougeL'].fmeasure for t, p in zip(targets, predictions)]
  return {'rouge_l': 100.0 * float(np.mean(scores))}


def rank_classification(labels: Sequence[int], scores) -> dict:
  """Accuracy of argmax over per-label scores `[N, K]` (e.g. summed label-word log-likelihoods)."""
  scores = np.asarray(scores)
  if scores.ndim != 2 or scores.shape[0] != len(labels):
    raise ValueError(f'rank_classification: scores shape {scores.shape} does not match '
                     f'{len(labels)} labels as [N, K]')
  return accuracy(list(np.asarray(labels)), list(np.argmax(scores, axis=-1)))


METRIC_FNS: dict[str, Callable] = {'accuracy': accuracy, 'f1': squad_f1_em, 'rouge_l': rouge_l}


def metric_fn_for(task_info) -> Callable:
  """The metric function of a task (`task_info.metric`: 'accuracy', 'f1' or 'rouge_l')."""
  if task_info.metric not in METRIC_FNS:
    raise ValueError(f'unknown metric {task_info.metric!r}; choose one of {sorted(METRIC_FNS)}')
  return METRIC_FNS[task_info.metric]
