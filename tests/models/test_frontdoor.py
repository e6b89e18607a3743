"""Front-door: per-user top-rho pruning never isolates a user, refresh schedule, mediator = LightGCN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.frontdoor import (FrontDoor, FrontdoorConfig, item_centred, layer_mean, normalized_adjacency,
                              pruning_metrics, top_ratio_mask)

U, I, D = 6, 9, 8


def _graph(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct edges; user degrees 1..6 (user 0 has a single edge), shuffled edge order."""
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.full(u + 1, u) for u in range(U)])
    items = np.concatenate([rng.choice(I, u + 1, replace=False) for u in range(U)])
    perm = rng.permutation(users.size)
    return torch.from_numpy(users[perm]), torch.from_numpy(items[perm])


def _dense_lightgcn(eu: np.ndarray, ei: np.ndarray, w: np.ndarray, x: np.ndarray, layers: int) -> np.ndarray:
    a = np.zeros((U + I, U + I))
    a[eu, U + ei] = w
    a[U + ei, eu] = w
    deg = a.sum(1)
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    a = inv[:, None] * a * inv[None, :]
    out, cur = x.copy(), x.copy()
    for _ in range(layers):
        cur = a @ cur
        out += cur
    return out / (layers + 1)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, D, generator=g) for n in (U, I, U, I))  # user content, item content, e_u, e_i


@pytest.mark.parametrize("ratio", [0.5, 0.3, 0.8, 1.0, 1e-6])
def test_top_ratio_keeps_ceil_and_best(ratio: float) -> None:
    eu, _ = _graph()
    score = torch.rand(eu.numel(), generator=torch.Generator().manual_seed(1))
    kept = top_ratio_mask(eu, score, U, ratio)
    for u in range(U):
        mine = eu == u
        deg = int(mine.sum())
        assert int(kept[mine].sum()) == max(1, math.ceil(ratio * deg - 1e-9))
        if (~kept[mine]).any():
            assert score[mine & kept].min() > score[mine & ~kept].max()


def test_never_isolates_a_user() -> None:
    eu, ei = _graph()
    ue, ie, uid, iid = _inputs()
    for cfg in (FrontdoorConfig(keep_ratio=1e-9, warmup_epochs=0),
                FrontdoorConfig(prune_by="threshold", score_threshold=1.1, warmup_epochs=0)):
        fd = FrontDoor(U, I, eu, ei, D, cfg)
        assert fd.maybe_refresh(0, ue, ie, uid, iid)
        per_user = torch.bincount(eu[fd.kept], minlength=U)
        assert per_user.tolist() == [1] * U  # exactly the best edge of each user
        best = [int(fd.score[eu == u].argmax()) for u in range(U)]
        assert all(fd.kept[eu == u][b] for u, b in enumerate(best))


def test_item_centred_score_subtracts_the_items_mean() -> None:
    edge_item = torch.tensor([0, 1, 0, 2, 0, 1])
    score = torch.tensor([0.9, 0.2, 0.6, 0.7, 0.3, 0.4])
    means = {0: (0.9 + 0.6 + 0.3) / 3, 1: 0.3, 2: 0.7}
    want = torch.tensor([s - means[int(i)] for s, i in zip(score.tolist(), edge_item)])
    torch.testing.assert_close(item_centred(edge_item, score, 4), want)  # item 3 has no edge: no division by 0


