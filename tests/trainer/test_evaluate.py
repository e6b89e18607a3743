"""Tests for trainer/evaluate.py: brute-force agreement, hand-computed values, masking, ties,
exact 2-process reduce, and a bounded-memory smoke run at 200k items."""

from __future__ import annotations

import math
import resource

import numpy as np
import pytest
import torch

from data_loaders.graph import CSR
from trainer.evaluate import (
    MetricSums,
    evaluate,
    metric_keys,
    metrics_table,
    ranking_metrics,
    topk_items,
)
from spawn_ranks import spawn_ranks


def csr_from_sets(sets: list[set[int]], num_items: int) -> CSR:
    rows = [u for u, s in enumerate(sets) for _ in s]
    cols = [i for s in sets for i in sorted(s)]
    return CSR.from_pairs(np.array(rows, np.int64), np.array(cols, np.int64), len(sets), num_items)


def random_problem(num_users: int, num_items: int, dim: int, seed: int):
    """Embeddings, a train mask (~25% density, so some users have < 50 eligible items), a valid
    mask and test targets disjoint from both; some users get no test item."""
    rng = np.random.default_rng(seed)
    user_emb = torch.from_numpy(rng.standard_normal((num_users, dim), dtype=np.float32))
    item_emb = torch.from_numpy(rng.standard_normal((num_items, dim), dtype=np.float32))
    train, valid, test = [], [], []
    for _ in range(num_users):
        perm = rng.permutation(num_items)
        n_train, n_valid, n_test = rng.integers(0, num_items // 2), rng.integers(0, 3), rng.integers(0, 13)
        train.append(set(perm[:n_train].tolist()))
        valid.append(set(perm[n_train : n_train + n_valid].tolist()))
        test.append(set(perm[n_train + n_valid : n_train + n_valid + n_test].tolist()))
    return (user_emb, item_emb, *(csr_from_sets(s, num_items) for s in (train, valid, test)), test)


def brute_force(user_emb, item_emb, masks: list[CSR], targets: list[set[int]], ks) -> dict[str, float]:
    """Dense scores, per-user loop, metric definitions written out directly."""
    scores = user_emb.double().numpy() @ item_emb.double().numpy().T
    sums = {key: 0.0 for key in metric_keys(ks)}
    count = 0
    for u, truth in enumerate(targets):
        if not truth:
            continue
        count += 1
        s = scores[u].copy()
        for m in masks:
            s[m.row(u)] = -np.inf
        ranking = [i for i in np.lexsort((np.arange(len(s)), -s)) if s[i] > -np.inf]
        for k in ks:
            hit_pos = [p for p, i in enumerate(ranking[:k]) if i in truth]
            dcg = sum(1 / math.log2(p + 2) for p in hit_pos)
            idcg = sum(1 / math.log2(p + 2) for p in range(min(len(truth), k)))
            sums[f"recall@{k}"] += len(hit_pos) / len(truth)
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"precision@{k}"] += len(hit_pos) / k
            sums[f"hit@{k}"] += float(bool(hit_pos))
    return {key: v / count for key, v in sums.items()} | {"num_users": count}


@pytest.fixture(scope="module")
def problem():
    return random_problem(num_users=40, num_items=60, dim=8, seed=0)


@pytest.mark.parametrize("user_chunk", [7, 8, 40, 64])  # not dividing, dividing, equal, larger
@pytest.mark.parametrize("item_chunk", [7, 20, 60, 128])  # < k, dividing, equal, larger
def test_matches_brute_force(problem, user_chunk, item_chunk):
    user_emb, item_emb, train, valid, test, test_sets = problem
    ks = (10, 20, 50)
    for masks in ([train], [train, valid]):
        got = evaluate(user_emb, item_emb, test, masks, ks=ks, user_chunk=user_chunk, item_chunk=item_chunk)
        want = brute_force(user_emb, item_emb, masks, test_sets, ks)
        assert got.num_users == want["num_users"] == sum(1 for s in test_sets if s)
        assert got.metrics.keys() == want.keys()
        for key in want:
            assert got.metrics[key] == pytest.approx(want[key], abs=1e-6), key


