"""The ranking loss (BPR, or a sampled softmax) with embedding regularisation, and BPR-MF (Rendle et al. 2009).

The loss follows MMRec (common/loss.py), whose published numbers we compare with:
``bpr = -log(1e-10 + sigmoid(s_pos - s_neg)).mean()`` and, on the batch's layer-0 ("ego")
rows of the user, the positive and the negative item, ``reg = sum_t ||E_t||_F / batch``:
a plain (not squared) Frobenius norm per block. That norm does not split over ranks: W ranks
each regularising their B/W rows sum to about sqrt(W) times the reg of one rank on B rows.
`RegType.SQUARED` (``sum_t ||E_t||_F^2 / batch``) is the variant that does split exactly, for
runs that must not depend on the number of workers.

`RankLoss.SOFTMAX` (`model.loss: softmax`) replaces the pairwise term by a sampled softmax: each
positive is scored against every distinct item of the batch (the other triples' positives and
every sampled negative), cross-entropy over dot products / temperature, as in "On the
Effectiveness of Sampled Softmax Loss for Item Recommendation" (Wu et al. 2023). Why it is here:
one negative per positive gives BPR a weak, noisy gradient on sparse data, and the batch's own
items are negatives that cost one [B, n] matrix product; a model only passes its batch's item ids.
On TikTok it fitted within a few epochs and peaked below BPR (docs/RESULTS.md), so BPR is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from models.embeddings import IdTables

_BPR_GAMMA = 1e-10  # MMRec's guard against log(0)


class RegType(str, Enum):
    """How the batch's ego embeddings are regularised."""

    MMREC = "mmrec"      # sum of Frobenius norms / batch size (MMRec's EmbLoss)
    SQUARED = "squared"  # sum of squared Frobenius norms / batch size (decomposes over ranks)


class RankLoss(str, Enum):
    """The ranking term of the loss."""

    BPR = "bpr"          # -log sigmoid(s_pos - s_neg), one sampled negative per positive (MMRec)
    SOFTMAX = "softmax"  # cross-entropy of the positive among the batch's distinct items


@dataclass(frozen=True)
class Ranking:
    """How a model turns its (user, positive, negative) scores into the ranking term."""

    loss: RankLoss | str = RankLoss.BPR
    temperature: float = 1.0  # softmax logits are dot products / temperature

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", RankLoss(self.loss))
        if not self.temperature > 0:
            raise ValueError(f"model.softmax_temperature must be > 0, got {self.temperature}")


