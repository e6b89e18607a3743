"""The causal-inspired multimodal recommender: the modules of docs/MODEL.md wired on a LightGCN backbone.

    h_u = ẽ_u + h_u^fd,   h_i = ẽ_i + x_i^bd + h_i^fd,   ŷ_ui = <h_u, h_i>
    L = L_BPR + λ_reg reg + λ_diff L_diff + λ_orth L_orth + λ_vq L_commit + λ_topo L_topo

ẽ: LightGCN layer mean of the ID tables; x^bd: the back-door-adjusted content (projection ->
cross-modal diffusion -> hierarchical VQ codebook -> prior-weighted attention over all codes);
h^fd: the front-door term (mediator propagated on the reconstructed causal subgraph, plus the
cross-sample attention over the codebook). Every module has an `enabled` switch; with all of
them off the content term is the plain mean of the modality projections.

Full-graph training by default, like the backbone: each step computes every user's and item's
representation, every rank identically (the content path is dense and replicated; only the ID
tables are sharded), and scores its own share of the batch. With `backbone.graph_mode: sampled`
each rank computes only its batch's sampled neighbourhoods and items (models/causal_sampled.py),
for catalogs where a full step per batch is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from data_loaders.graph import CSR
from models.backdoor import Backdoor, BackdoorConfig
from models.causal_sampled import check_sampled_config, sampled_forward
from models.bpr import Ranking, RankLoss, RegType, bpr_loss_terms, check_negatives, hardest_negatives, triple_rows
from models.contrast import ContrastConfig, IdContrastConfig, cross_view_loss, noisy_view_loss
from models.diffusion import CrossModalDiffusion, DiffusionConfig
from models.embeddings import IdTables
from models.exposure import ExposureConfig, ExposureTerm
from models.frontdoor import FrontDoor, FrontdoorConfig
from models.lightgcn import LightGCN, LightGCNConfig
from models.projection import ModalityProjection, ProjectionConfig
from models.views import Views, ViewsConfig


@dataclass
class CausalConfig:
    """`model.causal.*`: the causal model's modules (backbone size: `model.num_layers`, `model.embedding_dim`)."""

    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    backdoor: BackdoorConfig = field(default_factory=BackdoorConfig)
    frontdoor: FrontdoorConfig = field(default_factory=FrontdoorConfig)
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    id_contrast: IdContrastConfig = field(default_factory=IdContrastConfig)
    exposure: ExposureConfig = field(default_factory=ExposureConfig)
    backbone: LightGCNConfig = field(default_factory=LightGCNConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    profile_fanout: int = field(default=20, metadata={"doc": (
        "With backbone.graph_mode: sampled, at most this many of a batch user's training items (uniform, without "
        "replacement, drawn every step) make its content profile c_u, an unbiased estimate of the mean over all "
        "of them; >= the largest user degree is exact (docs/MODEL.md §5b).")})
    gate_init: float = field(default=0.0, metadata={"doc": (
        "Initial value of the learnable scalar gates g_bd, g_fd that scale the back-door and front-door terms in "
        "the score (ReZero-style): 0 starts the model as its LightGCN backbone and lets training decide how much "
        "of each term to use; unscaled content terms swamp the small ID rows at the start and overfit "
        "(docs/MODEL.md §5). On TikTok, 0.3 lowered best valid Recall@20 by 0.0114, on each of seeds 16-21 "
        "(docs/RESULTS.md, \"TikTok: the gates' start and the orthogonality penalty\").")})
    content_in_score: bool = field(default=True, metadata={"doc": (
        "x^bd enters the item's score (the design). false: the back-door-adjusted content shapes the model only "
        "through the front-door (edge scores of the causal subgraph, the cross-sample dictionary) and the "
        "contrastive view; g_bd is then fixed at 0.")})
    user_content_in_score: bool = field(default=False, metadata={"doc": (
        "The user's content view enters h_u with its own gate g_uc (initialised at gate_init): h_u = ẽ_u + g_fd h_u^fd "
        "+ g_uc c_u, c_u = mean x^bd of the user's training items (as the edge scorer and the contrastive view use "
        "it). Without it the score meets content only as <h_u, x_i^bd>, an ID row against content; with it, also "
        "content against content, which is how an item with no training edge can be reached from what the user "
        "watched (docs/MODEL.md §5).")})
    eval_chunk_items: int = field(default=65536, metadata={"doc": (
        "Items per chunk of the content path (projection -> diffusion -> back-door) when no gradient is needed "
        "(the start-of-epoch refreshes, evaluation): its activations are O(chunk x d) instead of O(items x d), "
        "which bounds memory at catalog scale; the rows are the same (eval mode is row-wise). 0 = all at once.")})
    detach_content: bool = field(default=False, metadata={"doc": (
        "The ranking loss does not train the content path (projections, diffusion, codebook attention): x^bd "
        "enters the score detached and learns only from its own losses (diffusion, VQ, contrast). The content "
        "MLPs see every item every step and can memorise the training pairs. Not for TikTok: over seeds 16-21 "
        "it lowered best valid Recall@20 by 0.0039 (docs/RESULTS.md, \"TikTok: the content path out of the "
        "ranking loss\").")})


@dataclass
class Representations:
    """Everything one full forward computes; kept together for the loss, evaluation and explain."""

    ego_user: torch.Tensor   # layer-0 ID rows [U, d]
    ego_item: torch.Tensor   # [I, d]
    id_user: torch.Tensor    # ẽ_u, backbone layer mean [U, d]
    id_item: torch.Tensor    # ẽ_i [I, d]
    backdoor_item: torch.Tensor  # x_i^bd [I, d]
    frontdoor_user: torch.Tensor  # h_u^fd [U, d]
    frontdoor_item: torch.Tensor  # h_i^fd [I, d]
    confounder: torch.Tensor     # ẑ_i [I, d]
    content_item: torch.Tensor   # x_i^bd with its gradient (backdoor_item may be detached)
    mediator_user: torch.Tensor | None  # m_u [U, d] (None with the front-door off)
    mediator_item: torch.Tensor | None  # m_i [I, d]
    losses: dict[str, torch.Tensor]

    gate_backdoor: torch.Tensor | float = 1.0   # g_bd
    gate_frontdoor: torch.Tensor | float = 1.0  # g_fd
    content_user: torch.Tensor | None = None    # c_u [U, d] in h_u (causal.user_content_in_score), else None
    gate_user_content: torch.Tensor | float = 0.0  # g_uc
    view_user: torch.Tensor | None = None  # v_u / ||v_u|| [U, d] (causal.views), else None
    view_item: torch.Tensor | None = None  # v_i / ||v_i|| [I, d]
    gate_views: torch.Tensor | float = 1.0  # g_v

    @property
    def user(self) -> torch.Tensor:
        user = self.id_user + self.gate_frontdoor * self.frontdoor_user
        if self.view_user is not None:
            user = user + self.gate_views * self.view_user
        return user if self.content_user is None else user + self.gate_user_content * self.content_user

    @property
    def item(self) -> torch.Tensor:
        item = self.id_item + self.gate_backdoor * self.backdoor_item + self.gate_frontdoor * self.frontdoor_item
        return item if self.view_item is None else item + self.gate_views * self.view_item


class CausalRec(nn.Module):
    """Causal-inspired multimodal recommender (same interface as `LightGCN`).

    Args:
        tables: the ID tables (sharded later by trainer/sharding.py).
        num_layers: backbone LightGCN layers.
        adjacency: normalised user-item adjacency (see `LightGCN`); None with `backbone.graph_mode: sampled`.
        features: raw item features per modality, row i = item i (>= 2 modalities for diffusion).
        train: the training graph (its edges are the front-door's candidate causal edges).
        reg_weight, reg_type: the ego-embedding regulariser (as in LightGCN).
        ranking: the ranking term (BPR or sampled softmax, see `models.bpr`); the softmax has no
            pairwise margin, so it excludes the exposure term and the user content in the score.
        cfg: `CausalConfig`.
        seed: the run's seed (the sampled mode's per-step neighbour samples derive from it).
    """

    def __init__(self, tables: IdTables, *, num_layers: int, adjacency: torch.Tensor | None,
                 features: dict[str, torch.Tensor], train: CSR, reg_weight: float,
                 reg_type: RegType | str = RegType.MMREC, cfg: CausalConfig | None = None, seed: int = 0,
                 ranking: Ranking = Ranking()) -> None:
        super().__init__()
        cfg = cfg or CausalConfig()
        if ranking.loss is RankLoss.SOFTMAX and (cfg.exposure.mode != "none" or cfg.user_content_in_score):
            # Both enter the loss as a correction of the positive-minus-negative score difference.
            raise ValueError(f"model.loss: softmax cannot train model.causal.exposure.mode="
                             f"{cfg.exposure.mode!r} or user_content_in_score={cfg.user_content_in_score} "
                             f"(pairwise score corrections); use model.loss: bpr")
        if not features:
            raise ValueError("CausalRec needs item content features (a dataset with modalities)")
        if cfg.eval_chunk_items < 0:
            raise ValueError(f"model.causal.eval_chunk_items must be >= 0 (0 = all items at once), "
                             f"got {cfg.eval_chunk_items}")
        self.sampled = cfg.backbone.graph_mode == "sampled"
        if self.sampled:
            cfg = check_sampled_config(cfg)  # and every rank quantises different items: sum the EMA statistics
        self.cfg = cfg
        self.backbone = LightGCN(tables.num_users, tables.num_items, tables.dim, num_layers,
                                 None if self.sampled else adjacency, tables, reg_weight=reg_weight,
                                 reg_type=reg_type, cfg=cfg.backbone, train=train, seed=seed, ranking=ranking)
        dim = tables.dim
        names = sorted(features)
        self.projection = ModalityProjection({m: features[m].shape[1] for m in names}, dim, cfg.projection)
        # Content features are data, rebuilt from the dataset: a plain attribute like the adjacency.
        # Kept already normalised (the parameter-free part of the projection's input norm, computed
        # once): every step projects them with `normalized=True`, and only one copy is held.
        self.inputs = self.projection.normalize({m: features[m].float() for m in names})
        self.diffusion = CrossModalDiffusion(names, dim, cfg.diffusion)
        self.backdoor = Backdoor(dim, cfg.backdoor)
        edge_user = torch.from_numpy(train.row_ids()).long()
        edge_item = torch.from_numpy(train.indices).long()
        self.frontdoor = FrontDoor(tables.num_users, tables.num_items, edge_user, edge_item, dim, cfg.frontdoor,
                                   chunk_edges=cfg.backbone.eval_chunk_edges if self.sampled else None)
        self.exposure = ExposureTerm(torch.bincount(edge_item, minlength=tables.num_items), cfg.exposure)
        # Registered only when used: checkpoints of other configs are unchanged.
        self.views = (Views(tables.num_users, tables.num_items, dim, train, features, cfg.views, tables.device,
                            gate_init=cfg.gate_init) if cfg.views.enabled else None)
        self.gate_backdoor = nn.Parameter(torch.tensor(float(cfg.gate_init)), requires_grad=cfg.content_in_score)
        if not cfg.content_in_score:
            self.gate_backdoor.data.zero_()
        self.gate_frontdoor = nn.Parameter(torch.tensor(float(cfg.gate_init)))
        if cfg.user_content_in_score:  # registered only when used: checkpoints of other configs are unchanged
            self.gate_user_content = nn.Parameter(torch.tensor(float(cfg.gate_init)))
        self.to_device(tables.device)

    @property
    def tables(self) -> IdTables:
        # The backbone owns the tables; registering them here too would give DMP two paths to
        # one collection ("optimizer already collected") and the state dict two copies.
        return self.backbone.tables

    def to_device(self, device: torch.device | str) -> "CausalRec":
        self.backbone.to_device(device)
        self.inputs = {m: f.to(device) for m, f in self.inputs.items()}
        self.frontdoor.to(device)
        self.exposure.to(device)
        if self.views is not None:
            self.views.to_device(device)
        return self

    @torch.no_grad()
    def content_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ẑ [I, d], x^bd [I, d]) of every item, the content path run on `eval_chunk_items` items at a
        time. Call in eval mode: in training mode each chunk would take an EMA step."""
        num_items = next(iter(self.inputs.values())).shape[0]
        chunk = self.cfg.eval_chunk_items if self.cfg.eval_chunk_items > 0 else num_items
        confounder, x_bd = [], []
        for start in range(0, num_items, chunk):
            rows = {m: f[start:start + chunk] for m, f in self.inputs.items()}
            diff = self.diffusion(self.projection(rows, normalized=True), compute_loss=False)
            confounder.append(diff.confounder)
            x_bd.append(self.backdoor(diff.content, diff.confounder).x_bd)
        return torch.cat(confounder), torch.cat(x_bd)

    def represent(self, rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> Representations:
        """One full forward over every user and item (a collective once the tables are sharded).

        Without a gradient (evaluation) the content path runs in chunks and no losses are formed.
        `rows` = (distinct user ids, distinct item ids) a training step will read: the front-door
        head runs on those rows only (`FrontDoor.forward`), so `user`/`item` are exact there and
        lack h^fd elsewhere.
        """
        ego_user, ego_item = self.tables.lookup_all()
        id_user, id_item = self.backbone._layer_mean(ego_user, ego_item)
        if torch.is_grad_enabled():
            diff = self.diffusion(self.projection(self.inputs, normalized=True))
            bd = self.backdoor(diff.content, diff.confounder)
            confounder, x_bd = diff.confounder, bd.x_bd
            losses = {"diffusion": diff.loss, "vq": bd.loss, **{f"diff/{k}": v for k, v in diff.terms.items()},
                      **{f"vq/{k}": v for k, v in bd.terms.items()}}
        else:
            (confounder, x_bd), losses = self.content_rows(), {}
        scored = x_bd.detach() if self.cfg.detach_content and self.training else x_bd
        mediator_items = scored if self.cfg.frontdoor.mediator_items == "content" else ego_item
        fd = self.frontdoor(ego_user, mediator_items, self.frontdoor_dictionary(), rows=rows)
        content_user, gate_uc = None, 0.0
        if self.cfg.user_content_in_score:
            content_user, gate_uc = self.frontdoor.user_content(scored), self.gate_user_content
        view_user, view_item = self.views() if self.views is not None else (None, None)
        gate_views = self.views.gate if self.views is not None and self.views.gate is not None else 1.0
        return Representations(ego_user, ego_item, id_user, id_item, scored, fd.user, fd.item,
                               confounder, x_bd, fd.mediator_user, fd.mediator_item, losses, self.gate_backdoor,
                               self.gate_frontdoor, content_user, gate_uc, view_user, view_item, gate_views)

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss", "bpr", "reg", "diffusion", "vq", "topo", ...} for the triples (users, pos, neg)."""
        if self.sampled:
            check_negatives(neg, "causal with backbone.graph_mode sampled")
            return sampled_forward(self, users, pos, neg)
        # The front-door head only on the rows the loss reads: the batch's distinct users and items
        # (with candidate pools, every candidate: the hardest is picked by the full score).
        r = self.represent(rows=(torch.unique(users), torch.unique(torch.cat([pos, neg.reshape(-1)]))))
        if neg.dim() == 2:  # train.negative_candidates: keep each row's hardest by <h_u, h_i>
            neg = hardest_negatives(r.user.index_select(0, users), r.item, neg)
        rows = triple_rows(r.user, r.item, users, pos, neg)
        margin = self.exposure(pos) - self.exposure(neg) if self.exposure.enabled else None
        if r.content_user is not None:
            loo = self._leave_one_out(r, users, pos, rows[1])
            margin = loo if margin is None else margin + loo
        out = bpr_loss_terms(*rows, triple_rows(r.ego_user, r.ego_item, users, pos, neg),
                             self.backbone.reg_weight, self.backbone.reg_type, margin=margin,
                             weight=self.frontdoor.bpr_pair_weight(users, pos), ranking=self.backbone.ranking,
                             ids=(pos, neg))
        content = r.content_item
        user_content = self.frontdoor.user_content(content)
        topo = self.frontdoor.topology_loss(users, pos, neg, user_content, content, r.id_user, r.id_item)
        if self.cfg.contrast.view == "mediator" and r.mediator_user is not None:
            view_user, view_item = r.mediator_user, r.mediator_item
        else:
            view_user, view_item = user_content, content
        cl = cross_view_loss(self.cfg.contrast, users, torch.cat([pos, neg]), r.id_user, view_user,
                             r.id_item, view_item)
        out["loss"] = out["loss"] + r.losses["diffusion"] + r.losses["vq"] + topo + cl
        if self.cfg.id_contrast.loss_weight:
            out["id_contrast"] = noisy_view_loss(self.cfg.id_contrast, self.backbone._full_mm,
                                                 torch.cat([r.ego_user, r.ego_item]), self.backbone.num_users,
                                                 self.backbone.num_layers, users, torch.cat([pos, neg]))
            out["loss"] = out["loss"] + out["id_contrast"]
        out.update(r.losses)
        out["topo"] = topo
        out["contrast"] = cl
        if self.views is not None:
            out["views"] = self.views.loss(users, torch.cat([pos, neg]), r.user, r.view_user, r.item, r.view_item)
            out["loss"] = out["loss"] + out["views"]
        return out

    def _leave_one_out(self, r: Representations, users: torch.Tensor, pos: torch.Tensor,
                       pos_item: torch.Tensor) -> torch.Tensor:
        """Score correction [B] that takes the positive out of its own user's content profile.

        c_u averages the content of u's training items, the positive among them: scored as is,
        <c_u, x_pos> contains ||x_pos||^2 / deg_u, which the model raises by growing content norms
        (the training pair predicts itself; valid fell to a third within five epochs on TikTok).
        The positive is scored with c_u^-pos = (deg_u c_u - x_pos) / (deg_u - 1) (0 when it is the
        user's only item), i.e. the score changes by -g_uc <c_u - c_u^-pos, h_pos>. Negatives are
        not in the profile, and evaluation (whose held-out items never are) uses c_u itself.
        """
        deg = self.frontdoor.user_degree()[users].to(pos_item.dtype).unsqueeze(1)
        c_u, x_pos = r.content_user[users], r.backdoor_item[pos]
        removed = torch.where(deg > 1, (x_pos - c_u) / (deg - 1).clamp_min(1), c_u)  # c_u - c_u^-pos
        return -r.gate_user_content * (removed * pos_item).sum(-1)

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> dict[str, float | list[int]]:
        """Per-epoch refreshes, in eval mode (no EMA step): code prior over all items, causal subgraph.

        Identical on every rank: the inputs are the full replicated representations.
        """
        self.backbone.start_epoch(epoch)  # the epoch's neighbour samples (sampled mode)
        was_training = self.training
        self.eval()
        try:
            # What the refreshes read, without the front-door's full forward (not needed here).
            ego_user, ego_item = self.tables.lookup_all()
            id_user, id_item = self.backbone._layer_mean(ego_user, ego_item)
            del ego_user, ego_item
            confounder, item_content = self.content_rows()
            stats: dict[str, float | list[int]] = {}
            if self.cfg.backdoor.enabled:
                self.backdoor.start_epoch(epoch)
                if self.cfg.backdoor.refits_in(epoch):
                    self.backdoor.refit_(confounder, epoch)
                    stats["codebook/refit"] = 1.0
                self.backdoor.refresh_prior(confounder)
                self.backdoor.warn_if_collapsed(epoch)
                stats.update({f"codebook/{k}": v for k, v in self.backdoor.usage_stats().items()})
                # Per-code counts are lists: trackers log only scalars; the history keeps them for plots.
                stats.update({f"codebook/{k}_counts": v for k, v in self.backdoor.usage_counts().items()})
            del confounder
            user_content = self.frontdoor.user_content(item_content)
            if self.frontdoor.maybe_refresh(epoch, user_content, item_content, id_user, id_item):
                stats["frontdoor/kept_fraction"] = float(self.frontdoor.kept.float().mean())
                stats["frontdoor/mean_kept_weight"] = float(self.frontdoor.weight[self.frontdoor.kept].mean())
            if self.frontdoor_dictionary() is None and self.cfg.frontdoor.enabled and self.cfg.frontdoor.cross_sample:
                self.frontdoor.refresh_dictionary(item_content)
            return stats
        finally:
            self.train(was_training)

    def frontdoor_dictionary(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cross-sample term's dictionary: the back-door's coarse codes, or None = the front-door's own centroids."""
        return self.backdoor.dictionary() if self.cfg.frontdoor.dictionary == "codebook" else None

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.represent()
        return r.user, r.item

    @torch.no_grad()
    def final_embeddings(self, uniform_exposure: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_u [U, d'], h_i [I, d']) for evaluation; call in eval mode (no EMA step).

        With an exposure term (docs/MODEL.md §4b) the observational score ⟨h_u, h_i⟩ + b_i is
        returned as [h_u, 1]·[h_i, b_i] (d' = d + 1): what valid and test, drawn under the same
        exposure as training, measure. ``uniform_exposure`` drops b_i: the ranking under
        do(uniform exposure), which the simulator's unbiased_test measures.
        """
        user, item = self.propagate()
        if not self.exposure.enabled or uniform_exposure:
            return user, item
        items = torch.arange(item.shape[0], device=item.device)
        return (torch.cat([user, user.new_ones(user.shape[0], 1)], 1),
                torch.cat([item, self.exposure(items).unsqueeze(1).to(item.dtype)], 1))
