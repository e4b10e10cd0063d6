"""Turn decoded model outputs (and targets) into what the metric functions compare."""
from __future__ import annotations

from typing import Callable, Sequence


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


class ClassificationPostprocessor:
  """Prediction text -> class index (-1 if it is no label word); target -> the example's label.

  A prediction matches a class by its label word or by the decoded label target (the `v1` layout
  trains on truncated pieces, e.g. "en" for "entailment").
  """

  def __init__(self, label_words: Sequence[str], decoded_targets: Callable[[], Sequence[str]]):
    self.label_words = tuple(w.lower() for w in label_words)
    self._decoded_targets = decoded_targets

  def __call__(self, output, example=None, is_target: bool = False):
    if is_target and example is not None and 'label' in example:
      return int(example['label'])
    text = _text(output).strip().lower()
    if text in self.label_words:
      return self.label_words.index(text)
    decoded = [d.strip().lower() for d in self._decoded_targets()]
    return decoded.index(text) if text in decoded else -1


def qa(output, example=None, is_target: bool = False):
  """Targets -> every gold answer (F1 / EM take the max over them); predictions -> text."""
  if is_target and example is not None and 'answers' in example:
    return [_text(a) for a in example['answers']]
  return _text(output)


def text(output, example=None, is_target: bool = False) -> str:
  del example, is_target
  return _text(output)
