"""Front-door adjustment through a causal subgraph (docs/MODEL.md §4).

1. Edge scores s_ui = sigmoid(l_ui) on training edges, l_ui = MLP([h_u ⊙ x_i ; e_u ⊙ e_i]) (`mlp`)
   or cos([h_u ; e_u], [x_i ; e_i]) / tau (`cosine`); h_u is the user's content (by default the
   mean x of its training items), x_i the item's back-door-adjusted content. The scorer learns
   from L_topo: the batch's observed edges against its sampled non-edges (BCE by default).
2. Causal topology reconstruction: every `refresh_every` epochs after `warmup_epochs`, keep each
   user's top ceil(rho * deg_u) edges (at least 1: a user never loses its last edge) by detached
   score, weighted by the score. Before the first refresh every edge is kept with weight 1.
3. Mediator: LightGCN layer mean on the kept weighted subgraph, from the ID embeddings.
4. Cross-sample term: sum_x' P(x') P(Y | x', m) as prior-weighted attention of the mediator over a
   global dictionary (the back-door coarse codes with their prior, or item centroids), then
   h^fd = MLP([m ; x̄]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_loaders.graph import CSR
from data_loaders.neighbors import NeighborGraph
from models.backdoor import PriorAttention
from models.kmeans import lloyd
from models.lightgcn import graph_mm
from models.sparse_ops import SparseOperator


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class FrontdoorConfig:
    enabled: bool = _doc("Front-door adjustment on; off: h^fd = 0 and L_topo = 0.", True)
    topology_reconstruction: bool = _doc("Prune edges by score; false: the mediator propagates on the full "
                                         "training graph with unit weights (never refreshed).", True)
    prune_by: Literal["ratio", "threshold"] = _doc("Keep each user's top `keep_ratio` edges, or the edges with "
                                                   "score >= `score_threshold` (plus each user's best edge).", "ratio")
    keep_ratio: float = _doc("rho: fraction of each user's edges kept, ceil(rho * degree), at least 1.", 0.8)
    prune_rank: Literal["score", "item_centred"] = _doc(
        "What ranks a user's edges for `prune_by: ratio`: `score` = s_ui, `item_centred` = s_ui minus the mean "
        "score of the item's training edges (the weights stay s_ui). Why: on TikTok s_ui follows popularity (edges "
        "of items seen 1-4 times kept at 68%, of items seen 200+ times at 99.6%), so pruning by s_ui takes the "
        "tail's pairs out of the BPR loss; centring on the item asks which of a user's edges is unusual for that "
        "item, not which item is niche (docs/RESULTS.md, \"TikTok: dynamic negative sampling\", tenth round).",
        "score")
    score_threshold: float = _doc("Score s_ui in (0, 1) an edge needs with prune_by: threshold.", 0.5)
    warmup_epochs: int = _doc("Epochs (0-based) before the first topology refresh.", 5)
    refresh_every: int = _doc("Refresh the kept edges every this many epochs after the warm-up.", 5)
    score: Literal["mlp", "cosine"] = _doc("Edge scorer: `mlp` of [h_u*x_i ; e_u*e_i], or `cosine` of "
                                           "[h_u ; e_u] and [x_i ; e_i] divided by score_temperature.", "mlp")
    score_hidden: int = _doc("Hidden width of the mlp edge scorer.", 64)
    score_temperature: float = _doc("tau of the cosine scorer (logit = cos / tau).", 0.2)
    weighted: bool = _doc("Kept edges carry their score s_ui as weight; false: weight 1.", True)
    num_layers: int = _doc("LightGCN layers of the mediator propagation.", 2)
    mediator_items: Literal["id", "content"] = _doc(
        "Item rows the mediator propagates from: `id` = the items' ID rows (the design), `content` = their "
        "back-door-adjusted content x^bd (users start from their ID rows either way). With `content` what a user "
        "reaches through its causal edges is the content of the items it kept, not their ID rows, which the "
        "observed (exposure-biased) edges fitted (docs/MODEL.md §4).", "id")
    cross_sample: bool = _doc("Cross-sample term on: h^fd = MLP([m ; x̄]); off: h^fd = MLP(m).", True)
    dictionary: Literal["codebook", "centroids"] = _doc(
        "What the cross-sample term attends over: `codebook` = the back-door's coarse codes and their prior "
        "(the module's own item centroids when the back-door is off), `centroids` = the module's own k-means "
        "centroids of the item content, refreshed every epoch, even with the back-door on. Why: a coarse level "
        "that holds every item on one code makes x̄ one learned vector shared by every node (docs/RESULTS.md "
        "\"TikTok: dynamic negative sampling\", fifth round).", "codebook")
    attention_temperature: float = _doc("tau of the mediator's attention over the dictionary.", 1.0)
    num_centroids: int = _doc("Item centroids of the module's own dictionary (with `dictionary: centroids` or "
                              "the back-door codebook off); refreshed by refresh_dictionary.", 32)
    kmeans_iters: int = _doc("Lloyd iterations per refresh of the item centroids.", 10)
    out_hidden: int = _doc("Hidden width of the output MLP h^fd (output: mlp).", 128)
    output: Literal["mlp", "sum"] = _doc(
        "h^fd = `mlp`([m ; x̄]) (the design), or `sum` = m + x̄ (no output network: h^fd stays on the scale of the "
        "regularised ID rows it is propagated from; an unregularised MLP can grow the scores and fit the "
        "training pairs; docs/MODEL.md §5).", "sum")
    topo_loss: Literal["bce", "bpr"] = _doc(
        "L_topo on the batch's (user, positive, negative) triples: `bce` = -log s(u,pos) - log(1 - s(u,neg)) "
        "(calibrated scores: a threshold and the edge weights mean something), `bpr` = -log sigmoid(l_pos - l_neg) "
        "(ranking only; the scorer's output bias is then unidentified).", "bce")
    detach_scorer_inputs: bool = _doc("L_topo trains the scorer only (representations detached); false: it "
                                      "also shapes the representations it scores.", False)
    loss_weight: float = _doc("lambda_topo: weight of L_topo in the total loss.", 0.1)
    pruned_bpr_weight: float = _doc(
        "Weight, in the BPR loss, of a training pair whose edge the causal subgraph pruned (kept pairs weigh 1; "
        "the loss is the weighted mean). 1 = every observed pair trains the ranking (the design); below 1 the "
        "pruned edges, which the scorer judges accidental, also stop pulling the ID rows. From the first "
        "refresh on; L_topo still reads every pair (docs/MODEL.md §5).", 1.0)
    score_chunk: int = _doc("Edges scored at once in a refresh.", 262144)


@dataclass
class FrontdoorOutput:
    user: torch.Tensor             # h_u^fd [U, d] (with `rows`: 0 outside them)
    item: torch.Tensor             # h_i^fd [I, d]
    mediator_user: torch.Tensor | None = None  # m_u [U, d]
    mediator_item: torch.Tensor | None = None  # m_i [I, d]


def top_ratio_mask(edge_user: torch.Tensor, score: torch.Tensor, num_users: int, ratio: float) -> torch.Tensor:
    """Keep each user's ceil(ratio * deg) (>= 1) highest-scored edges; bool [E]. No loop over users.

    Sort by (user, -score) with two stable sorts, rank each edge within its user's group, compare
    with the user's quota. Ties keep the earlier edge.
    """
    by_score = torch.argsort(score, descending=True, stable=True)
    order = by_score[torch.argsort(edge_user[by_score], stable=True)]
    deg = torch.bincount(edge_user, minlength=num_users)
    start = torch.cumsum(deg, 0) - deg
    sorted_user = edge_user[order]
    rank = torch.arange(order.numel(), device=score.device) - start[sorted_user]
    # The 1e-9 absorbs float error such as 0.1 * 30 = 3.0000000000000004 -> ceil 4.
    quota = torch.ceil(deg.double() * ratio - 1e-9).long().clamp(min=1)
    mask = torch.zeros_like(edge_user, dtype=torch.bool)
    mask[order] = rank < quota[sorted_user]
    return mask


def item_centred(edge_item: torch.Tensor, score: torch.Tensor, num_items: int) -> torch.Tensor:
    """Each edge's score minus the mean score of its item's edges ([E]; an item's only edge gets 0)."""
    total = torch.zeros(num_items, dtype=score.dtype, device=score.device).index_add_(0, edge_item, score)
    count = torch.bincount(edge_item, minlength=num_items).to(score.dtype)
    return score - (total / count.clamp(min=1))[edge_item]


def best_edge_mask(edge_user: torch.Tensor, score: torch.Tensor, num_users: int) -> torch.Tensor:
    """Each user's single best edge (so that thresholding never isolates a user)."""
    return top_ratio_mask(edge_user, score, num_users, 0.0)


def normalized_adjacency(edge_user: torch.Tensor, edge_item: torch.Tensor, weight: torch.Tensor,
                         num_users: int, num_items: int) -> torch.Tensor:
    """D^-1/2 [[0, W], [W^T, 0]] D^-1/2, (U+I) x (U+I) coalesced sparse; zero-weight edges dropped."""
    keep = weight > 0
    u, i, w = edge_user[keep], edge_item[keep] + num_users, weight[keep].float()
    n = num_users + num_items
    deg = torch.zeros(n, device=w.device).index_add_(0, u, w).index_add_(0, i, w)
    inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    vals = w * inv[u] * inv[i]
    index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    return torch.sparse_coo_tensor(index, torch.cat([vals, vals]), (n, n), check_invariants=True).coalesce()


def layer_mean(adj: torch.Tensor | SparseOperator, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """LightGCN's mean of x, A x, ..., A^L x (A a `SparseOperator` or a torch sparse tensor)."""
    total = x
    for _ in range(num_layers):
        x = adj @ x
        total = total + x
    return total / (num_layers + 1)


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids [k, d], cluster sizes [k]) by Lloyd's algorithm from k random rows (empty clusters keep theirs)."""
    k = min(k, x.shape[0])
    return lloyd(x, x[torch.randperm(x.shape[0], device=x.device)[:k]].clone(), iters)


class FrontDoor(nn.Module):
    """Edge scorer, causal subgraph, mediator and cross-sample term on a fixed training graph.

    Args:
        num_users, num_items: graph sizes.
        edge_user, edge_item: the training edges (int64 [E]; e.g. CSR row ids and indices).
        dim: d.
        cfg: `FrontdoorConfig`.
        chunk_edges: None: the full mediator propagates with the cached normalised adjacency of the
            kept subgraph; a number: in row blocks of about this many entries of `kept_graph()`
            (the causal model's sampled mode, where no (U+I) x (U+I) matrix is built).
    """

    def __init__(self, num_users: int, num_items: int, edge_user: torch.Tensor, edge_item: torch.Tensor,
                 dim: int, cfg: FrontdoorConfig | None = None, chunk_edges: int | None = None) -> None:
        super().__init__()
        cfg = cfg or FrontdoorConfig()
        if not 0 < cfg.keep_ratio <= 1 or cfg.refresh_every < 1 or not 0 <= cfg.pruned_bpr_weight <= 1:
            raise ValueError(f"FrontDoor: need 0 < keep_ratio <= 1, refresh_every >= 1 and "
                             f"0 <= pruned_bpr_weight <= 1, got {cfg}")
        if cfg.prune_rank != "score" and cfg.prune_by != "ratio":
            raise ValueError(f"FrontDoor: prune_rank {cfg.prune_rank!r} ranks edges for prune_by 'ratio'; "
                             f"prune_by {cfg.prune_by!r} thresholds the raw score")
        self.cfg, self.dim, self.num_users, self.num_items = cfg, dim, num_users, num_items
        # The graph comes from the dataset: not checkpointed. The kept mask and weights are.
        self.register_buffer("edge_user", edge_user.long(), persistent=False)
        self.register_buffer("edge_item", edge_item.long(), persistent=False)
        e = edge_user.numel()
        self.register_buffer("kept", torch.ones(e, dtype=torch.bool))
        self.register_buffer("weight", torch.ones(e))
        self.register_buffer("score", torch.full((e,), float("nan")))  # last refresh's s_ui (NaN: never)
        self.register_buffer("last_refresh", torch.tensor(-1))
        self._adj: SparseOperator | None = None  # cache, rebuilt after a refresh / load / device move
        self._user_mean: SparseOperator | None = None  # D^-1 R of user_content, built on first use
        self._kept_graph: NeighborGraph | None = None  # kept subgraph for chunked evaluation, built on first use
        self.version = 0  # bumped whenever the kept edges or weights may have changed (caches key on it)
        self._edge_keys: tuple[torch.Tensor, torch.Tensor] | None = None  # sorted (user, item) keys, their edge ids
        self.chunk_edges = chunk_edges
        self.register_load_state_dict_post_hook(lambda module, keys: module._invalidate())
        if not cfg.enabled:
            return
        if cfg.score == "mlp":
            self.scorer = nn.Sequential(nn.Linear(2 * dim, cfg.score_hidden), nn.LeakyReLU(),
                                        nn.Linear(cfg.score_hidden, 1))
        if cfg.cross_sample:
            self.attention = PriorAttention(dim, cfg.attention_temperature)
            self.register_buffer("centroids", torch.zeros(cfg.num_centroids, dim))
            self.register_buffer("centroid_prior", torch.zeros(cfg.num_centroids))  # zeros: not computed yet
        if cfg.output == "mlp":
            self.out = nn.Sequential(nn.Linear((2 if cfg.cross_sample else 1) * dim, cfg.out_hidden), nn.LeakyReLU(),
                                     nn.Linear(cfg.out_hidden, dim))

    # ---- edge scores and their loss -------------------------------------------------------------
    def edge_logits(self, users: torch.Tensor, items: torch.Tensor, user_content: torch.Tensor,
                    item_content: torch.Tensor, user_id: torch.Tensor, item_id: torch.Tensor) -> torch.Tensor:
        """l_ui [B] for pairs (users[b], items[b]); s_ui = sigmoid(l_ui). Inputs are full tables [U|I, d]."""
        hu, eu = user_content.index_select(0, users), user_id.index_select(0, users)
        xi, ei = item_content.index_select(0, items), item_id.index_select(0, items)
        if self.cfg.detach_scorer_inputs:
            hu, xi, eu, ei = hu.detach(), xi.detach(), eu.detach(), ei.detach()
        if self.cfg.score == "mlp":
            return self.scorer(torch.cat([hu * xi, eu * ei], dim=-1)).squeeze(-1)
        cos = F.cosine_similarity(torch.cat([hu, eu], -1), torch.cat([xi, ei], -1), dim=-1, eps=1e-8)
        return cos / self.cfg.score_temperature

    def topology_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, user_content: torch.Tensor,
                      item_content: torch.Tensor, user_id: torch.Tensor, item_id: torch.Tensor) -> torch.Tensor:
        """loss_weight * L_topo on the batch's triples (observed edge vs sampled non-edge; see `topo_loss`)."""
        if not self.cfg.enabled or self.cfg.loss_weight == 0:
            return user_id.new_zeros(())
        # One scorer call on the positives and negatives together (fewer, larger ops).
        lp, ln = self.edge_logits(users.repeat(2), torch.cat([pos, neg]), user_content, item_content, user_id,
                                  item_id).split(pos.numel())
        if self.cfg.topo_loss == "bpr":
            loss = F.softplus(ln - lp).mean()
        else:  # -log sigmoid(lp) - log(1 - sigmoid(ln)), in the numerically stable softplus form
            loss = (F.softplus(-lp) + F.softplus(ln)).mean()
        return self.cfg.loss_weight * loss

    def bpr_pair_weight(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor | None:
        """Per-pair BPR weight [B] (`pruned_bpr_weight` for pruned edges, 1 otherwise), or None when it
        changes nothing: the option at 1, the module off, or no refresh yet (every edge kept).

        A pair that is not a training edge (none should be) counts as kept."""
        w = self.cfg.pruned_bpr_weight
        if not self.cfg.enabled or w == 1.0 or int(self.last_refresh) < 0:
            return None
        if self._edge_keys is None or self._edge_keys[0].device != self.edge_user.device:
            # The training edges never change (only which are kept), so this is built once.
            self._edge_keys = (self.edge_user * self.num_items + self.edge_item).sort()
        keys, edge = self._edge_keys
        query = users.to(keys.device) * self.num_items + items.to(keys.device)
        at = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
        kept = torch.where(keys[at] == query, self.kept[edge[at]], torch.ones_like(query, dtype=torch.bool))
        return torch.where(kept, 1.0, w).to(users.device)

    def user_degree(self) -> torch.Tensor:
        """Training edges per user [U] (int64)."""
        return torch.bincount(self.edge_user, minlength=self.num_users)

    def user_content(self, item_content: torch.Tensor) -> torch.Tensor:
        """h_u = mean of x_i over the user's training edges [U, d] (0 for a user without edges)."""
        if self._user_mean is None or self._user_mean.device != item_content.device:
            # The row-normalised users x items training matrix, built once: h = (D^-1 R) x.
            deg = torch.bincount(self.edge_user, minlength=self.num_users).clamp_min(1).float()
            index = torch.stack([self.edge_user, self.edge_item]).to(item_content.device)
            mean = torch.sparse_coo_tensor(index, (1.0 / deg)[self.edge_user].to(item_content.device),
                                           (self.num_users, self.num_items), check_invariants=True).coalesce()
            self._user_mean = SparseOperator(mean)
        return self._user_mean @ item_content

    # ---- topology reconstruction ------------------------------------------------------------------
    def should_refresh(self, epoch: int) -> bool:
        c = self.cfg
        return (c.enabled and c.topology_reconstruction and epoch >= c.warmup_epochs
                and (epoch - c.warmup_epochs) % c.refresh_every == 0)

    @torch.no_grad()
    def refresh(self, user_content: torch.Tensor, item_content: torch.Tensor, user_id: torch.Tensor,
                item_id: torch.Tensor) -> None:
        """Score every training edge (chunked, detached) and recompute the kept mask and weights."""
        scores = torch.cat([torch.sigmoid(self.edge_logits(u, i, user_content, item_content, user_id, item_id))
                            for u, i in zip(self.edge_user.split(self.cfg.score_chunk),
                                            self.edge_item.split(self.cfg.score_chunk))]).float()
        if self.cfg.prune_by == "ratio":
            rank_by = item_centred(self.edge_item, scores, self.num_items) if self.cfg.prune_rank == "item_centred" \
                else scores
            kept = top_ratio_mask(self.edge_user, rank_by, self.num_users, self.cfg.keep_ratio)
        else:
            kept = (scores >= self.cfg.score_threshold) | best_edge_mask(self.edge_user, scores, self.num_users)
        self.score.copy_(scores)
        self.kept.copy_(kept)
        self.weight.copy_(torch.where(kept, scores if self.cfg.weighted else torch.ones_like(scores),
                                      torch.zeros_like(scores)))
        self._invalidate()

    def _invalidate(self) -> None:
        """Drop what is derived from the kept edges (after a refresh or a checkpoint load)."""
        self._adj = None
        self._kept_graph = None
        self.version += 1

    def maybe_refresh(self, epoch: int, user_content: torch.Tensor, item_content: torch.Tensor,
                      user_id: torch.Tensor, item_id: torch.Tensor) -> bool:
        """Refresh when the schedule says so for this epoch (once per epoch); True if it did."""
        if not self.should_refresh(epoch) or int(self.last_refresh) == epoch:
            return False
        self.refresh(user_content, item_content, user_id, item_id)
        self.last_refresh.fill_(epoch)
        return True

    def adjacency(self) -> SparseOperator:
        """The normalised adjacency of the kept weighted subgraph (cached between refreshes)."""
        if self._adj is None or self._adj.device != self.weight.device:
            self._adj = SparseOperator(normalized_adjacency(self.edge_user, self.edge_item, self.weight,
                                                  self.num_users, self.num_items))
        return self._adj

    # ---- dictionary, mediator, output -------------------------------------------------------------
    @torch.no_grad()
    def refresh_dictionary(self, item_content: torch.Tensor) -> None:
        """Item centroids by k-means and their prior (cluster sizes), for when no codebook is given."""
        if not (self.cfg.enabled and self.cfg.cross_sample):
            return
        cent, sizes = kmeans(item_content.detach().float(), self.cfg.num_centroids, self.cfg.kmeans_iters)
        self.centroids.zero_()
        self.centroid_prior.zero_()
        self.centroids[:cent.shape[0]] = cent
        self.centroid_prior[:cent.shape[0]] = sizes / sizes.sum()

    def forward(self, user_ego: torch.Tensor, item_ego: torch.Tensor,
                dictionary: tuple[torch.Tensor, torch.Tensor] | None = None,
                rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> FrontdoorOutput:
        """h^fd for all users and items from the ID embeddings [U, d], [I, d].

        `dictionary` = (vectors [K, d], prior [K]) for the cross-sample term, e.g.
        `Backdoor.dictionary()`; None uses the module's own item centroids (x̄ = 0 until
        `refresh_dictionary` has run). `rows` = (user ids, item ids), distinct: the head runs on
        those rows only and h^fd is 0 elsewhere (a training step reads only its batch's rows; the
        head is row-wise, so those rows are exact). The mediator is always whole: it propagates.
        """
        if not self.cfg.enabled:
            return FrontdoorOutput(user_ego.new_zeros(user_ego.shape), item_ego.new_zeros(item_ego.shape))
        x = torch.cat([user_ego, item_ego])
        if self.chunk_edges is None:
            m = layer_mean(self.adjacency(), x, self.cfg.num_layers)
        else:  # no (U+I) x (U+I) adjacency at catalog scale: row blocks of the kept graph
            m, total = x, x
            for _ in range(self.cfg.num_layers):
                m = graph_mm(self.kept_graph(), m, self.chunk_edges)
                total = total + m
            m = total / (self.cfg.num_layers + 1)
        if rows is None:
            h = self.head(m, dictionary)
        else:
            idx = torch.cat([rows[0], self.num_users + rows[1]])
            h = torch.zeros_like(m).index_copy(0, idx, self.head(m.index_select(0, idx), dictionary))
        sizes = [self.num_users, self.num_items]  # split, not slices: one backward (see LightGCN._layer_mean)
        return FrontdoorOutput(*h.split(sizes), *m.split(sizes))

    def head(self, m: torch.Tensor, dictionary: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """h^fd from the mediator rows m [N, d] (any rows: all nodes, or a batch's)."""
        if not self.cfg.cross_sample:
            return self.out(m) if self.cfg.output == "mlp" else m
        vectors, prior = dictionary if dictionary is not None else (self.centroids, self.centroid_prior)
        if float(prior.sum()) > 0:
            x_bar = self.attention(m, vectors.detach(), prior.detach())
        else:
            x_bar = torch.zeros_like(m)
        return self.out(torch.cat([m, x_bar], dim=-1)) if self.cfg.output == "mlp" else m + x_bar

    def kept_graph(self) -> NeighborGraph:
        """The kept weighted subgraph as a neighbour graph (for chunked propagation), rebuilt after a
        refresh or a checkpoint load; O(E) numpy, no U x I array."""
        if self._kept_graph is None:
            keep = (self.weight > 0).cpu().numpy()
            csr = CSR.from_pairs(self.edge_user.cpu().numpy()[keep], self.edge_item.cpu().numpy()[keep],
                                 self.num_users, self.num_items,
                                 data=self.weight.detach().cpu().numpy()[keep].astype(np.float64))
            self._kept_graph = NeighborGraph.from_csr(csr)
        return self._kept_graph

    # ---- interpretability ---------------------------------------------------------------------------
    def edge_stats(self) -> dict[str, torch.Tensor]:
        """Per training edge: user, item, kept, weight, score (NaN before the first refresh)."""
        return {"user": self.edge_user, "item": self.edge_item, "kept": self.kept.clone(),
                "weight": self.weight.clone(), "score": self.score.clone()}


def pruning_metrics(kept: torch.Tensor, is_noise: torch.Tensor) -> dict[str, float]:
    """Precision / recall of "a pruned edge is a noise edge" (the simulator's `is_noise` column)."""
    pruned, noise = ~kept.bool(), is_noise.bool()
    hit = float((pruned & noise).sum())
    return {"pruned_fraction": float(pruned.float().mean()) if kept.numel() else 0.0,
            "precision": hit / max(float(pruned.sum()), 1.0),
            "recall": hit / max(float(noise.sum()), 1.0)}
