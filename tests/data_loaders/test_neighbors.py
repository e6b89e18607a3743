"""Neighbour sampling: the graph's normalisation, exactness at full fanout, bounded and unbiased
subsampling, reproducibility.

The statistical tests use fixed seeds and bounds of 5 standard errors per entry (max over a
few hundred entries): a uniform, correctly rescaled sampler passes them with overwhelming
probability, while a sampler that favours early CSR positions, forgets the n/k rescaling or
draws with replacement misses them by far more (checked by hand when writing them).
"""

from __future__ import annotations

import numpy as np
import pytest

from data_loaders.graph import CSR, lightgcn_adjacency
from data_loaders.neighbors import NeighborGraph, NeighborSampler, sampling_rng

U, I = 30, 20


def _skewed_graph(seed: int = 0, weighted: bool = False) -> CSR:
    """Degrees from 0 to ~40, with repeated pairs: rows in all three sampling regimes at fanout 4."""
    rng = np.random.default_rng(seed)
    n = 260
    users = np.minimum((rng.pareto(1.0, n) * 3).astype(np.int64), U - 2)  # user U-1: isolated
    items = np.minimum((rng.pareto(0.8, n) * 2).astype(np.int64), I - 1)
    data = rng.uniform(0.5, 2.0, n) if weighted else None
    return CSR.from_pairs(users, items, U, I, data=data)


def _dense(train: CSR) -> np.ndarray:
    return lightgcn_adjacency(train, dtype=__import__("torch").float64).to_dense().numpy()


def _propagate(sub, x: np.ndarray) -> list[np.ndarray]:
    """Per-layer embeddings h^0..h^L of the seeds N_0 (numpy reference of the model's propagation)."""
    h = x[sub.nodes]
    layers = [h[:sub.sizes[0]]]
    for hop in reversed(range(len(sub.hops))):
        dst, src, weight = sub.hops[hop]
        out = np.zeros((sub.sizes[hop],) + x.shape[1:])
        np.add.at(out, dst, weight.astype(np.float64)[:, None] * h[src])
        h = out
        layers.append(h[:sub.sizes[0]])
    return layers


@pytest.mark.parametrize("weighted", [False, True])
def test_graph_weights_are_the_lightgcn_adjacency(weighted: bool) -> None:
    train = _skewed_graph(weighted=weighted)
    g = NeighborGraph.from_csr(train)
    rebuilt = np.zeros((U + I, U + I))
    rows = np.repeat(np.arange(U + I), np.diff(g.indptr))
    np.add.at(rebuilt, (rows, g.indices), g.normalised_weights(rows, np.arange(len(rows))))
    np.testing.assert_allclose(rebuilt, _dense(train), rtol=1e-6, atol=1e-12)
    assert g.max_degree() == np.diff(g.indptr).max() and g.entry_counts(np.array([U - 1]))[0] == 0
    chunks = g.row_chunks(50)
    assert chunks[0][0] == 0 and chunks[-1][1] == U + I
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert all(g.indptr[stop] - g.indptr[start] <= 50 or stop == start + 1 for start, stop in chunks)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_fanout_at_max_degree_is_the_full_propagation(weighted: bool, num_layers: int) -> None:
    train = _skewed_graph(weighted=weighted)
    g = NeighborGraph.from_csr(train)
    a = _dense(train)
    sampler = NeighborSampler(g, [g.max_degree()] * num_layers)
    seeds = np.array([0, 3, 3, U - 1, U + 0, U + 5, U + 19, 7])  # repeats and an isolated user
    sub = sampler.sample(seeds, sampling_rng(0, 0, 0, 0))
    np.testing.assert_array_equal(sub.nodes[sub.seed_local], seeds)
    assert sub.sizes[0] == len(np.unique(seeds)) and sub.sizes == sorted(sub.sizes)
    assert len(np.unique(sub.nodes)) == len(sub.nodes)
    for k, (dst, src, weight) in enumerate(sub.hops):  # every neighbour, weight a_vw
        block = np.zeros((sub.sizes[k], sub.sizes[k + 1]))
        np.add.at(block, (dst, src), weight)
        np.testing.assert_allclose(block, a[np.ix_(sub.nodes[:sub.sizes[k]], sub.nodes[:sub.sizes[k + 1]])],
                                   rtol=1e-6, atol=1e-7)
        reached = a[sub.nodes[:sub.sizes[k]]].any(axis=0)
        assert set(np.flatnonzero(reached)) <= set(sub.nodes[:sub.sizes[k + 1]])
    x = np.random.default_rng(1).normal(size=(U + I, 3))
    want = [x]
    for _ in range(num_layers):
        want.append(a @ want[-1])
    got = _propagate(sub, x)
    for layer in range(num_layers + 1):
        np.testing.assert_allclose(got[layer], want[layer][sub.nodes[:sub.sizes[0]]], rtol=1e-5, atol=1e-7)