@pytest.mark.parametrize(("user_chunk", "item_chunk"), [(1, 1), (4, 3), (7, 16), (40, 60)])
def test_matches_brute_force_with_many_ties(user_chunk, item_chunk):
    # Embeddings in {-1, 0, 1}: scores are small integers, so most rankings hinge on the
    # lower-id tie-break, inside chunks, across chunk merges and at the top-k boundary.
    user_emb, item_emb, train, valid, test, test_sets = random_problem(40, 60, 3, seed=3)
    user_emb, item_emb = user_emb.round().clamp(-1, 1), item_emb.round().clamp(-1, 1)
    ks = (1, 5, 10, 50)
    got = evaluate(user_emb, item_emb, test, [train, valid], ks=ks, user_chunk=user_chunk, item_chunk=item_chunk)
    want = brute_force(user_emb, item_emb, [train, valid], test_sets, ks)
    for key in want:
        assert got.metrics[key] == pytest.approx(want[key], abs=1e-12), key


def test_hand_computed():
    # 5 items with 1-d embeddings 5,4,3,2,1: a user with embedding +1 ranks items 0,1,2,3,4,
    # a user with -1 ranks them 4,3,2,1,0. ks = (1, 3, 10); K=10 exceeds the 5 items.
    item_emb = torch.tensor([[5.0], [4.0], [3.0], [2.0], [1.0]])
    user_emb = torch.tensor([[1.0], [1.0], [1.0], [-1.0]])
    train = csr_from_sets([{0}, set(), {1}, set()], 5)
    valid = csr_from_sets([set(), set(), {2}, set()], 5)
    test = csr_from_sets([{1, 4}, set(), {2}, {4}], 5)
    # u0: item 0 masked -> ranking 1,2,3,4; held-out {1,4}: hits at positions 0 and 3.
    #   @1: recall 1/2, ndcg 1/1 (ideal over min(2,1)=1 slot), precision 1, hit 1
    #   @3: recall 1/2, ndcg 1/(1 + 1/log2 3) = 0.6131, precision 1/3, hit 1
    #   @10: recall 2/2, ndcg (1 + 1/log2 5)/(1 + 1/log2 3) = 0.8772, precision 2/10, hit 1
    # u1: no held-out item -> not counted.
    # u2: held-out item 2 is masked (valid mask) -> never recommended: all zeros, still counted.
    # u3: ranking 4,3,2,1,0; held-out {4} at position 0: recall/ndcg/hit 1, precision 1/K.
    g3 = 1 + 1 / math.log2(3)
    want = {
        "recall@1": (1 / 2 + 0 + 1) / 3, "recall@3": (1 / 2 + 0 + 1) / 3, "recall@10": (1 + 0 + 1) / 3,
        "ndcg@1": (1 + 0 + 1) / 3, "ndcg@3": (1 / g3 + 0 + 1) / 3,
        "ndcg@10": ((1 + 1 / math.log2(5)) / g3 + 0 + 1) / 3,
        "precision@1": (1 + 0 + 1) / 3, "precision@3": (1 / 3 + 0 + 1 / 3) / 3,
        "precision@10": (2 / 10 + 0 + 1 / 10) / 3,
        "hit@1": 2 / 3, "hit@3": 2 / 3, "hit@10": 2 / 3,
        "num_users": 3,
    }  # fmt: skip
    res = evaluate(user_emb, item_emb, test, [train, valid], ks=(1, 3, 10), item_chunk=2, per_user=True)
    assert res.metrics.keys() == want.keys()
    for key, value in want.items():
        assert res.metrics[key] == pytest.approx(value, abs=1e-12), key
    assert res.users.tolist() == [0, 2, 3]
    assert res.per_user["recall@10"].tolist() == [1.0, 0.0, 1.0]
    assert res.per_user["ndcg@3"] == pytest.approx([1 / g3, 0.0, 1.0])

    _, top = topk_items(user_emb, item_emb, np.array([0, 3]), 7, [train, valid], item_chunk=2)
    assert top.tolist() == [[1, 2, 3, 4, -1, -1, -1], [4, 3, 2, 1, 0, -1, -1]]
    per_user = ranking_metrics(top, test, np.array([0, 3]), ks=(1, 3))
    assert list(per_user) == metric_keys((1, 3))
    assert per_user["precision@3"].tolist() == pytest.approx([1 / 3, 1 / 3])

    # A duplicated held-out pair (the CSR keeps duplicates) is one item: recall@1 is 1/1, not 1/2.
    dup = CSR.from_pairs(np.array([3, 3]), np.array([4, 4]), 4, 5)
    assert ranking_metrics(top, dup, np.array([0, 3]), ks=(1,))["recall@1"].tolist() == [0.0, 1.0]


