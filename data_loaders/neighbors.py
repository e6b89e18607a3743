"""Bounded L-hop neighbourhood sampling on the user-item graph, for mini-batch LightGCN.

The graph is the bipartite training graph in both directions as one CSR over "unified" node
ids: users are 0..U-1 and items U..U+I-1 (the layout of `graph.lightgcn_adjacency`). Each
entry carries LightGCN's symmetric normalisation ``a_vw = m_vw / sqrt(d_v d_w)`` of the FULL
graph (m: the entry's weight, 1 unless the CSR has data; d: weighted degrees, duplicates
counted with their multiplicity, exactly as `lightgcn_adjacency`).

Sampling (layer-wise, as GraphSAGE / DGL blocks): N_0 = the batch's distinct nodes; hop k
(k = 1..L, fanout f_k) draws for every node v of N_{k-1} min(f_k, n_v) of its n_v CSR entries
uniformly without replacement, and N_k = N_{k-1} followed by the new neighbours. Every kept
entry gets the weight ``a_vw * n_v / min(f_k, n_v)``, so one sampled layer is an unbiased
estimate of the full ``(A_hat x)_v``; the hops are drawn independently, so the L-layer
estimate is unbiased too. With f_k >= every degree nothing is dropped and the scale is 1:
the sampled propagation is exactly the full one for the batch nodes.

Propagating: h^0 on N_L (the only rows looked up), then layer l uses hop L-l+1's edges
(dst in N_{L-l}, src in N_{L-l+1}); since N_0 is a prefix of every N_k, the first |N_0| rows
of every h^l are the batch nodes' layer-l embeddings.

Everything is whole-array numpy (no Python loop over nodes or edges), and the per-step cost
is O(touched nodes x fanout), independent of the graph's size: the global -> local id map is
a persistent array reset only where it was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from data_loaders.graph import CSR

# Rows with degree in (fanout, _KEY_SORT_RATIO * fanout] are subsampled by sorting random keys
# over all their entries; longer rows by drawing positions with replacement and redrawing the
# duplicates (collisions are then rare, so the redraw loop ends after a few rounds).
_KEY_SORT_RATIO = 3
_SAMPLER_STREAM = 0x5A3D1E  # separates this generator from any other (seed, epoch, ...)-seeded stream


def sampling_rng(seed: int, epoch: int, step: int, rank: int, stream: int = 0) -> np.random.Generator:
    """The generator of one (run seed, epoch, step, rank): reproducible, independent across all four.

    `stream` separates several samplers of one step (the causal model draws the neighbourhood and,
    from stream 2, the users' content profiles).
    """
    return np.random.default_rng([_SAMPLER_STREAM + stream, seed, epoch, step, rank])


@dataclass
class NeighborGraph:
    """The user-item graph in both directions, one CSR over unified ids (users, then items)."""

    indptr: np.ndarray       # int64 (U + I + 1,)
    indices: np.ndarray      # int32 (or int64 past 2^31 nodes) (2 nnz,), unified neighbour ids
    data: np.ndarray | None  # float64 (2 nnz,) entry weights m_vw, None when all are 1
    inv_sqrt_degree: np.ndarray  # float64 (U + I,), 0 for isolated nodes
    num_users: int
    num_items: int

    @classmethod
    def from_csr(cls, train: CSR) -> "NeighborGraph":
        """Both directions of the users x items matrix `train` (its transpose by one stable argsort)."""
        num_users, num_items = train.num_rows, train.num_cols
        n = num_users + num_items
        index_dtype = np.int32 if n < 2**31 else np.int64
        users = train.row_ids()
        by_item = np.argsort(train.indices, kind="stable")  # users stay sorted within each item
        item_degree = np.bincount(train.indices, minlength=num_items)
        indptr = np.concatenate([train.indptr, train.nnz + np.cumsum(item_degree)]).astype(np.int64)
        indices = np.concatenate([train.indices + num_users, users[by_item]]).astype(index_dtype)
        weight = None if train.data is None else np.asarray(train.data, np.float64)
        data = None if weight is None else np.concatenate([weight, weight[by_item]])
        ones = np.ones(train.nnz) if weight is None else weight
        degree = np.concatenate([np.bincount(users, weights=ones, minlength=num_users),
                                 np.bincount(train.indices, weights=ones, minlength=num_items)])
        inv_sqrt = np.zeros(n)
        np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
        return cls(indptr=indptr, indices=indices, data=data, inv_sqrt_degree=inv_sqrt,
                   num_users=num_users, num_items=num_items)

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    def entry_counts(self, nodes: np.ndarray) -> np.ndarray:
        """CSR entries (neighbours, duplicates included) of each node."""
        return self.indptr[nodes + 1] - self.indptr[nodes]

    def max_degree(self) -> int:
        return int(np.diff(self.indptr).max(initial=0))

    def on_entries(self, per_edge: np.ndarray) -> np.ndarray:
        """`per_edge` (one value per entry of the users x items CSR this graph was built from, in its
        order) laid out on this graph's entries: the user rows hold the edges in that order, the item
        rows the same edges ordered by item (stably), as `from_csr` builds them."""
        nnz = int(self.indptr[self.num_users])
        if len(per_edge) != nnz:
            raise ValueError(f"NeighborGraph.on_entries: {len(per_edge)} values for {nnz} edges")
        by_item = np.argsort(self.indices[:nnz], kind="stable")
        return np.concatenate([per_edge, per_edge[by_item]])

    def normalised_weights(self, rows: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """a_vw = m_vw / sqrt(d_v d_w) of the CSR `entries`, `rows` being their row (v) ids."""
        w = self.inv_sqrt_degree[rows] * self.inv_sqrt_degree[self.indices[entries]]
        return w if self.data is None else w * self.data[entries]

    def row_chunks(self, max_entries: int) -> list[tuple[int, int]]:
        """Consecutive row ranges [start, stop) of at most ~`max_entries` entries each (>= 1 row)."""
        n, bounds, start = self.num_nodes, [], 0
        while start < n:
            stop = int(np.searchsorted(self.indptr, self.indptr[start] + max_entries, side="right")) - 1
            stop = min(n, max(stop, start + 1))
            bounds.append((start, stop))
            start = stop
        return bounds


@dataclass
class SampledSubgraph:
    """The L-hop computation graph of one batch, on compact local ids.

    `nodes[j]` is the unified id of local node j; N_k is the prefix `nodes[:sizes[k]]`, N_0
    the batch's distinct nodes. `hops[k] = (dst, src, weight)` are hop k+1's edges: dst local
    ids in [0, sizes[k]) (non-decreasing), src in [0, sizes[k+1]), float32 weights.
    `seed_local[j]` is the local id of the j-th node passed to `sample`. `entries[k]` are hop
    k+1's edges as entries of the sampled graph's CSR (what `reweighted` needs).
    """

    nodes: np.ndarray
    sizes: list[int]
    hops: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    seed_local: np.ndarray
    num_users: int
    entries: list[np.ndarray] = field(default_factory=list)

    def reweighted(self, factor: np.ndarray) -> "SampledSubgraph":
        """The same nodes and draws with every edge's weight times `factor[its CSR entry]`, the
        edges whose factor is 0 dropped.

        A weighted subgraph of the sampled graph (same edges, some removed, other weights) is
        then sampled for free: when factor = a'_e / a_e (a' its normalised weight, 0 off it), each
        hop stays an unbiased estimate of the subgraph's propagation, because the draw was
        uniform over ALL the node's entries and the scale n_v / min(f, n_v) is unchanged.
        """
        if len(self.entries) != len(self.hops):
            raise ValueError("SampledSubgraph.reweighted: the subgraph carries no CSR entries")
        hops, kept_entries = [], []
        for (dst, src, weight), entries in zip(self.hops, self.entries):
            w = weight * factor[entries]
            keep = w != 0
            hops.append((dst[keep], src[keep], w[keep]))
            kept_entries.append(entries[keep])
        return SampledSubgraph(nodes=self.nodes, sizes=self.sizes, hops=hops, seed_local=self.seed_local,
                               num_users=self.num_users, entries=kept_entries)

    def user_ids(self) -> np.ndarray:
        """Global user ids touched (in local order among users)."""
        return self.nodes[self.nodes < self.num_users]

    def item_ids(self) -> np.ndarray:
        """Global item ids touched (in local order among items)."""
        return self.nodes[self.nodes >= self.num_users] - self.num_users

    def type_order(self) -> np.ndarray:
        """Index of each local node in ``concat(user rows of user_ids(), item rows of item_ids())``."""
        is_user = self.nodes < self.num_users
        order = np.empty(len(self.nodes), dtype=np.int64)
        num_u = int(is_user.sum())
        order[is_user] = np.arange(num_u)
        order[~is_user] = num_u + np.arange(len(self.nodes) - num_u)
        return order


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """concat(arange(s, s + l) for s, l in zip(starts, lengths)), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _distinct_positions(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(R, k) positions, row r a uniform k-subset of [0, counts[r]) (sorted); needs counts > k.

    Draw with replacement, then redraw each surplus copy of a repeated position until the row
    has k distinct values. The procedure treats the counts[r] positions symmetrically and always
    ends with a k-subset, so that subset is uniform.
    """
    pos = np.floor(rng.random((len(counts), k)) * counts[:, None]).astype(np.int64)
    pos.sort(axis=1)
    active = np.arange(len(counts))
    while active.size:
        sub = pos[active]
        dup = np.zeros(sub.shape, dtype=bool)
        dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
        has = dup.any(axis=1)
        active, sub, dup = active[has], sub[has], dup[has]
        if not active.size:
            break
        r, c = np.nonzero(dup)
        sub[r, c] = np.floor(rng.random(len(r)) * counts[active[r]]).astype(np.int64)
        sub.sort(axis=1)
        pos[active] = sub
    return pos


class NeighborSampler:
    """Samples `SampledSubgraph`s of `graph` with `fanouts[k]` neighbours per node at hop k+1.

    Not thread-safe: it keeps two scratch arrays of one int64 per node (the global -> local id
    map, reset after every call, and a dedup buffer).
    """

    def __init__(self, graph: NeighborGraph, fanouts: Sequence[int]) -> None:
        fanouts = [int(f) for f in fanouts]
        if any(f < 1 for f in fanouts):
            raise ValueError(f"NeighborSampler: fanouts must be positive, got {fanouts}")
        self.graph, self.fanouts = graph, fanouts
        self._local = np.full(graph.num_nodes, -1, dtype=np.int64)
        self._scratch = np.zeros(graph.num_nodes, dtype=np.int64)

    def sample_hop(self, frontier: np.ndarray, fanout: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dst, entries, weight): for each frontier node (dst = its index in `frontier`, non-
        decreasing) min(fanout, n_v) of its CSR entries without replacement, with weights
        a_vw * n_v / min(fanout, n_v)."""
        g = self.graph
        starts = g.indptr[frontier]
        counts = g.indptr[frontier + 1] - starts
        kept = np.minimum(counts, fanout)
        slot_start = np.concatenate([[0], np.cumsum(kept)[:-1]]).astype(np.int64)
        entries = np.empty(int(kept.sum()), dtype=np.int64)

        whole = counts <= fanout  # every entry
        rows = np.flatnonzero(whole)
        entries[_ranges(slot_start[rows], kept[rows])] = _ranges(starts[rows], counts[rows])

        few = ~whole & (counts <= _KEY_SORT_RATIO * fanout)  # sort random keys over all entries
        rows = np.flatnonzero(few)
        if rows.size:
            row_of = np.repeat(np.arange(rows.size, dtype=np.int64), counts[rows])
            candidates = _ranges(starts[rows], counts[rows])
            order = np.argsort((row_of << 32) | rng.integers(0, 2**32, size=row_of.size, dtype=np.int64))
            first = np.concatenate([[0], np.cumsum(counts[rows])[:-1]])
            rank = np.arange(order.size) - np.repeat(first, counts[rows])
            keep = rank < fanout
            entries[slot_start[rows][row_of[keep]] + rank[keep]] = candidates[order[keep]]

        many = counts > _KEY_SORT_RATIO * fanout  # positions drawn, duplicates redrawn
        rows = np.flatnonzero(many)
        if rows.size:
            pos = _distinct_positions(counts[rows], fanout, rng)
            entries[(slot_start[rows][:, None] + np.arange(fanout)).ravel()] = (starts[rows][:, None] + pos).ravel()

        dst = np.repeat(np.arange(frontier.size, dtype=np.int64), kept)
        weight = g.normalised_weights(frontier[dst], entries)
        scale = counts / np.maximum(kept, 1)
        return dst, entries, weight * scale[dst]

    def sample(self, seeds: np.ndarray, rng: np.random.Generator) -> SampledSubgraph:
        """The computation graph of the unified node ids `seeds` (duplicates allowed)."""
        seeds = np.asarray(seeds, dtype=np.int64)
        if seeds.size == 0:
            raise ValueError("NeighborSampler.sample: no seed nodes")
        if seeds.min() < 0 or seeds.max() >= self.graph.num_nodes:
            raise ValueError(f"NeighborSampler.sample: seeds outside [0, {self.graph.num_nodes})")
        nodes, seed_local = np.unique(seeds, return_inverse=True)
        local, scratch = self._local, self._scratch
        local[nodes] = np.arange(nodes.size)
        sizes, hops, hop_entries = [int(nodes.size)], [], []
        try:
            for fanout in self.fanouts:
                dst, entries, weight = self.sample_hop(nodes, fanout, rng)
                src_global = self.graph.indices[entries].astype(np.int64)
                new = src_global[local[src_global] < 0]
                # One representative per distinct new node, O(len(new)): whichever occurrence's
                # position lands in scratch[v] is the only one that reads its own position back.
                scratch[new] = np.arange(new.size)
                new = np.sort(new[scratch[new] == np.arange(new.size)])
                local[new] = np.arange(nodes.size, nodes.size + new.size)
                nodes = np.concatenate([nodes, new])
                sizes.append(int(nodes.size))
                hops.append((dst, local[src_global], weight.astype(np.float32)))
                hop_entries.append(entries)
        finally:
            local[nodes] = -1
        return SampledSubgraph(nodes=nodes, sizes=sizes, hops=hops, seed_local=seed_local.reshape(-1),
                               num_users=self.graph.num_users, entries=hop_entries)
