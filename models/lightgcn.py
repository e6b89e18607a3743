"""LightGCN (He et al. 2020): ID embeddings averaged over propagation layers on the graph.

Two training modes (`LightGCNConfig.graph_mode`), one set of parameters and one loss:

* ``full`` (MMRec's): every step looks up all user and item rows through the (possibly
  sharded) `IdTables`, propagates them with the normalised adjacency
  ``A_hat = D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` and scores the batch with the layer mean
  ``E = mean(E_0, A_hat E_0, ..., A_hat^L E_0)``. Each rank propagates the full graph and
  computes the loss of its own share of the batch.
* ``sampled`` (mini-batch): every step samples the batch's L-hop neighbourhood with
  `fanouts[k]` neighbours per node at hop k+1 (data_loaders/neighbors.py), looks up only the
  ids it touches (one KeyedJaggedTensor through the same tables) and propagates on that
  subgraph with the full graph's normalisation, rescaled where neighbours were dropped so
  each layer is unbiased. With every fanout >= the maximum degree the subgraph holds every
  neighbour and the loss and gradients equal the full mode's (tests/models/test_lightgcn.py).
  Evaluation (`final_embeddings`) still propagates the full graph, in row chunks of the
  neighbour CSR, so the whole COO adjacency is never held.

Either way the tables' gradients are averaged over ranks by TorchRec (models/embeddings.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from data_loaders.graph import CSR, lightgcn_adjacency
from data_loaders.neighbors import NeighborGraph, NeighborSampler, SampledSubgraph, sampling_rng
from models.bpr import Ranking, RegType, bpr_loss_terms, check_negatives, hardest_negatives, triple_rows
from models.embeddings import IdTables
from models.sparse_ops import SparseOperator


def _doc(text: str, default: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class LightGCNConfig:
    graph_mode: Literal["full", "sampled"] = _doc(
        "`full`: every step propagates the whole graph (all rows looked up; MMRec's LightGCN). `sampled`: every "
        "step samples the batch's L-hop neighbourhood (`fanouts`), looks up only the ids it touches and propagates "
        "on it with the full graph's normalisation, rescaled to stay unbiased (docs/DISTRIBUTED.md). Evaluation "
        "propagates the full graph either way.", "full")
    fanouts: list = _doc(
        "Neighbours sampled per node at each hop with `graph_mode: sampled`, nearest hop first (the batch nodes' "
        "own neighbours); one positive entry per `model.num_layers`. A fanout >= the maximum degree keeps every "
        "neighbour (exactly the full propagation).", [10, 10])
    eval_chunk_edges: int = _doc(
        "With `graph_mode: sampled`: graph entries per sparse block when evaluation propagates the full graph "
        "(memory ~ 16 bytes x this, on top of the embeddings).", 4_000_000)
    edge_keep: float = _doc(
        "Edge dropout (`graph_mode: full`): each epoch, training propagates on a random `edge_keep` share of the "
        "training edges, normalised by the kept degrees (SGL's edge dropout, redrawn per epoch from the run's seed, "
        "the same on every rank); evaluation and the per-epoch refreshes use the full graph. 1 = off. Why: the "
        "models here fit the training pairs within tens of epochs and then stall; dropping edges is the "
        "regulariser graph recommenders use against that.", 1.0)
    norm_power: float = _doc(
        "Degree normalisation of the propagation (`graph_mode: full`): D^-r A D^-(1-r) (r-AdjNorm, Zhao et al. "
        "SIGIR 2022); 0.5 is LightGCN's symmetric D^-1/2 A D^-1/2. Why another r: with r > 0.5 what a node "
        "receives is divided more by its own degree, so popular items' rows grow less with their popularity "
        "(the trade between head and tail accuracy that paper measures).", 0.5)


_SPARSE_KW = {"check_invariants": False}


def _csr_matrix(dst: np.ndarray, src: np.ndarray, weight: np.ndarray, shape: tuple[int, int],
                device: torch.device) -> torch.Tensor:
    """A torch sparse CSR matrix from edges sorted by `dst` (the row)."""
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst, minlength=shape[0]), out=crow[1:])
    with warnings.catch_warnings():  # "CSR support is in beta": CSR @ dense and its backward are all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(np.asarray(src, np.int64)),
                                       torch.from_numpy(np.asarray(weight, np.float32)), shape, device=device,
                                       **_SPARSE_KW)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def graph_mm(g: NeighborGraph, x: torch.Tensor, max_entries: int) -> torch.Tensor:
    """A_hat @ x for the normalised adjacency of `g`, one CSR block of rows (<= ~max_entries
    entries) at a time, so the whole COO adjacency is never held."""
    blocks = []
    for start, stop in g.row_chunks(max_entries):
        lo, hi = int(g.indptr[start]), int(g.indptr[stop])
        entries = np.arange(lo, hi, dtype=np.int64)
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(g.indptr[start:stop + 1]))
        block = _csr_matrix(rows - start, g.indices[lo:hi], g.normalised_weights(rows, entries),
                            (stop - start, g.num_nodes), x.device)
        blocks.append(torch.sparse.mm(block, x))
    return torch.cat(blocks)


def subgraph_layer_mean(sub: SampledSubgraph, h: torch.Tensor) -> torch.Tensor:
    """LightGCN's layer mean of the batch nodes N_0 ([|N_0|, d]) from the layer-0 rows `h` of every
    node of `sub` (its local order), propagated over its len(sub.hops) sampled hops."""
    n0, layers = sub.sizes[0], len(sub.hops)
    total = h[:n0]
    # Layer l uses hop L-l+1: dst in N_{L-l}, src in N_{L-l+1} (where h^{l-1} lives).
    for hop in reversed(range(layers)):
        dst, src, weight = sub.hops[hop]
        matrix = _csr_matrix(dst, src, weight, (sub.sizes[hop], sub.sizes[hop + 1]), h.device)
        h = torch.sparse.mm(matrix, h)
        total = total + h[:n0]
    return total / (layers + 1)


def lookup_nodes(tables: IdTables, nodes: np.ndarray, num_users: int) -> torch.Tensor:
    """Layer-0 rows of unified node ids `nodes` (users < num_users, then items), in that order:
    one lookup (one KJT) through the possibly sharded tables.

    Row-wise sharded tables need the same lookup size on every rank (models/embeddings.py),
    and sampled node sets differ by rank, so with more than one rank the id lists are padded
    to the largest size over ranks (one small all-reduce; the padding rows are sliced off
    and get no gradient). Table-wise, column-wise and data-parallel tables would not need
    it; it is done regardless of the plan, which the model does not know.
    """
    device = tables.device
    nodes = np.asarray(nodes, dtype=np.int64)
    is_user = nodes < num_users
    user_ids = torch.from_numpy(nodes[is_user]).to(device)
    item_ids = torch.from_numpy(nodes[~is_user] - num_users).to(device)
    num_u, num_i = user_ids.numel(), item_ids.numel()
    _, world_size = _world()
    if world_size > 1:
        size = torch.tensor([max(num_u, num_i)], dtype=torch.int64, device=device)
        dist.all_reduce(size, op=dist.ReduceOp.MAX)
        stride = int(size.item())
        if max(num_u, num_i) < stride:  # padding one list to `stride` sets the KJT's stride
            user_ids = torch.cat([user_ids, user_ids.new_zeros(stride - num_u)])
    ego_users, ego_items = tables.lookup(user_ids, item_ids)
    x0 = torch.cat([ego_users[:num_u], ego_items[:num_i]])
    order = np.empty(len(nodes), dtype=np.int64)  # position of each node in [users ; items]
    order[is_user] = np.arange(num_u)
    order[~is_user] = num_u + np.arange(num_i)
    return x0[torch.from_numpy(order).to(device)]


class LightGCN(nn.Module):
    """LightGCN scored with BPR.

    Args:
        num_users, num_items: graph sizes; must match `tables`.
        dim: embedding size d; must match `tables`.
        num_layers: propagation layers L (0 gives BPR-MF scores).
        adjacency: the normalised (U+I) x (U+I) adjacency as a torch sparse tensor
            (users first, then items), e.g. `data_loaders.graph.lightgcn_adjacency`. Needed in
            full mode; ignored (not kept) in sampled mode.
        tables: the ID tables (sharded later by `trainer/sharding.py`).
        reg_weight: weight of the ego-embedding regulariser (see `models.bpr`).
        reg_type: `RegType` of the regulariser.
        ranking: the ranking term (BPR or sampled softmax, see `models.bpr`).
        cfg: `LightGCNConfig` (graph mode and fanouts); None is full mode.
        train: the users x items training CSR; needed in sampled mode.
        seed: the run's seed; sampled mode draws step s of epoch e on rank r from
            `sampling_rng(seed, e, s, r)` (`start_epoch` sets e and resets s).
    """

    def __init__(self, num_users: int, num_items: int, dim: int, num_layers: int, adjacency: torch.Tensor | None,
                 tables: IdTables, reg_weight: float, reg_type: RegType | str = RegType.MMREC, *,
                 cfg: LightGCNConfig | None = None, train: CSR | None = None, seed: int = 0,
                 ranking: Ranking = Ranking()) -> None:
        super().__init__()
        cfg = cfg or LightGCNConfig()
        n = num_users + num_items
        if (tables.num_users, tables.num_items, tables.dim) != (num_users, num_items, dim):
            raise ValueError(f"LightGCN: tables are {tables.num_users} x {tables.num_items} x {tables.dim}, "
                             f"model expects {num_users} x {num_items} x {dim}")
        if num_layers < 0:
            raise ValueError(f"LightGCN: num_layers must be >= 0, got {num_layers}")
        if cfg.graph_mode not in ("full", "sampled"):
            raise ValueError(f"LightGCN: graph_mode must be 'full' or 'sampled', got {cfg.graph_mode!r}")
        self.num_users, self.num_items, self.num_layers = num_users, num_items, num_layers
        self.tables = tables
        self.reg_weight = reg_weight
        self.reg_type = RegType(reg_type)
        self.ranking = ranking
        self.cfg, self.seed = cfg, seed
        self.graph_mode = cfg.graph_mode
        self._epoch, self._step = 0, 0
        # Plain attributes, not buffers. A sparse buffer does survive DMP and TorchRec's DDP
        # wrapper (which sets broadcast_buffers=False; checked on 2 gloo ranks), but it lands in
        # state_dict, so every rank's checkpoint would carry the graph, which is data rebuilt
        # from the dataset, and any wrapper that syncs buffers would ship it. `.to()` therefore
        # does not move it: `to_device` does.
        self.adjacency: SparseOperator | None = None
        self.train_adjacency: SparseOperator | None = None  # this epoch's dropped-edge graph (edge_keep < 1)
        self._train_csr: CSR | None = None
        self.graph: NeighborGraph | None = None
        self.sampler: NeighborSampler | None = None
        if self.graph_mode == "full":
            if adjacency is None or (not adjacency.is_sparse and adjacency.layout is not torch.sparse_csr):
                raise ValueError("LightGCN: adjacency must be a torch sparse tensor (COO or CSR)")
            if tuple(adjacency.shape) != (n, n):
                raise ValueError(f"LightGCN: adjacency is {tuple(adjacency.shape)}, expected ({n}, {n})")
            self.adjacency = SparseOperator(adjacency)  # torch's sparse @ is slow on CPU: models/sparse_ops.py
            if not 0 < cfg.edge_keep <= 1:
                raise ValueError(f"LightGCN: edge_keep must be in (0, 1], got {cfg.edge_keep}")
            if cfg.edge_keep < 1 and train is None:
                raise ValueError("LightGCN: edge_keep < 1 needs the training CSR (train=...)")
            self._train_csr = train if cfg.edge_keep < 1 else None
        else:
            if cfg.edge_keep != 1:
                raise ValueError(f"LightGCN: edge_keep={cfg.edge_keep} needs graph_mode 'full' (sampled mode "
                                 "already propagates on a sample of each node's edges)")
            if cfg.norm_power != 0.5:
                raise ValueError(f"LightGCN: norm_power={cfg.norm_power} needs graph_mode 'full' (sampled mode "
                                 "propagates with the symmetric normalisation)")
            fanouts = list(cfg.fanouts)
            if len(fanouts) != num_layers or not all(isinstance(f, int) and f > 0 for f in fanouts):
                raise ValueError(f"LightGCN: graph_mode 'sampled' needs one positive integer fanout per layer "
                                 f"({num_layers}), got fanouts={cfg.fanouts!r}")
            if train is None:
                raise ValueError("LightGCN: graph_mode 'sampled' needs the training CSR (train=...)")
            if (train.num_rows, train.num_cols) != (num_users, num_items):
                raise ValueError(f"LightGCN: train is {train.num_rows} x {train.num_cols}, "
                                 f"expected {num_users} x {num_items}")
            if cfg.eval_chunk_edges <= 0:
                raise ValueError(f"LightGCN: eval_chunk_edges must be positive, got {cfg.eval_chunk_edges}")
            self.graph = NeighborGraph.from_csr(train)
            self.sampler = NeighborSampler(self.graph, fanouts)
        self.to_device(tables.device)

    def to_device(self, device: torch.device | str) -> "LightGCN":
        """Move the adjacency (not a buffer, so not moved by `.to()`) to `device`."""
        if self.adjacency is not None:
            self.adjacency = self.adjacency.to(device)
        if self.train_adjacency is not None:
            self.train_adjacency = self.train_adjacency.to(device)
        return self

    def start_epoch(self, epoch: int) -> dict[str, float]:
        """Called by the trainer before each epoch: seeds the epoch's neighbour samples and, with
        `edge_keep` < 1, draws the epoch's training graph."""
        self._epoch, self._step = epoch, 0
        if self._train_csr is None:
            return {}
        train = self._train_csr
        keep = np.random.default_rng([self.seed, epoch, 7]).random(train.nnz) < self.cfg.edge_keep
        kept = CSR.from_pairs(train.row_ids()[keep], train.indices[keep], train.num_rows, train.num_cols,
                              None if train.data is None else np.asarray(train.data)[keep])
        device = self.adjacency.device if self.adjacency is not None else self.tables.device
        self.train_adjacency = SparseOperator(lightgcn_adjacency(kept, norm_power=self.cfg.norm_power)).to(device)
        return {"backbone/kept_edges": float(keep.mean())}

    # ---- full graph -------------------------------------------------------------------------

    def _full_mm(self, x: torch.Tensor) -> torch.Tensor:
        """A_hat @ x over the whole graph."""
        if self.adjacency is not None:
            dropped = self.train_adjacency is not None and self.training
            return (self.train_adjacency if dropped else self.adjacency) @ x
        # Sampled mode keeps no adjacency: one CSR block of rows at a time from the neighbour graph.
        return graph_mm(self.graph, x, self.cfg.eval_chunk_edges)

    def _layer_mean(self, ego_users: torch.Tensor, ego_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([ego_users, ego_items])
        total = x
        for _ in range(self.num_layers):
            x = self._full_mm(x)
            total = total + x
        mean = total / (self.num_layers + 1)
        # split, not two slices: one backward (a cat) instead of two zero-filled full-size gradients.
        user, item = mean.split([self.num_users, self.num_items])
        return user, item

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]): layer mean over every id. A collective once sharded."""
        return self._layer_mean(*self.tables.lookup_all())

    # ---- sampled subgraph -------------------------------------------------------------------

    def sample(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> SampledSubgraph:
        """The computation graph of this step's batch (advances the step counter)."""
        rank, _ = _world()
        seeds = np.concatenate([users.cpu().numpy(), self.num_users + pos.cpu().numpy(),
                                self.num_users + neg.cpu().numpy()])
        rng = sampling_rng(self.seed, self._epoch, self._step, rank)
        self._step += 1
        return self.sampler.sample(seeds, rng)

    def _lookup_nodes(self, sub: SampledSubgraph) -> torch.Tensor:
        """Layer-0 rows of every node of `sub`, in its local order: one lookup (one KJT)."""
        return lookup_nodes(self.tables, sub.nodes, self.num_users)

    def sampled_layer_mean(self, sub: SampledSubgraph) -> tuple[torch.Tensor, torch.Tensor]:
        """(layer mean, layer 0) of the batch's distinct nodes N_0 ([|N_0|, d] each)."""
        h = self._lookup_nodes(sub)
        return subgraph_layer_mean(sub, h), h[:sub.sizes[0]]

    # ---- training and evaluation ------------------------------------------------------------

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """BPR loss of the triples (users[k], pos[k], neg[k]): {"loss", "bpr", "reg"}.

        The regulariser sees the layer-0 rows of the batch, as in MMRec.
        """
        if self.graph_mode == "sampled":
            check_negatives(neg, "lightgcn with graph_mode sampled")
            sub = self.sample(users, pos, neg)
            mean, ego = self.sampled_layer_mean(sub)
            index = torch.from_numpy(sub.seed_local).to(mean.device)
            b = users.numel()
            u, p, q = index[:b], index[b:b + pos.numel()], index[b + pos.numel():]
            return bpr_loss_terms(mean[u], mean[p], mean[q], (ego[u], ego[p], ego[q]),
                                  self.reg_weight, self.reg_type, ranking=self.ranking, ids=(pos, neg))
        ego_users, ego_items = self.tables.lookup_all()
        user_all, item_all = self._layer_mean(ego_users, ego_items)
        if neg.dim() == 2:  # candidate pools: keep each row's hardest (train.negative_candidates)
            neg = hardest_negatives(user_all.index_select(0, users), item_all, neg)
        return bpr_loss_terms(*triple_rows(user_all, item_all, users, pos, neg),
                              triple_rows(ego_users, ego_items, users, pos, neg), self.reg_weight, self.reg_type,
                              ranking=self.ranking, ids=(pos, neg))

    @torch.no_grad()
    def final_embeddings(self, uniform_exposure: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]) for evaluation (full propagation in both modes).

        A collective once sharded.
        `uniform_exposure` is accepted for the common interface: no exposure term here.
        """
        return self.propagate()
