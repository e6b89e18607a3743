"""VBPR (He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016).

An item is the concatenation of a free ID embedding and a linear map of its content features,
``e_i = [q_i ; E f_i + b]`` (d + d), a user one free embedding of width 2d, ``e_u = [p_u ; theta_u]``,
and the score is the dot product ``e_u . e_i = p_u . q_i + theta_u . (E f_i + b)``, trained with
BPR and an L2 penalty on the batch's user, positive and negative vectors.

This follows the MMRec "recommended version" (the toolbox whose TikTok numbers we compare with),
which departs from the paper in two ways kept here: no item bias beta_i and no visual bias
beta'^T f_i, and the features of every modality are concatenated into f_i (the paper has one
visual vector). As there, the ID tables are Xavier-uniform, E Xavier-normal, b zero, the features
frozen, and the regulariser is MMRec's sum of Frobenius norms of (e_u, e_pos, e_neg) / batch
(`models.bpr`), so it also reaches the content part through E.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.bpr import Ranking, RegType, bpr_loss_terms, check_negatives
from models.embeddings import IdTables


@dataclass
class VBPRConfig:
    modalities: list = field(default_factory=list, metadata={
        "doc": "Modalities whose features are concatenated into VBPR's content vector f_i (empty: every "
               "modality of the dataset, in name order)."})


def concat_features(features: dict[str, torch.Tensor], modalities: list[str]) -> torch.Tensor:
    """[I, sum of dims]: the chosen modalities' features side by side (all of them if none chosen)."""
    names = list(modalities) or sorted(features)
    unknown = [m for m in names if m not in features]
    if not names or unknown:
        raise ValueError(f"VBPR needs item features of modalities {unknown or '(any)'}; the dataset has "
                         f"{sorted(features) or 'none'}")
    return torch.cat([features[m].float() for m in names], dim=1)


class VBPR(nn.Module):
    """VBPR scored with BPR. Same interface as `BPRMF`.

    Args:
        tables: ID tables whose user table is twice as wide as the item table (`user_dim = 2 d`).
        features: [I, F] frozen item content features (row i = item i).
        reg_weight, reg_type: the L2 penalty on the scored vectors (see `models.bpr`).
        ranking: the ranking term (BPR or sampled softmax, see `models.bpr`).
    """

    def __init__(self, tables: IdTables, features: torch.Tensor, reg_weight: float,
                 reg_type: RegType | str = RegType.MMREC, ranking: Ranking = Ranking()) -> None:
        super().__init__()
        if tables.user_dim != 2 * tables.dim:
            raise ValueError(f"VBPR: the user table must be twice as wide as the item table, got "
                             f"user_dim={tables.user_dim}, dim={tables.dim}")
        if features.ndim != 2 or features.shape[0] != tables.num_items:
            raise ValueError(f"VBPR: features must be [{tables.num_items}, F], got {tuple(features.shape)}")
        self.tables = tables
        self.reg_weight = reg_weight
        self.reg_type = RegType(reg_type)
        self.ranking = ranking
        self.content = nn.Linear(features.shape[1], tables.dim, device=tables.device)
        nn.init.xavier_normal_(self.content.weight)
        nn.init.zeros_(self.content.bias)
        # Frozen data, rebuilt from the dataset: a plain attribute (kept out of state_dict and
        # checkpoints, like LightGCN's adjacency), moved by `to_device`.
        self.features = features.float()
        self.to_device(tables.device)

    def to_device(self, device: torch.device | str) -> "VBPR":
        """Move the features (not a buffer, so not moved by `.to()`) to `device`."""
        self.features = self.features.to(device)
        return self

    def _items(self, id_rows: torch.Tensor, feature_rows: torch.Tensor) -> torch.Tensor:
        return torch.cat([id_rows, self.content(feature_rows)], dim=1)

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """BPR loss of the triples (users[k], pos[k], neg[k]): {"loss", "bpr", "reg"}.

        Only the batch's rows are looked up and projected: the same gradient as MMRec's
        projection of every item, at a fraction of the cost.
        """
        check_negatives(neg, "vbpr")
        items = torch.cat([pos, neg])
        user_e, item_rows = self.tables.lookup(users, items)
        pos_e, neg_e = self._items(item_rows, self.features[items]).split(pos.numel())
        return bpr_loss_terms(user_e, pos_e, neg_e, (user_e, pos_e, neg_e), self.reg_weight, self.reg_type,
                              ranking=self.ranking, ids=(pos, neg))

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, 2d], item_all [I, 2d]). A collective once sharded."""
        user_all, item_rows = self.tables.lookup_all()
        return user_all, self._items(item_rows, self.features)

    @torch.no_grad()
    def final_embeddings(self, uniform_exposure: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all, item_all) for evaluation. A collective once sharded.

        `uniform_exposure` is accepted for the common interface: no exposure term here.
        """
        return self.propagate()