def test_masked_best_item_never_recommended():
    rng = np.random.default_rng(1)
    user_emb = torch.from_numpy(rng.standard_normal((30, 6), dtype=np.float32))
    item_emb = torch.from_numpy(rng.standard_normal((50, 6), dtype=np.float32))
    best = (user_emb @ item_emb.T).argmax(1).numpy()
    train = CSR.from_pairs(np.arange(30), best, 30, 50)
    for item_chunk in (4, 50):
        _, top = topk_items(user_emb, item_emb, np.arange(30), 20, [train], item_chunk=item_chunk)
        assert not (top == torch.from_numpy(best)[:, None]).any()
        assert (top >= 0).all()


@pytest.mark.parametrize("item_chunk", [3, 4, 100])
def test_ties_break_to_lower_item_id(item_chunk):
    # All scores equal: the top-k is the lowest eligible ids, whatever the chunking.
    item_emb = torch.zeros(10, 4)
    user_emb = torch.ones(2, 4)
    train = csr_from_sets([{0, 4}, {9}], 10)
    _, top = topk_items(user_emb, item_emb, np.array([0, 1]), 5, [train], item_chunk=item_chunk)
    assert top.tolist() == [[1, 2, 3, 5, 6], [0, 1, 2, 3, 4]]
    # Partial ties: items 7 and 2 share the best score; 2 comes first.
    item_emb = torch.tensor([[0.0], [1.0], [3.0], [1.0], [0.0], [2.0], [1.0], [3.0], [1.0], [0.0]])
    scores, top = topk_items(torch.ones(1, 1), item_emb, np.array([0]), 5, item_chunk=item_chunk)
    assert top.tolist() == [[2, 7, 5, 1, 3]]
    assert scores.tolist() == [[3.0, 3.0, 2.0, 1.0, 1.0]]


def test_users_subset_and_per_user_alignment(problem):
    user_emb, item_emb, train, _, test, test_sets = problem
    subset = np.array([5, 3, 17, 30, 31])
    res = evaluate(user_emb, item_emb, test, [train], users=subset, per_user=True, user_chunk=2)
    kept = [u for u in subset if test_sets[u]]
    assert res.users.tolist() == kept and res.num_users == len(kept)
    for key, values in res.per_user.items():
        assert len(values) == len(kept)
        assert values.mean() == pytest.approx(res.metrics[key], abs=1e-12)


def test_metric_sums_roundtrip_and_add():
    a = MetricSums({"recall@10": 1.5, "ndcg@10": 0.5}, 3)
    b = MetricSums.from_tensor(list(a.sums), a.to_tensor())
    assert b == a
    assert (a + b).means() == {"recall@10": 0.5, "ndcg@10": 1 / 6, "num_users": 6}
    assert math.isnan(MetricSums({"recall@10": 0.0}, 0).means()["recall@10"])


def test_metrics_table():
    metrics = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@20": 0.05, "num_users": 7}
    assert metrics_table(metrics).splitlines() == [
        "| metric | @10 | @20 |",
        "|---|---|---|",
        "| recall | 0.1000 | 0.2000 |",
        "| ndcg |  | 0.0500 |",
    ]
    assert metrics_table(metrics, ks=(20,), digits=2).splitlines()[2] == "| recall | 0.20 |"


