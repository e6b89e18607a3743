"""FREEDOM (Zhou et al., "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023).

Two graphs:
- a FROZEN item-item graph S = sum_m w_m D^-1/2 S^m D^-1/2 built once from each modality's raw
  features (top-k cosine neighbours, `models.knn`), on which the item ID embeddings are
  propagated: ``h = S^L' q`` (L' = `item_layers`, 1 in the paper);
- the user-item graph, DENOISED by degree-sensitive edge pruning: every epoch a fraction
  `keep_ratio` of the training edges is sampled without replacement with probability
  proportional to 1/sqrt(d_u d_i) (degrees of the full graph), the kept graph is re-normalised
  with its own degrees, and LightGCN propagates the user and item ID embeddings on it
  (`model.num_layers` layers, layer mean). Evaluation uses the full normalised graph.

Final representations: user = the LightGCN user; item = the LightGCN item + h. Loss: BPR on
those, plus `modality_loss_weight` x (for each modality m) BPR between the LightGCN user and the
projected features W_m f^m_i + b_m of the positive and negative items, plus the usual ID
regulariser (`model.reg_weight`, 0 in the paper and in MMRec).

Fidelity to the reference MMRec implementation (src/models/freedom.py), written independently:
- As there, the raw features are trainable (initialised from the data; the frozen graph is built
  from the initial values) unless `train_features` is false; projections use torch's default
  nn.Linear initialisation; the ID tables are Xavier-uniform (`model.init`). The projections have
  no bias: a bias cancels in the BPR difference (its exact gradient is 0; see __init__).
- Pruning draws Efraimidis-Spirakis keys log(u)/p and keeps the largest: the same distribution
  as MMRec's `torch.multinomial(p, m)` without replacement, but not limited to 2^24 edges, and
  drawn from a numpy generator seeded by (run seed, epoch) only, so every rank builds the same
  graph and a resumed run rebuilds the same graphs.
- Degrees of zero (a user or item all of whose edges were pruned) give empty rows, not NaN.
- MMRec scores its main BPR with log-sigmoid; here the main term uses `models.bpr` (log(1e-10 +
  sigmoid)), like every cimrec model; the two differ only once sigmoid < ~1e-8.
- MMRec's two-modality weight `mm_image_weight` (image) / 1 - it (text) becomes one weight per
  named modality (`modality_weights`), normalised to sum 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_loaders.graph import CSR, lightgcn_adjacency
from models.bpr import Ranking, RegType, bpr_loss_terms, hardest_negatives, triple_rows
from models.embeddings import IdTables
from models.knn import mixed_knn_graph
from models.sparse_ops import SparseOperator

_PRUNE_STREAM = 0xF4EED0  # separates this generator from any other (seed, epoch)-seeded stream


def _doc(text: str, default: object) -> object:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class FreedomConfig:
    knn_k: int = _doc("Neighbours per item in the frozen item-item kNN graph of each modality.", 10)
    knn_self_loops: bool = _doc("Whether an item competes for its own top-k slots (so it is usually one of its own k neighbours), as in MMRec; false excludes it.", True)
    modality_weights: dict = _doc("Weight of each modality's kNN graph in the mixed item-item graph, e.g. `{image: 0.1, audio: 0.9}` (MMRec's `mm_image_weight` = 0.1 for image, 0.9 for the other); normalised to sum 1; an unlisted modality gets no graph (its projection loss stays); empty: equal weights over every modality.", {})
    item_layers: int = _doc("Propagation layers on the item-item graph (MMRec `n_mm_layers`); the user-item graph uses `model.num_layers`.", 1)
    keep_ratio: float = _doc("Fraction of training edges kept by degree-sensitive pruning each epoch (MMRec `1 - dropout`, grid {0.2, 0.1}); 1 disables pruning.", 0.2)
    modality_loss_weight: float = _doc("Weight of the per-modality BPR terms between users and projected item features (MMRec's FREEDOM `reg_weight`, grid {0, 1e-5, 1e-4, 1e-3}).", 1e-4)
    train_features: bool = _doc("Fine-tune the raw item features (MMRec: trainable, initialised from the data); false freezes them.", True)
    knn_row_chunk: int = _doc("Items scored at once when building the kNN graph (memory ~ knn_row_chunk x knn_col_chunk floats).", 1024)
    knn_col_chunk: int = _doc("Items each block of rows is scored against at once when building the kNN graph.", 16384)


def degree_pruned_edges(train: CSR, keep_ratio: float, seed: int, epoch: int) -> np.ndarray:
    """Sorted indices of the training edges (CSR order) kept in `epoch`, int(nnz * keep_ratio) of them.

    Sampled without replacement with probability proportional to 1/sqrt(d_u d_i), seeded by
    (seed, epoch) only. Efraimidis & Spirakis (2006): with u ~ U(0, 1], the m largest keys
    log(u) / p_e are a weighted sample without replacement of m edges.
    """
    users, items = train.row_ids(), train.indices
    degree_u = np.bincount(users, minlength=train.num_rows).astype(np.float64)
    degree_i = np.bincount(items, minlength=train.num_cols).astype(np.float64)
    prob = 1.0 / np.sqrt(degree_u[users] * degree_i[items])  # every edge's ends have degree >= 1
    keep = int(train.nnz * keep_ratio)
    if keep >= train.nnz:
        return np.arange(train.nnz)
    rng = np.random.default_rng([seed % 2**63, epoch, _PRUNE_STREAM])
    keys = np.log1p(-rng.random(train.nnz)) / prob  # log(1 - U[0,1)) = log U(0,1]: never log 0
    return np.sort(np.argpartition(-keys, keep)[:keep])


class Freedom(nn.Module):
    """FREEDOM scored with BPR.

    Args:
        num_users, num_items, dim, num_layers: graph sizes, ID width and user-item LightGCN layers.
        tables: the ID tables (sharded later by `trainer/sharding.py`).
        features: item content features per modality ([I, F_m], row i = item i).
        train: the training interactions (the graph that is pruned every epoch).
        cfg: the model's options.
        seed: the run's seed; the pruned graph of epoch e depends on (seed, e) only.
        reg_weight, reg_type: the ego-embedding regulariser (see `models.bpr`).
        ranking: the ranking term of the ID scores (BPR or sampled softmax, see `models.bpr`); the
            per-modality terms stay BPR (MMRec's).
    """

    def __init__(self, num_users: int, num_items: int, dim: int, num_layers: int, tables: IdTables,
                 features: dict[str, torch.Tensor], train: CSR, cfg: FreedomConfig, seed: int,
                 reg_weight: float = 0.0, reg_type: RegType | str = RegType.MMREC,
                 ranking: Ranking = Ranking()) -> None:
        super().__init__()
        if (tables.num_users, tables.num_items, tables.dim, tables.user_dim) != (num_users, num_items, dim, dim):
            raise ValueError(f"Freedom: tables are {tables.num_users} x {tables.num_items} x "
                             f"{tables.user_dim}/{tables.dim}, model expects {num_users} x {num_items} x {dim}")
        if (train.num_rows, train.num_cols) != (num_users, num_items):
            raise ValueError(f"Freedom: train graph is {train.num_rows} x {train.num_cols}, "
                             f"expected {num_users} x {num_items}")
        if not features or any(f.ndim != 2 or f.shape[0] != num_items for f in features.values()):
            raise ValueError(f"Freedom: needs [{num_items}, F] item features per modality, got "
                             f"{ {m: tuple(f.shape) for m, f in features.items()} }")
        if not 0.0 < cfg.keep_ratio <= 1.0:
            raise ValueError(f"Freedom: keep_ratio must be in (0, 1], got {cfg.keep_ratio}")
        if num_layers < 0 or cfg.item_layers < 0:
            raise ValueError(f"Freedom: layers must be >= 0, got {num_layers=}, item_layers={cfg.item_layers}")
        self.num_users, self.num_items, self.num_layers = num_users, num_items, num_layers
        # `train_graph`, not `train`: nn.Module.train() is the train/eval switch.
        self.tables, self.cfg, self.seed, self.train_graph = tables, cfg, seed, train
        self.reg_weight, self.reg_type, self.ranking = reg_weight, RegType(reg_type), ranking
        self.modalities = sorted(features)
        device = tables.device
        self.features = nn.ParameterDict({m: nn.Parameter(features[m].float().to(device).clone(),
                                                          requires_grad=cfg.train_features)
                                          for m in self.modalities})
        # No bias (MMRec has one): it cancels in every BPR difference, so its exact gradient is 0
        # and Adam would only turn float round-off into steps of size lr, differently per world size.
        self.projections = nn.ModuleDict({m: nn.Linear(features[m].shape[1], dim, bias=False, device=device)
                                          for m in self.modalities})
        weights = cfg.modality_weights or {m: 1.0 for m in self.modalities}
        # Graphs are plain attributes, not buffers (see LightGCN): data rebuilt from the dataset,
        # kept out of state_dict; `to_device` moves them.
        with torch.no_grad():
            # torch's sparse @ is slow on CPU (backward above all): SparseOperator, models/sparse_ops.py.
            self.item_graph = SparseOperator(mixed_knn_graph(
                {m: features[m].to(device) for m in self.modalities}, weights, cfg.knn_k,
                self_loops=cfg.knn_self_loops, row_chunk=cfg.knn_row_chunk, col_chunk=cfg.knn_col_chunk))
        self.full_adjacency = SparseOperator(lightgcn_adjacency(train))
        self.train_adjacency = self.full_adjacency
        self.to_device(device)
        self.start_epoch(0)  # a valid training graph before the trainer's first start_epoch

    def to_device(self, device: torch.device | str) -> "Freedom":
        """Move the graphs (not buffers, so not moved by `.to()`) to `device`."""
        self.item_graph = self.item_graph.to(device)
        self.full_adjacency = self.full_adjacency.to(device)
        self.train_adjacency = self.train_adjacency.to(device)
        return self

    def start_epoch(self, epoch: int) -> dict[str, float]:
        """Resample the pruned user-item graph of `epoch`; identical on every rank."""
        if self.cfg.keep_ratio >= 1.0:
            self.train_adjacency = self.full_adjacency
            return {"kept_edges": float(self.train_graph.nnz)}
        kept = degree_pruned_edges(self.train_graph, self.cfg.keep_ratio, self.seed, epoch)
        pruned = CSR.from_pairs(self.train_graph.row_ids()[kept], self.train_graph.indices[kept],
                                self.num_users, self.num_items)
        self.train_adjacency = SparseOperator(lightgcn_adjacency(pruned)).to(self.full_adjacency.device)
        return {"kept_edges": float(kept.size)}

    def _propagate(self, adjacency: SparseOperator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user_all, item_all, ego_users, ego_items) with `adjacency` as the user-item graph."""
        ego_users, ego_items = self.tables.lookup_all()
        content = ego_items
        for _ in range(self.cfg.item_layers):
            content = self.item_graph @ content
        x = torch.cat([ego_users, ego_items])
        total = x
        for _ in range(self.num_layers):
            x = adjacency @ x
            total = total + x
        mean = total / (self.num_layers + 1)
        return mean[:self.num_users], mean[self.num_users:] + content, ego_users, ego_items

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss", "bpr", "reg", "bpr_<modality>"...} of the triples on this epoch's pruned graph."""
        user_all, item_all, ego_users, ego_items = self._propagate(self.train_adjacency)
        if neg.dim() == 2:  # candidate pools: keep each row's hardest (train.negative_candidates)
            neg = hardest_negatives(user_all.index_select(0, users), item_all, neg)
        user_e, item_pos, item_neg = triple_rows(user_all, item_all, users, pos, neg)
        out = bpr_loss_terms(user_e, item_pos, item_neg, triple_rows(ego_users, ego_items, users, pos, neg),
                             self.reg_weight, self.reg_type, ranking=self.ranking, ids=(pos, neg))
        # Every projection and feature table enters every step's graph even at weight 0: DDP's
        # static graph needs each dense parameter used in every forward.
        modal = user_e.new_zeros(())
        for m in self.modalities:
            projected = self.projections[m](self.features[m][torch.cat([pos, neg])])
            pos_m, neg_m = projected.split(pos.numel())
            out[f"bpr_{m}"] = F.softplus((user_e * neg_m).sum(-1) - (user_e * pos_m).sum(-1)).mean()
            modal = modal + out[f"bpr_{m}"]
        out["loss"] = out["loss"] + self.cfg.modality_loss_weight * modal
        return out

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]) on the full graph. A collective once sharded."""
        user_all, item_all, _, _ = self._propagate(self.full_adjacency)
        return user_all, item_all

    @torch.no_grad()
    def final_embeddings(self, uniform_exposure: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]) for evaluation. A collective once sharded.

        `uniform_exposure` is accepted for the common interface: no exposure term here.
        """
        return self.propagate()