def test_small_fanout_bounds_each_node_and_samples_distinct_entries() -> None:
    g = NeighborGraph.from_csr(_skewed_graph())
    fanout = 4
    frontier = np.arange(U + I)
    counts = g.entry_counts(frontier)
    assert (counts <= fanout).any() and ((counts > fanout) & (counts <= 3 * fanout)).any() and (counts > 3 * fanout).any()
    dst, entries, weight = NeighborSampler(g, [fanout]).sample_hop(frontier, fanout, np.random.default_rng(0))
    assert np.all(np.diff(dst) >= 0)
    np.testing.assert_array_equal(np.bincount(dst, minlength=len(frontier)), np.minimum(counts, fanout))
    assert np.all((entries >= g.indptr[frontier[dst]]) & (entries < g.indptr[frontier[dst] + 1]))  # own row
    assert len(np.unique(entries)) == len(entries)  # without replacement
    scale = counts[dst] / np.minimum(counts[dst], fanout)
    np.testing.assert_allclose(weight, g.normalised_weights(frontier[dst], entries) * scale)


def test_every_entry_is_kept_with_probability_fanout_over_degree() -> None:
    g = NeighborGraph.from_csr(_skewed_graph())
    fanout, draws = 4, 3000
    sampler = NeighborSampler(g, [fanout])
    frontier = np.arange(U + I)
    counts = g.entry_counts(frontier)
    hits = np.zeros(len(g.indices))
    rng = np.random.default_rng(0)
    for _ in range(draws):
        _, entries, _ = sampler.sample_hop(frontier, fanout, rng)
        hits[entries] += 1
    rows = np.repeat(frontier, counts)
    p = np.minimum(1.0, fanout / counts[rows])
    z = (hits - draws * p) / np.sqrt(np.maximum(draws * p * (1 - p), 1e-12))
    assert np.all(hits[p == 1] == draws)
    assert np.abs(z[p < 1]).max() < 5, np.abs(z).max()


