"""Metric functions against hand-computed references; postprocessing into metric inputs."""
import numpy as np
import pytest
import seqio

from prompt_transfer_jax.tasks import metrics


def _lcs(a, b):
  table = np.zeros((len(a) + 1, len(b) + 1), int)
  for i, x in enumerate(a):
    for j, y in enumerate(b):
      table[i + 1, j + 1] = table[i, j] + 1 if x == y else max(table[i, j + 1], table[i + 1, j])
  return table[-1, -1]


def _lcs_f(target, prediction):
  t, p = target.split(), prediction.split()
  lcs = _lcs(t, p)
  return 0.0 if lcs == 0 else 2 * lcs / (len(t) + len(p))   # F1 of P = lcs/|p|, R = lcs/|t|


def test_accuracy():
  assert metrics.accuracy([0, 1, 2, 1], [0, 2, 2, 1]) == {'accuracy': 75.0}
  assert metrics.accuracy(['true', 'false'], ['true', 'true']) == {'accuracy': 50.0}
  with pytest.raises(ValueError, match='2 targets but 1 predictions'):
    metrics.accuracy([0, 1], [0])


@pytest.mark.parametrize('golds, prediction, f1, em', [
    ('eiffel tower', 'The Eiffel Tower!', 1.0, 1.0),            # articles, case, punctuation
    (['Paris', 'Paris France'], 'in Paris, France', 0.8, 0.0),  # max over golds: 2*(2/3*1)/(2/3+1)
    ('a banana', 'an apple', 0.0, 0.0),
    ('a', 'the', 1.0, 1.0),                                       # both normalise to empty
    ('x', '', 0.0, 0.0),
    ('x y y', 'x x y', 2 / 3, 0.0),                               # token multiset overlap
    ([b'an answer', 'other'], b'Answer.', 1.0, 1.0),              # bytes, as seqio passes them
])
def test_squad_f1_em_cases(golds, prediction, f1, em):
  out = metrics.squad_f1_em([golds], [prediction])
  assert out['f1'] == pytest.approx(100 * f1) and out['em'] == pytest.approx(100 * em)


def test_squad_f1_em_averages_over_examples():
  out = metrics.squad_f1_em([['Paris', 'Paris France'], 'x'], ['in Paris, France', 'x'])
  assert out == pytest.approx({'f1': 90.0, 'em': 50.0})


def test_rouge_l_is_the_lcs_f_measure():
  from rouge_score import rouge_scorer
  pairs = [('the cat sat on the mat', 'the cat lay on a mat'), ('a b c d', 'd c b a'),
           ('one two three four five', 'two four six'), ('alpha beta', 'gamma delta')]
  out = metrics.rouge_l([t for t, _ in pairs], [p for _, p in pairs])
  assert out['rouge_l'] == pytest.approx(100 * np.mean([_lcs_f(t, p) for t, p in pairs]))
  assert _lcs_f(*pairs[0]) == pytest.approx(2 / 3)
  scorer = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)
  assert out['rouge_l'] == pytest.approx(
      100 * np.mean([scorer.score(t, p)['rougeL'].fmeasure for t, p in pairs]))
  assert metrics.rouge_l(['cats running'], ['cat run'])['rouge_l'] == pytest.approx(100.0)  # stems


def test_rank_classification():
  scores = [[0.1, 0.9], [2.0, 1.0], [0.0, 0.5]]
  assert metrics.rank_classification([1, 0, 0], scores)['accuracy'] == pytest.approx(200 / 3)
  with pytest.raises(ValueError, match=r'scores shape \(3,\)'):
    metrics.rank_classification([1, 0, 0], [0.1, 0.2, 0.3])


def test_metric_fn_for_each_type(tasks):
  assert metrics.metric_fn_for(tasks.get_task_info('t5_sst2')) is metrics.accuracy
  assert metrics.metric_fn_for(tasks.get_task_info('t5_nq_open')) is metrics.squad_f1_em
  assert metrics.metric_fn_for(tasks.get_task_info('t5_multi_news')) is metrics.rouge_l
  assert seqio.get_mixture_or_task('t5_squad').metric_fns == [metrics.squad_f1_em]


def test_postprocessing_feeds_the_metrics(tasks, t5_spm):
  post = seqio.get_mixture_or_task('t5_mnli_v1').postprocess_fn
  vocab = tasks.get_vocabulary('t5')
  assert post(b'neutral') == 1 and post('banana') == -1
  assert post(vocab.decode(tasks.label_targets('t5_mnli_v1')[2])) == 2   # truncated "entailment"
  assert post(b'x', example={'label': np.int32(0)}, is_target=True) == 0
  qa = seqio.get_mixture_or_task('t5_squad').postprocess_fn
  golds = qa(b'x', example={'answers': np.array([b'a', b'b'], object)}, is_target=True)
  assert golds == ['a', 'b'] and qa(b'a') == 'a'
  assert metrics.squad_f1_em([golds], [qa(b'b')])['em'] == 100.0
