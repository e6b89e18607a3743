"""BPR triples: ranks split each global batch exactly; negatives avoid training items."""

import numpy as np
import pytest

from data_loaders.graph import CSR
from data_loaders.sampler import BPRSampler


def _graph(seed: int = 0, users: int = 50, items: int = 40, edges: int = 400) -> CSR:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, users * items, size=edges))
    return CSR.from_pairs(keys // items, keys % items, users, items)


def test_ranks_partition_every_global_batch() -> None:
    train = _graph()
    one = list(BPRSampler(train, batch_size=64, seed=3).epoch(0))
    two = [list(BPRSampler(train, batch_size=64, rank=r, world_size=2, seed=3).epoch(0)) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1])  # same number of collective steps on every rank
    for full, a, b in zip(one, *two):
        pairs = sorted(zip(full.users.tolist(), full.positives.tolist()))
        split = sorted(zip(np.r_[a.users, b.users].tolist(), np.r_[a.positives, b.positives].tolist()))
        assert pairs == split
    seen = np.concatenate([b.users * 1000 + b.positives for b in one])
    expected = np.repeat(np.arange(train.num_rows), train.degrees()) * 1000 + train.indices
    assert np.array_equal(np.sort(seen), np.sort(expected))  # each edge once per epoch


def test_negatives_are_not_training_items() -> None:
    train = _graph(edges=1200)  # dense enough that naive sampling would often hit a positive
    sampler = BPRSampler(train, batch_size=256, seed=1)
    for batch in sampler.epoch(0):
        for u, j in zip(batch.users, batch.negatives):
            assert j not in set(train.row(int(u)).tolist())


def test_epochs_differ_and_state_restores() -> None:
    train = _graph()
    a = BPRSampler(train, batch_size=32, seed=0)
    first = next(iter(a.epoch(0)))
    assert not np.array_equal(first.users, next(iter(a.epoch(1))).users)
    state = a.state_dict()
    after = next(iter(a.epoch(2))).negatives
    b = BPRSampler(train, batch_size=32, seed=0)
    b.load_state_dict(state)
    assert np.array_equal(next(iter(b.epoch(2))).negatives, after)


def test_k_negatives_repeat_each_positive_with_its_own_negatives() -> None:
    train = _graph(edges=1200)
    one = list(BPRSampler(train, batch_size=64, seed=3).epoch(0))
    three = [list(BPRSampler(train, batch_size=64, rank=r, world_size=2, seed=3, negatives=3).epoch(0))
             for r in range(2)]
    assert len(three[0]) == len(three[1]) == len(one)  # batch_size counts positives: same steps
    for full, a, b in zip(one, *three):
        assert len(a.users) == len(b.users) == 3 * len(full.users) // 2
        for part in (a, b):
            # Each positive's k triples sit together, each with a negative it has not trained on.
            assert np.array_equal(part.users, np.repeat(part.users[::3], 3))
            assert np.array_equal(part.positives, np.repeat(part.positives[::3], 3))
            for u, j in zip(part.users, part.negatives):
                assert j not in set(train.row(int(u)).tolist())
        pairs = sorted(zip(full.users.tolist(), full.positives.tolist()))
        assert sorted(zip(np.r_[a.users[::3], b.users[::3]].tolist(),
                          np.r_[a.positives[::3], b.positives[::3]].tolist())) == pairs
    # The k negatives of a positive are independent draws, not one draw repeated.
    negs = np.concatenate([b.negatives for b in three[0]]).reshape(-1, 3)
    assert (negs[:, 0] != negs[:, 1]).mean() > 0.5


def test_zero_negatives_refused() -> None:
    with pytest.raises(ValueError, match="negatives per positive must be >= 1, got 0"):
        BPRSampler(_graph(), batch_size=8, negatives=0)


def test_negatives_are_uniform_over_free_items() -> None:
    # One user with items {1, 2, 5} of 8: negatives must be uniform over {0, 3, 4, 6, 7}.
    train = CSR.from_pairs(np.array([0, 0, 0]), np.array([1, 2, 5]), 1, 8)
    sampler = BPRSampler(train, batch_size=4, seed=0)
    draws = sampler.negatives(np.zeros(50_000, dtype=np.int64))
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == [0, 3, 4, 6, 7]
    assert np.all(np.abs(counts / 50_000 - 0.2) < 0.01)


def test_candidate_pools_keep_the_stream_of_triples_and_avoid_training_items() -> None:
    train = _graph()
    plain = list(BPRSampler(train, batch_size=64, seed=3, negatives=2).epoch(0))
    pools = list(BPRSampler(train, batch_size=64, seed=3, negatives=2, candidates=5).epoch(0))
    assert len(plain) == len(pools)
    for a, b in zip(plain, pools):
        assert np.array_equal(a.users, b.users) and np.array_equal(a.positives, b.positives)
        assert b.negatives.shape == (len(b.users), 5)
        for u, row in zip(b.users, b.negatives):
            assert not set(row.tolist()) & set(train.row(u).tolist())
    # The M candidates of a triple are independent draws (not one value repeated).
    assert (np.ptp(np.concatenate([b.negatives for b in pools]), axis=1) > 0).mean() > 0.5
    with pytest.raises(ValueError, match="candidate negatives per triple must be >= 1, got 0"):
        BPRSampler(train, batch_size=8, candidates=0)


