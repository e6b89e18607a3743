"""LightGCN (He et al. 2020): ID embeddings averaged over propagation layers on the graph.

Full-graph training as in MMRec: every step looks up all user and item rows through the
(possibly sharded) `IdTables`, propagates them with the normalised adjacency
``A_hat = D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` and scores the batch with the layer mean
``E = mean(E_0, A_hat E_0, ..., A_hat^L E_0)``. Each rank propagates the full graph and
computes the loss of its own share of the batch; the tables' gradients are averaged over
ranks by TorchRec (see models/embeddings.py).
"""

from __future__ import annotations

import torch
from torch import nn

from models.bpr import RegType, bpr_loss_terms
from models.embeddings import IdTables


class LightGCN(nn.Module):
    """LightGCN scored with BPR.

    Args:
        num_users, num_items: graph sizes; must match `tables`.
        dim: embedding size d; must match `tables`.
        num_layers: propagation layers L (0 gives BPR-MF scores).
        adjacency: the normalised (U+I) x (U+I) adjacency as a torch sparse tensor
            (users first, then items), e.g. `data_loaders.graph.lightgcn_adjacency`.
        tables: the ID tables (sharded later by `trainer/sharding.py`).
        reg_weight: weight of the ego-embedding regulariser (see `models.bpr`).
        reg_type: `RegType` of the regulariser.
    """

    def __init__(self, num_users: int, num_items: int, dim: int, num_layers: int, adjacency: torch.Tensor,
                 tables: IdTables, reg_weight: float, reg_type: RegType | str = RegType.MMREC) -> None:
        super().__init__()
        n = num_users + num_items
        if (tables.num_users, tables.num_items, tables.dim) != (num_users, num_items, dim):
            raise ValueError(f"LightGCN: tables are {tables.num_users} x {tables.num_items} x {tables.dim}, "
                             f"model expects {num_users} x {num_items} x {dim}")
        if not adjacency.is_sparse and adjacency.layout is not torch.sparse_csr:
            raise ValueError("LightGCN: adjacency must be a torch sparse tensor (COO or CSR)")
        if tuple(adjacency.shape) != (n, n):
            raise ValueError(f"LightGCN: adjacency is {tuple(adjacency.shape)}, expected ({n}, {n})")
        if num_layers < 0:
            raise ValueError(f"LightGCN: num_layers must be >= 0, got {num_layers}")
        self.num_users, self.num_items, self.num_layers = num_users, num_items, num_layers
        self.tables = tables
        self.reg_weight = reg_weight
        self.reg_type = RegType(reg_type)
        # A plain attribute, not a buffer. A sparse buffer does survive DMP and TorchRec's DDP
        # wrapper (which sets broadcast_buffers=False; checked on 2 gloo ranks), but it lands in
        # state_dict, so every rank's checkpoint would carry the graph, which is data rebuilt
        # from the dataset, and any wrapper that syncs buffers would ship it. `.to()` therefore
        # does not move it: `to_device` does.
        self.adjacency = adjacency.coalesce() if adjacency.is_sparse else adjacency
        self.to_device(tables.device)

    def to_device(self, device: torch.device | str) -> "LightGCN":
        """Move the adjacency (not a buffer, so not moved by `.to()`) to `device`."""
        self.adjacency = self.adjacency.to(device)
        return self

    def _layer_mean(self, ego_users: torch.Tensor, ego_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([ego_users, ego_items])
        total = x
        for _ in range(self.num_layers):
            x = torch.sparse.mm(self.adjacency, x)
            total = total + x
        mean = total / (self.num_layers + 1)
        return mean[:self.num_users], mean[self.num_users:]

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]): layer mean over every id. A collective once sharded."""
        return self._layer_mean(*self.tables.lookup_all())

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """BPR loss of the triples (users[k], pos[k], neg[k]): {"loss", "bpr", "reg"}.

        The regulariser sees the layer-0 rows of the batch, as in MMRec.
        """
        ego_users, ego_items = self.tables.lookup_all()
        user_all, item_all = self._layer_mean(ego_users, ego_items)
        return bpr_loss_terms(user_all[users], item_all[pos], item_all[neg],
                              (ego_users[users], ego_items[pos], ego_items[neg]), self.reg_weight, self.reg_type)

    @torch.no_grad()
    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]) for evaluation. A collective once sharded."""
        return self.propagate()
