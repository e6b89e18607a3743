"""trainer/ranking.py: the popularity offset beta * log(1 + n_i) as one more embedding column."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_hit_ranks import _csr  # tests/trainer is on sys.path
from trainer.evaluate import evaluate, topk_items
from trainer.ranking import popularity_column, with_popularity_offset


def test_popularity_column_is_log1p_of_each_items_training_degree() -> None:
    train = _csr([(0, 0), (1, 0), (2, 0), (0, 2)], 3, 4)  # item 0 seen 3 times, item 2 once, 1 and 3 never
    assert popularity_column(train).tolist() == pytest.approx([math.log(4), 0.0, math.log(2), 0.0])


def test_offset_adds_beta_log1p_degree_to_every_score_and_zero_changes_nothing() -> None:
    torch.manual_seed(0)
    user, item = torch.randn(5, 3), torch.randn(4, 3)
    pop = torch.tensor([math.log(4), 0.0, math.log(2), 0.0], dtype=torch.float64)
    u0, i0 = with_popularity_offset(user, item, pop, 0.0)
    assert u0 is user and i0 is item
    u, i = with_popularity_offset(user, item, pop, -0.25)
    assert u.shape == (5, 4) and i.shape == (4, 4) and u.dtype == user.dtype
    torch.testing.assert_close(u @ i.T, user @ item.T - 0.25 * pop.float()[None, :])
    with pytest.raises(ValueError, match="one per item"):
        with_popularity_offset(user, item, pop[:3], 0.1)


def test_a_large_negative_offset_moves_an_unseen_item_to_the_top() -> None:
    # Item 2 (seen twice in training) outscores the unseen item 1 for user 0; a strong enough beta < 0
    # ranks item 1 first, and the evaluator sees the same ranking.
    train = _csr([(0, 0), (1, 0), (1, 2), (2, 2)], 3, 4)
    held = _csr([(0, 1)], 3, 4)
    user, item = torch.ones(3, 2), torch.tensor([[1.0, 1.0], [0.0, 0.1], [0.9, 0.9], [0.0, 0.0]])
    before = evaluate(user, item, held, [train], ks=(1,), reduce=False).metrics["recall@1"]
    u, i = with_popularity_offset(user, item, popularity_column(train), -10.0)
    after = evaluate(u, i, held, [train], ks=(1,), reduce=False).metrics["recall@1"]
    _, top = topk_items(u, i, np.array([0]), 1, [train])
    assert before == 0.0 and after == 1.0 and top[0, 0] == 1