def test_item_centred_pruning_ranks_edges_against_their_items() -> None:
    """Two users share a 'popular' item scored high for everyone; each also has a niche item. By raw score
    both drop the niche edge; centred on the item, a user keeps the edge that is unusually high for its item."""
    eu, ei = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 2, 0, 3])
    score_logit = torch.tensor([3.0, 0.5, 0.0, -1.0, 3.0, 2.0])  # s(1, 0) is low for the popular item 0
    fd = FrontDoor(3, 4, eu, ei, D, FrontdoorConfig(warmup_epochs=0, keep_ratio=0.5, prune_rank="item_centred"))
    fd.edge_logits = lambda u, i, *rest: score_logit[:u.numel()]  # the scorer replaced by fixed logits
    ue, ie, uid, iid = (torch.randn(n, D) for n in (3, 4, 3, 4))
    fd.refresh(ue, ie, uid, iid)
    # centred: item 0's edges (users 0, 1, 2) against their mean; items 1-3 have one edge each (centred 0)
    assert fd.kept.tolist() == [True, False, False, True, True, False]
    torch.testing.assert_close(fd.weight[fd.kept], torch.sigmoid(score_logit)[fd.kept])  # weights stay s_ui
    raw = FrontDoor(3, 4, eu, ei, D, FrontdoorConfig(warmup_epochs=0, keep_ratio=0.5))
    raw.edge_logits = fd.edge_logits
    raw.refresh(ue, ie, uid, iid)
    assert raw.kept.tolist() == [True, False, True, False, True, False]
    with pytest.raises(ValueError, match="prune_rank 'item_centred' ranks edges for prune_by 'ratio'"):
        FrontDoor(3, 4, eu, ei, D, FrontdoorConfig(prune_by="threshold", prune_rank="item_centred"))


def test_refresh_schedule() -> None:
    eu, ei = _graph()
    args = _inputs()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(warmup_epochs=3, refresh_every=2, keep_ratio=0.5))
    assert bool(fd.kept.all()) and bool((fd.weight == 1).all()) and bool(fd.score.isnan().all())
    did = [e for e in range(10) if fd.maybe_refresh(e, *args)]
    assert did == [3, 5, 7, 9]
    assert not fd.maybe_refresh(9, *args)  # once per epoch
    assert int(fd.kept.sum()) < eu.numel()
    torch.testing.assert_close(fd.weight, torch.where(fd.kept, fd.score, torch.zeros_like(fd.score)))
    off = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(topology_reconstruction=False, warmup_epochs=0))
    assert not any(off.maybe_refresh(e, *args) for e in range(5)) and bool(off.kept.all())


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_mediator_on_full_graph_is_lightgcn(layers: int) -> None:
    eu, ei = _graph()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(num_layers=layers))
    _, _, uid, iid = _inputs()
    out = fd(uid, iid)
    ref = _dense_lightgcn(eu.numpy(), ei.numpy(), np.ones(eu.numel()), torch.cat([uid, iid]).double().numpy(), layers)
    np.testing.assert_allclose(torch.cat([out.mediator_user, out.mediator_item]).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_mediator_on_weighted_subgraph() -> None:
    eu, ei = _graph()
    ue, ie, uid, iid = _inputs()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(warmup_epochs=0, keep_ratio=0.5))
    fd.maybe_refresh(0, ue, ie, uid, iid)
    out = fd(uid, iid)
    ref = _dense_lightgcn(eu.numpy(), ei.numpy(), fd.weight.double().numpy(), torch.cat([uid, iid]).double().numpy(), 2)
    np.testing.assert_allclose(torch.cat([out.mediator_user, out.mediator_item]).numpy(), ref, rtol=1e-5, atol=1e-6)
    # A checkpointed mask is restored (and the cached adjacency rebuilt).
    other = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(warmup_epochs=0, keep_ratio=0.5))
    other(uid, iid)  # caches the full-graph adjacency
    other.load_state_dict(fd.state_dict())
    torch.testing.assert_close(other(uid, iid).mediator_user, out.mediator_user)


@pytest.mark.parametrize("score,loss", [("mlp", "bce"), ("cosine", "bce"), ("mlp", "bpr")])
def test_shapes_and_gradients(score: str, loss: str) -> None:
    torch.manual_seed(0)
    eu, ei = _graph()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(score=score, topo_loss=loss))
    ue, ie, uid, iid = (t.requires_grad_() for t in _inputs())
    codes, prior = torch.randn(5, D, requires_grad=True), torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    out = fd(uid, iid, (codes, prior))
    assert out.user.shape == (U, D) and out.item.shape == (I, D)
    users, pos, neg = torch.tensor([0, 3, 5]), torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    topo = fd.topology_loss(users, pos, neg, ue, ie, uid, iid)
    assert topo > 0
    (out.user.square().sum() + out.item.square().sum() + topo).backward()
    for name, p in fd.named_parameters():
        if loss == "bpr" and name == "scorer.2.bias":  # cancels in l_pos - l_neg
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert uid.grad.abs().sum() > 0 and ue.grad.abs().sum() > 0
    assert codes.grad is None  # the dictionary is a constant of the adjustment



