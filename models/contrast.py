"""Cross-view contrastive alignment (docs/MODEL.md §6): InfoNCE between an ID view and a content view.

For the batch's distinct users and items, the collaborative (ID, backbone) representation and the
deconfounded content representation of the same node are pulled together and pushed away from the
other nodes of the batch:

    L_cl = mean_b -log( exp(<a_b, c_b> / tau) / sum_b' exp(<a_b, c_b'> / tau) ),  a, c L2-normalised,

once for users (ẽ_u vs the user's content view) and once for items (ẽ_i vs x_i^bd).

Why: the design lists cross-modal contrastive alignment as optional; here it does the work that
matters most on sparse data. Items with no or few training edges have untrained ID rows, and BPR
alone gives their content path a weak signal; aligning content with the collaborative embedding of
the *same* node (as in CLCRec-style cold-start learning) teaches the content path to predict
collaborative taste, and the in-batch negatives act as the uniformity regulariser that
SGL/SimGCL-style objectives add to BPR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class ContrastConfig:
    enabled: bool = _doc("Cross-view InfoNCE between ID and content views on; off: L_cl = 0.", True)
    temperature: float = _doc("tau of the InfoNCE logits (cosine / tau).", 0.2)
    loss_weight: float = _doc("lambda_cl: weight of L_cl (user term + item term) in the total loss.", 0.05)
    view: Literal["content", "mediator"] = _doc(
        "Second view of each node: `content` (user: mean content of its training items; item: x^bd) or "
        "`mediator` (m_u, m_i: the front-door propagation on the reconstructed causal subgraph). Not for TikTok: "
        "the mediator is a function of the ID rows, so the term's gradient reaches them and, in the first "
        "epochs, opposes the ranking loss; the model then stays at the popularity level (docs/RESULTS.md, "
        "\"TikTok: why the mediator view fails\").", "content")
    noise: float = _doc("SimGCL-style perturbation of the second view: add noise_eps * a random direction of "
                        "the same sign pattern (0: none).", 0.0)
    detach_anchor: bool = _doc("The ID view is the fixed target (detached): L_cl teaches the second view to "
                               "predict collaborative taste and cannot pull the ID rows away from the ranking "
                               "loss (docs/MODEL.md §5).", True)
    max_nodes: int = _doc("At most this many distinct users (and items) of the batch enter each InfoNCE "
                          "(memory ~ max_nodes^2); a random subset when there are more.", 4096)


@dataclass
class IdContrastConfig:
    loss_weight: float = _doc("lambda_sgl: weight of the SimGCL term (two noise-perturbed propagations of the ID "
                              "rows, InfoNCE between them, for the batch's users and items); 0 = off. Why: the "
                              "uniformity it adds is SimGCL's fix for LightGCN's fast fit on sparse data, on the "
                              "collaborative view itself (the content contrast above leaves the ID rows alone). "
                              "Not for TikTok: it lowered valid Recall@20 there, on LightGCN alone too, and an "
                              "independent plain-torch SimGCL (experiments/simgcl_reference.py) does the same, "
                              "so it is the setting, not this implementation (docs/RESULTS.md).",
                              0.0)
    eps: float = _doc("SimGCL's noise magnitude epsilon, added to every propagation layer's output.", 0.1)
    temperature: float = _doc("tau of the SimGCL InfoNCE.", 0.2)
    max_nodes: int = _doc("At most this many distinct users (and items) of the batch enter each InfoNCE.", 1024)


def perturb(x: torch.Tensor, eps: float) -> torch.Tensor:
    """SimGCL's noise: x + eps * sign(x) * |unit random direction|."""
    if eps <= 0:
        return x
    return x + eps * torch.sign(x) * F.normalize(torch.rand_like(x), dim=-1)


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE of row b of `anchor` against row b of `positive`, the other rows as negatives."""
    # 1/tau scales the [B, d] anchors, not the [B, B] logits: the same value at a fraction of the
    # cost (the division of the logit matrix and its backward were ~10% of a causal step on TikTok).
    a = F.normalize(anchor, dim=-1) * (1.0 / temperature)
    p = F.normalize(positive, dim=-1)
    return F.cross_entropy(a @ p.t(), torch.arange(a.shape[0], device=a.device))


def _at_most(ids: torch.Tensor, n: int) -> torch.Tensor:
    return ids if ids.numel() <= n else ids[torch.randperm(ids.numel(), device=ids.device)[:n]]


def cross_view_loss(cfg: ContrastConfig, users: torch.Tensor, items: torch.Tensor,
                    id_user: torch.Tensor, content_user: torch.Tensor,
                    id_item: torch.Tensor, content_item: torch.Tensor) -> torch.Tensor:
    """lambda_cl * (InfoNCE over the batch's users + over its items); full tables in, ids select rows."""
    if not cfg.enabled or cfg.loss_weight == 0:
        return id_user.new_zeros(())
    u, i = _at_most(torch.unique(users), cfg.max_nodes), _at_most(torch.unique(items), cfg.max_nodes)
    if cfg.detach_anchor:
        id_user, id_item = id_user.detach(), id_item.detach()
    loss = (info_nce(id_user.index_select(0, u), perturb(content_user.index_select(0, u), cfg.noise), cfg.temperature)
            + info_nce(id_item.index_select(0, i), perturb(content_item.index_select(0, i), cfg.noise),
                       cfg.temperature))
    return cfg.loss_weight * loss


def noisy_view_loss(cfg: IdContrastConfig, propagate: Callable[[torch.Tensor], torch.Tensor], ego: torch.Tensor,
                    num_users: int, num_layers: int, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """SimGCL (Yu et al., SIGIR 2022): lambda_sgl * (InfoNCE(users) + InfoNCE(items)) between two views
    of the ID rows, each the mean of layers 1..L of x_l = A x_{l-1} + eps * noise (`perturb`).

    `propagate` is the backbone's x -> A x (in training: with its edge dropout, if any); `ego` the
    [U+I, d] layer-0 rows, users first.
    """
    if cfg.loss_weight == 0 or num_layers == 0:
        return ego.new_zeros(())

    def view() -> tuple[torch.Tensor, torch.Tensor]:
        x, total = ego, torch.zeros_like(ego)
        for _ in range(num_layers):
            x = perturb(propagate(x), cfg.eps)
            total = total + x
        user, item = (total / num_layers).split([num_users, ego.shape[0] - num_users])
        return user, item

    (user_a, item_a), (user_b, item_b) = view(), view()
    u, i = _at_most(torch.unique(users), cfg.max_nodes), _at_most(torch.unique(items), cfg.max_nodes)
    return cfg.loss_weight * (info_nce(user_a.index_select(0, u), user_b.index_select(0, u), cfg.temperature)
                              + info_nce(item_a.index_select(0, i), item_b.index_select(0, i), cfg.temperature))
