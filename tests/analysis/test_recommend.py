"""Leave-one-out top-k hit rates of source recommendation, on a hand-made matrix."""
import numpy as np
import pytest

from prompt_transfer_jax.analysis import recommend as rec

# Rows = targets, columns = sources.
TRANSFER = np.array([[90, 70, 50, 60],
                     [65, 88, 64, 40],
                     [55, 55, 92, 30],
                     [20, 75, 60, 80]], float)
SIMILARITY = np.array([[1.0, 0.3, 0.9, 0.1],   # t0: ranks 2, 1, 3 ; best 1  -> top-1 miss, top-2 hit
                       [0.3, 1.0, 0.2, 0.8],   # t1: ranks 3, 0, 2 ; best 0  -> top-2 hit
                       [0.9, 0.2, 1.0, 0.5],   # t2: ranks 0, 3, 1 ; best 0 or 1 (tie) -> top-1 hit
                       [0.1, 0.8, 0.5, 1.0]])  # t3: ranks 1, 2, 0 ; best 1 -> top-1 hit


def test_hit_rates_by_hand():
  out = rec.leave_one_out_hit_rates(TRANSFER, SIMILARITY, ks=(1, 2, 3))
  assert out.rates == {1: 0.5, 2: 1.0, 3: 1.0}
  assert out.recommended == [[2, 1, 3], [3, 0, 2], [0, 3, 1], [1, 2, 0]]
  assert out.best == [[1], [0], [0, 1], [1]]
  # Chance: 1 winner of 3 -> 1/3 at top-1, 2/3 at top-2; 2 winners of 3 -> 2/3, 1.
  assert out.chance[1] == pytest.approx((3 * (1 / 3) + 2 / 3) / 4)
  assert out.chance[2] == pytest.approx((3 * (2 / 3) + 1) / 4)
  assert out.chance[3] == pytest.approx(1.0)
  data = out.to_json(['a', 'b', 'c', 'd'])
  assert data['per_target']['a'] == {'recommended': ['c', 'b', 'd'], 'best': ['b']}


def test_rank_is_stable_and_errors():
  assert rec.rank([0.5, 0.9, 0.5]).tolist() == [1, 0, 2]
  with pytest.raises(ValueError, match='same square shape'):
    rec.leave_one_out_hit_rates(TRANSFER, SIMILARITY[:3, :3])
