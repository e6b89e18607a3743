"""Mini-batch training of the causal model: `model.causal.backbone.graph_mode: sampled` (docs/MODEL.md §5b).

The full step (models/causal.py) computes every user's and item's representation, so an epoch
costs O(steps x (E + (U + I) d)): quadratic in the catalog. Here a step touches only what its
batch needs, so its cost does not grow with the catalog:

1. the backbone's L-hop neighbourhood of the batch nodes N_0 (data_loaders/neighbors.py), and the
   same for the front-door's kept weighted subgraph (its own sample, the same seeds);
2. ONE lookup of the union of both node sets (a second lookup of a sharded table per step would
   step fused optimizers twice);
3. the content path (projection -> diffusion -> back-door) on the batch's items and on the items
   of each batch user's content profile: at most `profile_fanout` of its training items, drawn
   uniformly without replacement, weighted 1/#drawn, so c_u is an unbiased estimate of the mean
   content of u's items;
4. the same losses as the full step, on batch-local tables.

Every node's representation is row-wise computable (LightGCN's layer mean, the per-item content
path, the prior-weighted attentions), so with every fanout >= the largest degree the sampled step's
ranking, topology and contrastive losses equal the full step's (tests/models/test_causal_sampled.py).
What is still global runs once per epoch in chunks (`CausalRec.start_epoch`: the code prior, the
subgraph refresh) and in evaluation (the full propagations in row blocks of the neighbour graphs).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from data_loaders.neighbors import NeighborSampler, sampling_rng
from models.bpr import bpr_loss_terms
from models.contrast import cross_view_loss
from models.lightgcn import _csr_matrix, _world, lookup_nodes, subgraph_layer_mean

if TYPE_CHECKING:  # the model imports this module
    from models.causal import CausalConfig, CausalRec

# Streams of sampling_rng, so the step's three samplers draw independently.
_MEDIATOR_STREAM, _PROFILE_STREAM = 1, 2


def check_sampled_config(cfg: "CausalConfig") -> "CausalConfig":
    """`cfg` with the EMA statistics summed over ranks; a clear error for what sampled mode lacks."""
    if cfg.frontdoor.enabled and cfg.frontdoor.num_layers != len(cfg.backbone.fanouts):
        raise ValueError(f"causal model, backbone.graph_mode 'sampled': the front-door subgraph is sampled with "
                         f"backbone.fanouts ({list(cfg.backbone.fanouts)}), which needs one fanout per "
                         f"frontdoor.num_layers ({cfg.frontdoor.num_layers})")
    if cfg.frontdoor.enabled and cfg.frontdoor.mediator_items != "id":
        raise ValueError("causal model: frontdoor.mediator_items 'content' is not available with backbone.graph_mode "
                         "'sampled' (it would run the content path on the whole sampled neighbourhood)")
    if cfg.user_content_in_score:
        raise ValueError("causal model: user_content_in_score is not available with backbone.graph_mode 'sampled'")
    if cfg.profile_fanout < 1:
        raise ValueError(f"causal model: profile_fanout must be >= 1, got {cfg.profile_fanout}")
    # Each rank quantises its own batch's items: the codebook's EMA must see every rank's statistics.
    return dataclasses.replace(cfg, backdoor=dataclasses.replace(cfg.backdoor, allreduce_stats=True))


def profiles(sampler: NeighborSampler, users: np.ndarray, fanout: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, item, weight): for row r (user users[r]) up to `fanout` of its training items, each
    weighted 1/#drawn, so that sum_row weight * x_item is an unbiased estimate of the user's mean."""
    dst, entries, _ = sampler.sample_hop(users, fanout, rng)
    drawn = np.bincount(dst, minlength=len(users))
    items = sampler.graph.indices[entries].astype(np.int64) - sampler.graph.num_users
    return dst, items, 1.0 / drawn[dst]


def _mediator_sampler(model: "CausalRec") -> NeighborSampler:
    """A sampler over the front-door's kept subgraph, rebuilt whenever that graph is."""
    graph = model.frontdoor.kept_graph()
    cached = getattr(model, "_mediator_sampler_cache", None)
    if cached is None or cached.graph is not graph:
        cached = NeighborSampler(graph, model.cfg.backbone.fanouts)
        model._mediator_sampler_cache = cached
    return cached