@pytest.mark.parametrize("fanouts", [[2, 3], [4, 4, 4]])
def test_sampled_propagation_is_unbiased(fanouts: list[int]) -> None:
    train = _skewed_graph(seed=3, weighted=True)
    g = NeighborGraph.from_csr(train)
    a = _dense(train)
    x = np.random.default_rng(2).normal(size=(U + I, 2))
    want = [x]
    for _ in fanouts:
        want.append(a @ want[-1])
    seeds = np.arange(U + I)  # every node: N_0 is sorted, so row j is node j
    sampler = NeighborSampler(g, fanouts)
    draws = 1500
    samples = np.stack([_propagate(sampler.sample(seeds, sampling_rng(0, 0, step, 0)), x)[-1]
                        for step in range(draws)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(draws)
    err = np.abs(mean - want[-1])
    assert np.all(err <= 5 * se + 1e-6), (err / np.maximum(se, 1e-12)).max()  # 1e-6: float32 weights
    assert (se > 0).any()  # some rows really were subsampled


@pytest.mark.parametrize("fanouts", [[2, 3], [4, 4]])
def test_reweighted_sample_is_an_unbiased_sample_of_the_weighted_subgraph(fanouts: list[int]) -> None:
    # A subgraph of the training graph: about a third of the edges dropped, the rest reweighted.
    train = _skewed_graph(seed=3)
    rng = np.random.default_rng(4)
    sub_weight = np.where(rng.random(train.nnz) < 0.35, 0.0, rng.uniform(0.2, 1.0, train.nnz))
    keep = sub_weight > 0
    sub_csr = CSR.from_pairs(train.row_ids()[keep], train.indices[keep], U, I, data=sub_weight[keep])
    g = NeighborGraph.from_csr(train)
    # factor per entry of g: a'_e / a_e.
    a_sub = _dense(sub_csr)
    users, items = train.row_ids(), train.indices + U
    # Per entry (repeated pairs are separate entries): w_e / sqrt(d'_u d'_i), d' the weighted degrees.
    degree = np.bincount(np.concatenate([users, items]), weights=np.concatenate([sub_weight, sub_weight]),
                         minlength=U + I)
    inv = np.divide(1.0, np.sqrt(degree), out=np.zeros(U + I), where=degree > 0)
    per_edge = sub_weight * inv[users] * inv[items] / g.normalised_weights(users, np.arange(train.nnz))
    factor = g.on_entries(per_edge).astype(np.float32)
    x = np.random.default_rng(2).normal(size=(U + I, 2))
    want = x
    for _ in fanouts:
        want = a_sub @ want
    sampler = NeighborSampler(g, fanouts)
    # At full fanout the reweighted sample is exactly the subgraph's propagation.
    exact = NeighborSampler(g, [g.max_degree()] * len(fanouts)).sample(np.arange(U + I), sampling_rng(0, 0, 0, 0))
    np.testing.assert_allclose(_propagate(exact.reweighted(factor), x)[-1], want, rtol=1e-5, atol=1e-6)
    draws = 1500
    samples = np.stack([_propagate(sampler.sample(np.arange(U + I), sampling_rng(0, 0, step, 0)).reweighted(factor),
                                   x)[-1] for step in range(draws)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(draws)
    err = np.abs(mean - want)
    assert np.all(err <= 5 * se + 1e-6), (err / np.maximum(se, 1e-12)).max()
    assert (se > 0).any()
    # Dropped edges are gone from the hops, not kept with weight 0.
    hops = sampler.sample(np.arange(U + I), sampling_rng(0, 0, 0, 0)).reweighted(factor).hops
    assert all(np.all(w != 0) for _, _, w in hops)


def test_sampling_is_reproducible_by_seed_epoch_step_rank() -> None:
    g = NeighborGraph.from_csr(_skewed_graph())
    seeds = np.array([0, 1, 2, U + 1, U + 2, U + 3])
    first = NeighborSampler(g, [3, 3]).sample(seeds, sampling_rng(7, 2, 5, 1))
    reused = NeighborSampler(g, [3, 3])
    reused.sample(np.array([4, 5, U + 7]), sampling_rng(0, 0, 0, 0))  # scratch state must not leak
    again = reused.sample(seeds, sampling_rng(7, 2, 5, 1))
    np.testing.assert_array_equal(first.nodes, again.nodes)
    for (d1, s1, w1), (d2, s2, w2) in zip(first.hops, again.hops):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(w1, w2)
    signatures = set()
    for key in [(7, 2, 5, 1), (8, 2, 5, 1), (7, 3, 5, 1), (7, 2, 6, 1), (7, 2, 5, 0)]:
        sub = reused.sample(seeds, sampling_rng(*key))
        signatures.add(tuple(sub.nodes[sub.hops[1][1]]) + tuple(sub.nodes[sub.hops[0][1]]))
    assert len(signatures) == 5


def test_ids_per_type_and_type_order() -> None:
    g = NeighborGraph.from_csr(_skewed_graph())
    sub = NeighborSampler(g, [2]).sample(np.array([U + 4, 0, 5]), sampling_rng(0, 0, 0, 0))
    stacked = np.concatenate([sub.user_ids(), U + sub.item_ids()])
    np.testing.assert_array_equal(stacked[sub.type_order()], sub.nodes)
    assert sub.user_ids().max() < U and sub.item_ids().min() >= 0


def test_bad_input_is_refused() -> None:
    g = NeighborGraph.from_csr(_skewed_graph())
    with pytest.raises(ValueError, match="positive"):
        NeighborSampler(g, [3, 0])
    with pytest.raises(ValueError, match="outside"):
        NeighborSampler(g, [3]).sample(np.array([U + I]), sampling_rng(0, 0, 0, 0))
    with pytest.raises(ValueError, match="no seed"):
        NeighborSampler(g, [3]).sample(np.array([], dtype=np.int64), sampling_rng(0, 0, 0, 0))