def test_candidate_pools_stop_after_candidate_epochs() -> None:
    sampler = BPRSampler(_graph(), batch_size=64, seed=3, candidates=4, candidate_epochs=2)
    shapes = [{b.negatives.shape[1:] for b in sampler.epoch(e)} for e in range(4)]
    assert shapes == [{(4,)}, {(4,)}, {()}, {()}]  # pools in epochs 0-1, single uniform negatives after
    late = BPRSampler(_graph(), batch_size=64, seed=3, candidates=4, candidate_epochs=2, late_candidates=2)
    shapes = [{b.negatives.shape[1:] for b in late.epoch(e)} for e in range(4)]
    assert shapes == [{(4,)}, {(4,)}, {(2,)}, {(2,)}]  # then pools of 2
    assert [late.candidates_in(e) for e in range(4)] == [4, 4, 2, 2]
    with pytest.raises(ValueError, match="late_candidates must be >= 1"):
        BPRSampler(_graph(), batch_size=8, late_candidates=0)


def test_popularity_negatives_follow_the_weights_over_free_items() -> None:
    # Item popularity over 3 users: item 0 x3, item 1 x2, item 2 x1, items 3-5 never. User 0 trained
    # on {0, 2}; by (1 + n_i)^1 its free items {1, 3, 4, 5} weigh 3, 1, 1, 1.
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 2, 0, 1, 0, 1])
    train = CSR.from_pairs(users, items, 3, 6)
    sampler = BPRSampler(train, batch_size=4, seed=0, popularity_power=1.0)
    draws = sampler.negatives(np.zeros(60_000, dtype=np.int64))
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == [1, 3, 4, 5]
    assert np.allclose(counts / 60_000, [0.5, 1 / 6, 1 / 6, 1 / 6], atol=0.01)
    # Power 0.5 flattens it: sqrt(3) : 1 : 1 : 1.
    half = BPRSampler(train, batch_size=4, seed=0, popularity_power=0.5).negatives(np.zeros(60_000, dtype=np.int64))
    assert abs((half == 1).mean() - 3 ** 0.5 / (3 ** 0.5 + 3)) < 0.01


def test_popularity_negatives_avoid_training_items_when_they_hold_most_of_the_mass() -> None:
    # User 0 trained on the 9 popular items of 10: almost every inverse-CDF draw is rejected,
    # so the exact fallback must still return the one free item.
    users = np.r_[np.zeros(9, np.int64), np.repeat(np.arange(1, 30), 9)]
    items = np.r_[np.arange(9), np.tile(np.arange(9), 29)]
    train = CSR.from_pairs(users, items, 30, 10)
    sampler = BPRSampler(train, batch_size=8, seed=2, popularity_power=1.0)
    assert set(sampler.negatives(np.zeros(500, dtype=np.int64)).tolist()) == {9}
    for batch in BPRSampler(_graph(edges=1200), batch_size=256, seed=1, popularity_power=0.5, candidates=3).epoch(0):
        for u, row in zip(batch.users, batch.negatives):
            assert not set(row.tolist()) & set(_graph(edges=1200).row(int(u)).tolist())


def test_popularity_power_zero_is_the_uniform_stream_and_negative_power_refused() -> None:
    train = _graph()
    a = [b.negatives for b in BPRSampler(train, batch_size=64, seed=3).epoch(0)]
    b = [b.negatives for b in BPRSampler(train, batch_size=64, seed=3, popularity_power=0.0).epoch(0)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = [b.negatives for b in BPRSampler(train, batch_size=64, seed=3, popularity_power=0.5).epoch(0)]
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    with pytest.raises(ValueError, match="popularity_power must be finite and >= 0"):
        BPRSampler(train, batch_size=8, popularity_power=-0.5)


def test_popularity_from_epoch_keeps_the_uniform_stream_before_it() -> None:
    train = _graph(edges=1200)
    uniform = BPRSampler(train, batch_size=64, seed=3, candidates=4, candidate_epochs=2)
    late = BPRSampler(train, batch_size=64, seed=3, candidates=4, candidate_epochs=2, popularity_power=1.0,
                      popularity_from_epoch=2)
    for epoch in (0, 1):  # the warm start's uniform pools, draw for draw
        assert all(np.array_equal(a.negatives, b.negatives) for a, b in zip(uniform.epoch(epoch), late.epoch(epoch)))
    # From epoch 2 the single negatives lean to popular items (higher mean training degree).
    degree = np.bincount(train.indices, minlength=train.num_cols)
    after_u = np.concatenate([b.negatives for e in (2, 3) for b in uniform.epoch(e)])
    after_p = np.concatenate([b.negatives for e in (2, 3) for b in late.epoch(e)])
    assert degree[after_p].mean() > degree[after_u].mean()
    with pytest.raises(ValueError, match="popularity_from_epoch must be >= 0"):
        BPRSampler(train, batch_size=8, popularity_from_epoch=-1)