def test_rows_run_the_head_on_those_rows_only_and_match_the_full_forward_there() -> None:
    torch.manual_seed(0)
    eu, ei = _graph()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(output="mlp"))
    _, _, uid, iid = _inputs()
    codes, prior = torch.randn(5, D), torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    full = fd(uid, iid, (codes, prior))
    users, items = torch.tensor([1, 4]), torch.tensor([0, 2, 7])
    part = fd(uid, iid, (codes, prior), rows=(users, items))
    torch.testing.assert_close(part.user[users], full.user[users])
    torch.testing.assert_close(part.item[items], full.item[items])
    others_u = torch.ones(U, dtype=torch.bool).index_fill_(0, users, False)
    others_i = torch.ones(I, dtype=torch.bool).index_fill_(0, items, False)
    assert part.user[others_u].abs().sum() == 0 and part.item[others_i].abs().sum() == 0
    torch.testing.assert_close(part.mediator_item, full.mediator_item)  # the mediator stays whole

def test_detached_scorer_inputs() -> None:
    eu, ei = _graph()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(detach_scorer_inputs=True))
    ue, ie, uid, iid = (t.requires_grad_() for t in _inputs())
    fd.topology_loss(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 4]), ue, ie, uid, iid).backward()
    assert all(t.grad is None for t in (ue, ie, uid, iid))
    assert all(p.grad is not None for p in fd.scorer.parameters())


def test_own_dictionary_and_no_cross_sample() -> None:
    torch.manual_seed(0)
    eu, ei = _graph()
    _, ie, uid, iid = _inputs()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(num_centroids=3))
    fd.refresh_dictionary(ie)
    torch.testing.assert_close(fd.centroid_prior.sum(), torch.tensor(1.0))
    assert fd(uid, iid).user.shape == (U, D)
    plain = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(cross_sample=False, output="mlp"))
    assert plain.out[0].in_features == D and plain(uid, iid).item.shape == (I, D)
    # output "sum" without cross-sample: h^fd is the mediator itself, no output network.
    bare = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(cross_sample=False, output="sum"))
    res = bare(uid, iid)
    assert not hasattr(bare, "out") and torch.equal(res.item, res.mediator_item) and torch.equal(res.user, res.mediator_user)


def test_off_switch() -> None:
    eu, ei = _graph()
    ue, ie, uid, iid = _inputs()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(enabled=False, warmup_epochs=0))
    out = fd(uid, iid)
    assert len(list(fd.parameters())) == 0
    assert bool((out.user == 0).all()) and bool((out.item == 0).all()) and out.user.shape == (U, D)
    assert fd.topology_loss(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), ue, ie, uid, iid) == 0
    assert not fd.maybe_refresh(0, ue, ie, uid, iid)


def test_user_content_and_pruning_metrics() -> None:
    eu, ei = _graph()
    fd = FrontDoor(U, I, eu, ei, D)
    x = torch.randn(I, D)
    uc = fd.user_content(x)
    for u in range(U):
        torch.testing.assert_close(uc[u], x[ei[eu == u]].mean(0))
    m = pruning_metrics(torch.tensor([True, False, False, True]), torch.tensor([False, True, False, True]))
    assert m == {"pruned_fraction": 0.5, "precision": 0.5, "recall": 0.5}


def test_normalized_adjacency_drops_zero_weights() -> None:
    eu, ei = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    adj = normalized_adjacency(eu, ei, torch.tensor([1.0, 0.0, 1.0]), 2, 2)
    assert adj._nnz() == 4
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer_mean(adj, x, 0), x)


