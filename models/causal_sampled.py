"""Mini-batch training of the causal model: `model.causal.backbone.graph_mode: sampled` (docs/MODEL.md §5b).

The full step (models/causal.py) computes every user's and item's representation, so an epoch
costs O(steps x (E + (U + I) d)): quadratic in the catalog. Here a step touches only what its
batch needs, so its cost does not grow with the catalog:

1. the backbone's L-hop neighbourhood of the batch nodes N_0 (data_loaders/neighbors.py); the
   front-door's kept weighted subgraph is sampled by the same draws, reweighted
   (`mediator_factor`: its edges' weights over the training graph's, 0 for pruned edges);
2. ONE lookup of that node set (a second lookup of a sharded table per step would step fused
   optimizers twice; one shared sample also keeps the looked-up rows, the step's largest tensors,
   to one neighbourhood instead of the union of two);
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

# Stream of sampling_rng for the profiles, independent of the neighbourhood's (stream 1 was the
# front-door's own sample before it shared the backbone's: 2 keeps the profiles' draws as they were).
_PROFILE_STREAM = 2


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
    if cfg.views.enabled:
        raise ValueError("causal model: views.enabled is not available with backbone.graph_mode 'sampled' (the views "
                         "propagate whole tables on A_uu and S_ii every step)")
    if cfg.id_contrast.loss_weight:
        raise ValueError("causal model: id_contrast (SimGCL) is not available with backbone.graph_mode 'sampled' (its "
                         "two noisy views propagate the full graph)")
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


def mediator_factor(model: "CausalRec") -> np.ndarray:
    """Per entry of the backbone's neighbour graph: a^K_e / a_e, the kept subgraph's normalised
    weight over the training graph's (0 for a pruned edge), float32; cached until the front-door's
    kept edges change (a refresh or a checkpoint load).

    `SampledSubgraph.reweighted` turns the backbone's sample into the kept subgraph's with it, so
    the mediator needs no sample, no node set and no lookup of its own (docs/MODEL.md §5b).
    """
    fd, graph = model.frontdoor, model.backbone.graph
    cached = getattr(model, "_mediator_factor_cache", None)
    if cached is not None and cached[0] == fd.version:
        return cached[1]
    num_users, nnz = graph.num_users, fd.edge_user.numel()
    users, items = fd.edge_user.cpu().numpy(), fd.edge_item.cpu().numpy()
    # The front-door's edges are the training CSR's entries in order, as are the graph's first nnz.
    if int(graph.indptr[num_users]) != nnz or not np.array_equal(graph.indices[:nnz], items + num_users):
        raise ValueError("causal model: the front-door's edges are not the backbone graph's training edges")
    weight = fd.weight.detach().cpu().numpy().astype(np.float64)
    kept_degree = np.concatenate([np.bincount(users, weights=weight, minlength=num_users),
                                  np.bincount(items, weights=weight, minlength=graph.num_items)])
    inv_sqrt = np.zeros_like(kept_degree)
    np.divide(1.0, np.sqrt(kept_degree), out=inv_sqrt, where=kept_degree > 0)
    kept = weight * inv_sqrt[users] * inv_sqrt[num_users + items]
    full = graph.normalised_weights(users, np.arange(nnz))
    per_edge = np.zeros(nnz)
    np.divide(kept, full, out=per_edge, where=full > 0)
    factor = graph.on_entries(per_edge).astype(np.float32)
    model._mediator_factor_cache = (fd.version, factor)
    return factor


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
    # One lookup: the mediator propagates over the same sample (reweighted), so it needs no rows of its own.
    h = lookup_nodes(bb.tables, sub.nodes, num_users)
    mean, ego = subgraph_layer_mean(sub, h), h[:n0]

    # Content path on the batch's items and the drawn profile items of its users.
    batch_users, batch_items = batch_nodes[:num_u], batch_nodes[num_u:] - num_users
    prof_row, prof_item, prof_weight = profiles(bb.sampler, batch_users, cfg.profile_fanout,
                                                sampling_rng(bb.seed, epoch, step, rank, _PROFILE_STREAM))
    content_items = np.unique(np.concatenate([batch_items, prof_item]))
    index = torch.from_numpy(content_items).to(device)
    diff = model.diffusion(model.projection({m: f[index] for m, f in model.inputs.items()}, normalized=True))
    bd = model.backdoor(diff.content, diff.confounder)
    content = bd.x_bd  # with its gradient (the topology and contrastive terms train the content path)
    content_item = content[torch.from_numpy(np.searchsorted(content_items, batch_items)).to(device)]
    profile = _csr_matrix(prof_row, np.searchsorted(content_items, prof_item), prof_weight,
                          (num_u, len(content_items)), device)
    content_user = torch.sparse.mm(profile, content)
    scored_item = content_item.detach() if cfg.detach_content else content_item

    # Front-door: the mediator of the batch nodes on the kept subgraph, then h^fd.
    if fd.cfg.enabled:
        mediator = subgraph_layer_mean(sub.reweighted(mediator_factor(model)), h)
        h_fd = fd.head(mediator, model.frontdoor_dictionary())
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
                         bb.reg_weight, bb.reg_type, margin=margin, weight=fd.bpr_pair_weight(users, pos),
                         ranking=bb.ranking, ids=(pos, neg))
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