def softmax_terms(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, pos_ids: torch.Tensor,
                  neg_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-triple sampled-softmax loss [B]: -log softmax of row b's positive among the batch's distinct items.

    An item occurring several times in the batch (a popular positive, a negative that is also
    some row's positive) is one candidate, not several: a copy of the positive scored as a
    negative would push the positive against itself. Candidates are the rows of each item's first
    occurrence; every occurrence of an item carries the same representation, so its gradient
    reaches the same parameters as through the other copies.
    """
    ids = torch.cat([pos_ids, neg_ids])
    unique, inverse = torch.unique(ids, return_inverse=True)
    n = ids.numel()
    first = torch.full((unique.numel(),), n, dtype=torch.long, device=ids.device).scatter_reduce(
        0, inverse, torch.arange(n, device=ids.device), reduce="amin")
    candidates = torch.cat([pos, neg]).index_select(0, first)
    # 1/tau scales the [B, d] users, not the [B, n] logits (same value, a fraction of the work).
    logits = (user * (1.0 / temperature)) @ candidates.t()
    return F.cross_entropy(logits, inverse[:pos_ids.numel()], reduction="none")


@torch.no_grad()
def hardest_negatives(user: torch.Tensor, item_all: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Dynamic negative sampling (Zhang et al., SIGIR 2013): per row b, the candidate of `candidates`
    [B, M] that row b's user `user` [B, d] scores highest against `item_all` [I, d]; returns [B] ids.

    Why: with uniform negatives most BPR pairs are already ranked right after a few epochs and give
    almost no gradient; the currently hardest of M uniform draws keeps the pairs informative. The
    choice is not differentiated (a sampling step); ties go to the first candidate.
    """
    rows = item_all.index_select(0, candidates.reshape(-1)).reshape(*candidates.shape, -1)
    best = torch.einsum("bd,bmd->bm", user, rows).argmax(dim=1, keepdim=True)
    return candidates.gather(1, best).squeeze(1)


def check_negatives(neg: torch.Tensor, model: str) -> None:
    """Refuse candidate pools ([B, M], `train.negative_candidates` > 1) in a model that cannot score them."""
    if neg.dim() != 1:
        raise ValueError(f"{model}: train.negative_candidates > 1 (negatives of shape {tuple(neg.shape)}) needs "
                         "model.name lightgcn, freedom or causal, with graph_mode full")


def triple_rows(user_all: torch.Tensor, item_all: torch.Tensor, users: torch.Tensor, pos: torch.Tensor,
                neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(user_all[users], item_all[pos], item_all[neg]) by `index_select`, the items in one call.

    Not `t[idx]`: advanced indexing's backward sorts the indices (index_put with accumulation), slower
    on CPU than index_select's index_add; on full-graph steps these gathers run every step.
    """
    item_pos, item_neg = item_all.index_select(0, torch.cat([pos, neg])).split(pos.numel())
    return user_all.index_select(0, users), item_pos, item_neg


def bpr_loss_terms(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, ego: tuple[torch.Tensor, ...],
                   reg_weight: float, reg_type: RegType | str = RegType.MMREC,
                   margin: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                   ranking: Ranking = Ranking(),
                   ids: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{"loss", "bpr", "reg"} for scoring rows `user`, `pos`, `neg` ([B, d] each).

    `ego` holds the layer-0 rows of the same triples that the regulariser sees; "reg" is
    reported unweighted and "loss" = bpr + reg_weight * reg; "bpr" is the ranking term, BPR or
    (`ranking.loss` softmax) the sampled softmax of `softmax_terms`, which needs the item `ids`
    (positives, negatives) of the rows. `margin` [B], if given, is added to each
    positive-minus-negative score difference (an extra training-only score term; BPR only).
    `weight` [B], if given, makes "bpr" the weighted mean over the triples (the regulariser is
    unchanged).
    """
    batch = user.shape[0]
    if ranking.loss is RankLoss.SOFTMAX:
        if margin is not None:
            raise ValueError("a training-only score margin (exposure term, user content) needs model.loss: bpr")
        if ids is None:
            raise ValueError("model.loss: softmax needs the item ids of the positive and negative rows")
        terms = softmax_terms(user, pos, neg, ids[0], ids[1], ranking.temperature)
    else:
        diff = (user * pos).sum(-1) - (user * neg).sum(-1)
        if margin is not None:
            diff = diff + margin
        terms = -torch.log(_BPR_GAMMA + torch.sigmoid(diff))
    bpr = terms.mean() if weight is None else (weight * terms).sum() / weight.sum().clamp_min(1e-12)
    if RegType(reg_type) is RegType.MMREC:
        reg = sum(torch.linalg.norm(e) for e in ego) / batch
    else:
        reg = sum(e.square().sum() for e in ego) / batch
    return {"loss": bpr + reg_weight * reg, "bpr": bpr, "reg": reg}


class BPRMF(nn.Module):
    """Matrix factorisation trained with BPR: the score is the dot product of the ID rows.

    Same interface as `LightGCN` without propagation. Training looks up only the ids of the
    batch (the rows the loss touches), so with fused kernels only those rows are updated; the
    gradient equals that of a lookup of every row.
    """

    def __init__(self, tables: IdTables, reg_weight: float, reg_type: RegType | str = RegType.MMREC,
                 ranking: Ranking = Ranking()) -> None:
        super().__init__()
        self.tables = tables
        self.reg_weight = reg_weight
        self.reg_type = RegType(reg_type)
        self.ranking = ranking

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """BPR loss of the triples (users[k], pos[k], neg[k]): {"loss", "bpr", "reg"}."""
        check_negatives(neg, "bprmf")
        user_e, item_e = self.tables.lookup(users, torch.cat([pos, neg]))
        pos_e, neg_e = item_e.split(pos.numel())
        return bpr_loss_terms(user_e, pos_e, neg_e, (user_e, pos_e, neg_e), self.reg_weight, self.reg_type,
                              ranking=self.ranking, ids=(pos, neg))

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All user and item representations: the ego rows themselves."""
        return self.tables.lookup_all()

    @torch.no_grad()
    def final_embeddings(self, uniform_exposure: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_all [U, d], item_all [I, d]) for evaluation. A collective once sharded.

        `uniform_exposure` is accepted for the common interface: no exposure term here.
        """
        return self.propagate()