def test_rejects_bad_inputs(problem):
    user_emb, item_emb, train, _, test, _ = problem
    with pytest.raises(ValueError, match="exclude"):
        evaluate(user_emb, item_emb[:-1], CSR.from_pairs([], [], 40, 59), [train])
    bad = user_emb.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate(bad, item_emb, test, [train])


def _distributed_worker(rank: int, world_size: int, init_file: str, out_dir: str, problem) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        user_emb, item_emb, train, valid, test, _ = problem
        full = evaluate(user_emb, item_emb, test, [train, valid], user_chunk=6, item_chunk=16, per_user=True)
        # A single user: rank 1 has nothing to evaluate but must still join the all_reduce.
        single = evaluate(user_emb, item_emb, test, [train], users=np.array([int(full.users[0])]))
        torch.save({"full": full, "single": single}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_distributed_reduce_is_exact(problem, tmp_path):
    spawn_ranks(_distributed_worker, (2, str(tmp_path / "init"), str(tmp_path), problem), init_file=str(tmp_path / "init"))
    user_emb, item_emb, train, valid, test, _ = problem
    ref = evaluate(user_emb, item_emb, test, [train, valid])
    ref_single = evaluate(user_emb, item_emb, test, [train], users=ref.users[:1])
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for res in results:
        assert res["full"].num_users == ref.num_users
        for key, value in ref.metrics.items():
            assert res["full"].metrics[key] == pytest.approx(value, abs=1e-9), key
            assert res["single"].metrics[key] == pytest.approx(ref_single.metrics[key], abs=1e-9), key
    # Each rank kept its own share of per-user values: together they are the whole population.
    assert sorted(np.concatenate([r["full"].users for r in results]).tolist()) == ref.users.tolist()
    assert results[1]["single"].users.size == 0


def test_smoke_200k_items_bounded_memory():
    # A dense 1000 x 200,000 float32 score matrix would be 800 MB; with 256 x 16,384 chunks the
    # working set is ~16 MB of scores, so peak RSS should rise far less than that.
    rng = np.random.default_rng(2)
    num_users, num_items = 1000, 200_000
    user_emb = torch.from_numpy(rng.standard_normal((num_users, 32), dtype=np.float32))
    item_emb = torch.from_numpy(rng.standard_normal((num_items, 32), dtype=np.float32))
    train = CSR.from_pairs(np.repeat(np.arange(num_users), 20), rng.integers(0, num_items, 20 * num_users),
                           num_users, num_items)  # fmt: skip
    test = CSR.from_pairs(np.arange(num_users), rng.integers(0, num_items, num_users), num_users, num_items)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    res = evaluate(user_emb, item_emb, test, [train], user_chunk=256, item_chunk=1 << 14)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert res.num_users == num_users
    print(f"peak RSS grew by {grown_mb:.0f} MB")
    assert grown_mb < 400
    # Spot-check a few users' top-50 against a dense ranking of just their rows.
    users = np.array([0, 499, 999])
    _, top = topk_items(user_emb, item_emb, users, 50, [train], item_chunk=1 << 14)
    dense = user_emb[users] @ item_emb.T
    for j, u in enumerate(users):
        dense[j, train.row(u)] = float("-inf")
    assert torch.equal(top, torch.topk(dense, 50, dim=1).indices)


def test_progress_bar_counts_user_blocks_and_changes_nothing(problem, capsys):
    user_emb, item_emb, train, _, test, _ = problem
    quiet = evaluate(user_emb, item_emb, test, [train], user_chunk=8)
    shown = evaluate(user_emb, item_emb, test, [train], user_chunk=8, progress="test")
    assert shown.metrics == quiet.metrics
    err = capsys.readouterr().err
    blocks = -(-quiet.num_users // 8)
    assert "evaluating test" in err and f"0/{blocks} " in err  # leave=False clears the finished bar