def test_composed_step_and_epoch_calls() -> None:
    """The wiring of docs/MODEL.md §6 end to end on a toy graph: every module's parameters learn."""
    from models.backdoor import Backdoor, BackdoorConfig
    from models.diffusion import CrossModalDiffusion
    from models.projection import ModalityProjection

    torch.manual_seed(0)
    eu, ei = _graph()
    feats = {"image": torch.randn(I, 12), "text": torch.randn(I, 5)}
    proj = ModalityProjection({"image": 12, "text": 5}, D)
    diff = CrossModalDiffusion(list(feats), D)
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=4))
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(warmup_epochs=1, refresh_every=1, keep_ratio=0.5))
    ego = torch.nn.Parameter(torch.randn(U + I, D) * 0.1)
    backbone_adj = normalized_adjacency(eu, ei, torch.ones(eu.numel()), U, I)
    modules = torch.nn.ModuleList([proj, diff, bd, fd])
    opt = torch.optim.Adam([*modules.parameters(), ego], lr=1e-2)
    users, pos, neg = eu[:4], ei[:4], (ei[:4] + 1) % I

    def step() -> dict[str, torch.Tensor]:
        e = layer_mean(backbone_adj, ego, 2)
        e_u, e_i = e[:U], e[U:]
        d_out = diff(proj(feats))
        b_out = bd(d_out.content, d_out.confounder)
        f_out = fd(ego[:U], ego[U:], bd.dictionary())
        u_c = fd.user_content(b_out.x_bd)
        topo = fd.topology_loss(users, pos, neg, u_c, b_out.x_bd, e_u, e_i)
        h_u, h_i = e_u + f_out.user, e_i + b_out.x_bd + f_out.item
        bpr = torch.nn.functional.softplus((h_u[users] * (h_i[neg] - h_i[pos])).sum(-1)).mean()
        return {"loss": bpr + d_out.loss + b_out.loss + topo, "x_bd": b_out.x_bd, "e_u": e_u, "e_i": e_i,
                "u_c": u_c, "z": d_out.confounder}

    for epoch in range(3):
        modules.eval()  # per-epoch calls from the current representations (eval: no EMA step)
        with torch.no_grad():
            out = step()
            bd.refresh_prior(out["z"])
            refreshed = fd.maybe_refresh(epoch, out["u_c"], out["x_bd"], out["e_u"], out["e_i"])
        assert refreshed is (epoch >= 1)
        modules.train()
        opt.zero_grad()
        out = step()
        out["loss"].backward()
        if epoch == 0:
            for name, p in modules.named_parameters():
                if ".codebook." in name:  # the codebook table learns by EMA only: never a gradient
                    assert p.grad is None, name
                    continue
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        opt.step()
    assert torch.isfinite(out["loss"])
    assert int(fd.kept.sum()) < eu.numel() and bool((torch.bincount(eu[fd.kept], minlength=U) >= 1).all())


def test_bpr_pair_weight_follows_the_kept_edges() -> None:
    eu, ei = _graph()
    args = _inputs()
    fd = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(warmup_epochs=0, keep_ratio=0.5, pruned_bpr_weight=0.25))
    assert fd.bpr_pair_weight(eu, ei) is None  # before the first refresh every edge is kept
    assert fd.maybe_refresh(0, *args)
    w = fd.bpr_pair_weight(eu, ei)
    expected = torch.where(fd.kept, 1.0, 0.25)
    torch.testing.assert_close(w, expected)
    assert 0 < int((w < 1).sum()) < eu.numel()  # some pruned, some kept
    # Any order and repetition of the batch's pairs; a pair that is no training edge counts as kept.
    perm = torch.randperm(eu.numel(), generator=torch.Generator().manual_seed(1))[:7]
    torch.testing.assert_close(fd.bpr_pair_weight(eu[perm].repeat(2), ei[perm].repeat(2)), expected[perm].repeat(2))
    taken = set(zip(eu.tolist(), ei.tolist()))
    absent = next((u, i) for u in range(U) for i in range(I) if (u, i) not in taken)
    assert fd.bpr_pair_weight(torch.tensor([absent[0]]), torch.tensor([absent[1]])).tolist() == [1.0]
    # At 1 (the default) nothing changes; out-of-range values are refused.
    one = FrontDoor(U, I, eu, ei, D, FrontdoorConfig(warmup_epochs=0, keep_ratio=0.5))
    one.maybe_refresh(0, *args)
    assert one.bpr_pair_weight(eu, ei) is None
    with pytest.raises(ValueError, match="pruned_bpr_weight"):
        FrontDoor(U, I, eu, ei, D, FrontdoorConfig(pruned_bpr_weight=1.5))