def sampled_forward(model: "CausalRec", users: torch.Tensor, pos: torch.Tensor,
                    neg: torch.Tensor) -> dict[str, torch.Tensor]:
    """The losses of `CausalRec.forward` for the triples, computed on the batch's neighbourhoods."""
    cfg, bb, fd = model.cfg, model.backbone, model.frontdoor
    num_users, device = bb.num_users, bb.tables.device
    rank, _ = _world()
    epoch, step = bb._epoch, bb._step
    sub = bb.sample(users, pos, neg)  # N_0 = sorted distinct batch nodes: users first, then items
    n0 = sub.sizes[0]
    batch_nodes = sub.nodes[:n0]
    num_u = int(np.searchsorted(batch_nodes, num_users))  # N_0's users are its first num_u nodes
    seeds = np.concatenate([users.cpu().numpy(), num_users + pos.cpu().numpy(), num_users + neg.cpu().numpy()])
    fd_sub = None
    if fd.cfg.enabled:
        fd_sub = _mediator_sampler(model).sample(seeds, sampling_rng(bb.seed, epoch, step, rank, _MEDIATOR_STREAM))

    # One lookup of every node either subgraph touches.
    touched = np.unique(np.concatenate([sub.nodes] + ([fd_sub.nodes] if fd_sub is not None else [])))
    rows = lookup_nodes(bb.tables, touched, num_users)

    def rows_of(nodes: np.ndarray) -> torch.Tensor:
        return rows[torch.from_numpy(np.searchsorted(touched, nodes)).to(device)]

    h = rows_of(sub.nodes)
    mean, ego = subgraph_layer_mean(sub, h), h[:n0]

    # Content path on the batch's items and the drawn profile items of its users.
    batch_users, batch_items = batch_nodes[:num_u], batch_nodes[num_u:] - num_users
    prof_row, prof_item, prof_weight = profiles(bb.sampler, batch_users, cfg.profile_fanout,
                                                sampling_rng(bb.seed, epoch, step, rank, _PROFILE_STREAM))
    content_items = np.unique(np.concatenate([batch_items, prof_item]))
    index = torch.from_numpy(content_items).to(device)
    diff = model.diffusion(model.projection({m: f[index] for m, f in model.features.items()}))
    bd = model.backdoor(diff.content, diff.confounder)
    content = bd.x_bd  # with its gradient (the topology and contrastive terms train the content path)
    content_item = content[torch.from_numpy(np.searchsorted(content_items, batch_items)).to(device)]
    profile = _csr_matrix(prof_row, np.searchsorted(content_items, prof_item), prof_weight,
                          (num_u, len(content_items)), device)
    content_user = torch.sparse.mm(profile, content)
    scored_item = content_item.detach() if cfg.detach_content else content_item

    # Front-door: the mediator of the batch nodes on the kept subgraph, then h^fd.
    if fd_sub is not None:
        mediator = subgraph_layer_mean(fd_sub, rows_of(fd_sub.nodes))  # same seeds: rows in N_0's order
        h_fd = fd.head(mediator, model.backdoor.dictionary())
    else:
        mediator, h_fd = None, torch.zeros_like(mean)

    id_user, id_item = mean[:num_u], mean[num_u:]
    user = id_user + model.gate_frontdoor * h_fd[:num_u]
    item = id_item + model.gate_backdoor * scored_item + model.gate_frontdoor * h_fd[num_u:]
    local = torch.from_numpy(sub.seed_local).to(device)
    b = users.numel()
    u, p, q = local[:b], local[b:b + pos.numel()] - num_u, local[b + pos.numel():] - num_u
    margin = model.exposure(pos) - model.exposure(neg) if model.exposure.enabled else None
    out = bpr_loss_terms(user[u], item[p], item[q], (ego[:num_u][u], ego[num_u:][p], ego[num_u:][q]),
                         bb.reg_weight, bb.reg_type, margin=margin)
    topo = fd.topology_loss(u, p, q, content_user, content_item, id_user, id_item)
    if cfg.contrast.view == "mediator" and mediator is not None:
        view_user, view_item = mediator[:num_u], mediator[num_u:]
    else:
        view_user, view_item = content_user, content_item
    cl = cross_view_loss(cfg.contrast, u, torch.cat([p, q]), id_user, view_user, id_item, view_item)
    losses = {"diffusion": diff.loss, "vq": bd.loss, **{f"diff/{k}": v for k, v in diff.terms.items()},
              **{f"vq/{k}": v for k, v in bd.terms.items()}}
    out["loss"] = out["loss"] + diff.loss + bd.loss + topo + cl
    out.update(losses)
    out["topo"], out["contrast"] = topo, cl
    return out
