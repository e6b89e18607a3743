"""Co-interaction and content views: a user-user and an item-item channel (after MMHCL).

Two more embedding tables t_u, t_i (a second `IdTables`, sharded like the ID tables), each
propagated on a fixed graph and added, L2-normalised, to the score's representations:

    v_u = A_uu^{L_u} t_u,   v_i = S_ii^{L_i} t_i,
    h_u <- h_u + g_v v_u / ||v_u||,   h_i <- h_i + g_v v_i / ||v_i||   (g_v = 1, or learned: `gated`),
    L_views = lambda_v (InfoNCE(h_u, v_u) + InfoNCE(h_i, v_i))   (the batch's distinct users / items)

A_uu links users who share training items, each row normalised by the shared-item counts (R R^T
without its diagonal, as MMHCL's user hypergraph), optionally cut to each user's `user_top_k`
strongest neighbours. S_ii is the content kNN graph of models/knn.py (FREEDOM's; MMHCL's item
hypergraph also joins items whose modality features are nearest neighbours).

Why: the LightGCN backbone reaches a user's co-interacting users only through two-hop paths
weighted by item degrees, and content enters the score only through the back-door and front-door
terms. MMHCL (Guo et al., TOMM 2025), the best valid-selected figure published on our TikTok
split, adds exactly these two channels, each with its own table and an InfoNCE tying it to the
main representation. This module is not in the paper this project follows (docs/MODEL.md says
where it departs); it is off by default.

The graphs are data rebuilt from the dataset (like the adjacency), never checkpointed. A_uu has
sum_i deg_i^2 entries before the cut (1.4M on TikTok); at catalog scale set `user_top_k`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from data_loaders.graph import CSR
from models.contrast import _at_most, info_nce
from models.embeddings import IdTables
from models.knn import mixed_knn_graph
from models.sparse_ops import SparseOperator


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class ViewsConfig:
    """`model.causal.views.*`: the user-user and item-item channels (docs/MODEL.md §4c)."""

    enabled: bool = _doc("Add the co-interaction (user) and content-kNN (item) views to the score, each with its "
                         "own embedding table, and their InfoNCE to the loss; off: no tables, no term.", False)
    user_top_k: int = _doc("Each user keeps its user_top_k neighbours with the most shared training items (ties "
                           "by smaller id); 0 = every user it shares an item with (MMHCL; sum_i deg_i^2 entries).",
                           0)
    user_layers: int = _doc("L_u: propagation steps of the user table on A_uu (MMHCL: 3).", 3)
    item_knn_k: int = _doc("Neighbours per item in the content kNN graph S_ii (MMHCL: 5).", 5)
    item_layers: int = _doc("L_i: propagation steps of the item table on S_ii (MMHCL: 2).", 2)
    loss_weight: float = _doc("lambda_v: weight of the two InfoNCE terms (MMHCL: 0.03 users, 0.07 items).", 0.05)
    temperature: float = _doc("tau of the views' InfoNCE (MMHCL: 0.6).", 0.6)
    max_nodes: int = _doc("At most this many distinct users (and items) of the batch enter each InfoNCE.", 1024)
    gated: bool = _doc("Scale both views in the score by a learned scalar g_v initialised at `model.causal.gate_init` "
                       "(as g_bd, g_fd): the model starts as without them. false: added at full weight (MMHCL).", False)


def check_views_config(cfg: ViewsConfig) -> None:
    """ValueError naming the key and value of the first bad setting."""
    for key in ("user_top_k", "user_layers", "item_layers"):
        if getattr(cfg, key) < 0:
            raise ValueError(f"model.causal.views.{key} must be >= 0, got {getattr(cfg, key)}")
    for key in ("item_knn_k", "max_nodes"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"model.causal.views.{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.temperature <= 0:
        raise ValueError(f"model.causal.views.temperature must be > 0, got {cfg.temperature}")
    if cfg.loss_weight < 0:
        raise ValueError(f"model.causal.views.loss_weight must be >= 0, got {cfg.loss_weight}")


def co_interaction_graph(train: CSR, num_users: int, top_k: int = 0) -> torch.Tensor:
    """A_uu [U, U] COO: shared training items of u and v (u != v), each row divided by its sum.

    `top_k` > 0 keeps each user's top_k neighbours by shared count (ties: smaller id first). A user
    who shares no item with anyone has an empty row (its view is 0).
    """
    # scipy's sparse product: torch's COO @ COO goes through its beta CSR path.
    r = scipy.sparse.csr_matrix((np.ones(len(train.indices)), train.indices, train.indptr),
                                shape=(num_users, train.num_cols))
    counts = (r @ r.T).tocoo()
    u, v = torch.from_numpy(counts.row.astype(np.int64)), torch.from_numpy(counts.col.astype(np.int64))
    c = torch.from_numpy(counts.data.astype(np.float64))
    off_diagonal = u != v
    u, v, c = u[off_diagonal], v[off_diagonal], c[off_diagonal]
    if top_k > 0:
        # Sort by (user, -count, neighbour) and keep each user's first top_k.
        order = np.lexsort((v.numpy(), -c.numpy(), u.numpy()))
        u, v, c = u[order], v[order], c[order]
        start = torch.searchsorted(u, u, right=False)  # first position of each entry's user
        keep = (torch.arange(len(u)) - start) < top_k
        u, v, c = u[keep], v[keep], c[keep]
    row_sum = torch.zeros(num_users, dtype=torch.float64).index_add_(0, u, c)
    values = (c / row_sum[u]).float()
    return torch.sparse_coo_tensor(torch.stack([u, v]), values, (num_users, num_users),
                                   check_invariants=True).coalesce()


class Views(nn.Module):
    """The two view tables, their graphs, the normalised views and the InfoNCE term.

    Args:
        num_users, num_items, dim: table sizes (dim = the ID rows' width).
        train: the training graph (A_uu).
        features: raw item features per modality (S_ii: equal-weight mix of per-modality kNN graphs).
        cfg: `ViewsConfig`.
        gate_init: g_v's initial value with `cfg.gated`.
        device: the compute device (the tables are built there; `shard_model` shards them).
    """

    def __init__(self, num_users: int, num_items: int, dim: int, train: CSR, features: dict[str, torch.Tensor],
                 cfg: ViewsConfig, device: torch.device | str = "cpu", gate_init: float = 0.0) -> None:
        super().__init__()
        check_views_config(cfg)
        self.cfg = cfg
        self.tables = IdTables(num_users, num_items, dim, device=device)
        self.user_graph = SparseOperator(co_interaction_graph(train, num_users, cfg.user_top_k)).to(device)
        # Self-loops: an item is one of its own k neighbours, as in LATTICE's graph that MMHCL builds on.
        item_graph = mixed_knn_graph({m: f.float() for m, f in features.items()},
                                     {m: 1.0 for m in features}, cfg.item_knn_k)
        self.item_graph = SparseOperator(item_graph).to(device)
        # g_v (views.gated), registered only when used. The InfoNCE reads the unscaled views: at
        # g_v = 0 a scaled view would have no direction to compare.
        self.gate = nn.Parameter(torch.tensor(float(gate_init))) if cfg.gated else None

    def to_device(self, device: torch.device | str) -> "Views":
        self.user_graph, self.item_graph = self.user_graph.to(device), self.item_graph.to(device)
        return self

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(v_u / ||v_u|| [U, d], v_i / ||v_i|| [I, d]): a collective once the tables are sharded."""
        user, item = self.tables.lookup_all()
        for _ in range(self.cfg.user_layers):
            user = self.user_graph @ user
        for _ in range(self.cfg.item_layers):
            item = self.item_graph @ item
        return F.normalize(user, dim=-1), F.normalize(item, dim=-1)

    def loss(self, users: torch.Tensor, items: torch.Tensor, h_user: torch.Tensor, view_user: torch.Tensor,
             h_item: torch.Tensor, view_item: torch.Tensor) -> torch.Tensor:
        """lambda_v * (InfoNCE of h_u against v_u + of h_i against v_i), the batch's distinct nodes."""
        if self.cfg.loss_weight == 0:
            return h_user.new_zeros(())
        u = _at_most(torch.unique(users), self.cfg.max_nodes)
        i = _at_most(torch.unique(items), self.cfg.max_nodes)
        tau = self.cfg.temperature
        return self.cfg.loss_weight * (info_nce(h_user.index_select(0, u), view_user.index_select(0, u), tau)
                                       + info_nce(h_item.index_select(0, i), view_item.index_select(0, i), tau))
