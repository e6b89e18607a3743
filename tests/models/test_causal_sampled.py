"""The causal model's sampled mini-batch step (models/causal_sampled.py) against its full-graph step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from data_loaders.graph import CSR, lightgcn_adjacency
from data_loaders.neighbors import NeighborGraph, NeighborSampler
from models.bpr import Ranking
from models.causal import CausalConfig, CausalRec
from models.causal_sampled import profiles
from models.contrast import IdContrastConfig
from models.embeddings import IdTables
from models.frontdoor import FrontdoorConfig
from models.lightgcn import LightGCNConfig

U, I, D = 14, 11, 8


def _graph() -> CSR:
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, U * I, size=70))
    return CSR.from_pairs(keys // I, keys % I, U, I)


def _model(mode: str, fanout: int = 100, profile_fanout: int = 100, pruned_bpr_weight: float = 1.0,
           ranking: Ranking = Ranking(), **extra) -> CausalRec:
    torch.manual_seed(0)
    train = _graph()
    features = {"image": torch.randn(I, 6, generator=torch.Generator().manual_seed(1)),
                "text": torch.randn(I, 5, generator=torch.Generator().manual_seed(2))}
    cfg = CausalConfig(backbone=LightGCNConfig(graph_mode=mode, fanouts=[fanout, fanout]),
                       profile_fanout=profile_fanout, **extra)
    cfg.backdoor = dataclasses.replace(cfg.backdoor, coarse_codes=3, fine_codes=4, store="buffer")
    cfg.frontdoor = dataclasses.replace(cfg.frontdoor, warmup_epochs=1, refresh_every=1, keep_ratio=0.6,
                                        pruned_bpr_weight=pruned_bpr_weight)
    return CausalRec(IdTables(U, I, D), num_layers=2, adjacency=lightgcn_adjacency(train) if mode == "full" else None,
                     features=features, train=train, reg_weight=1e-3, cfg=cfg, seed=0, ranking=ranking)


def _batch(train: CSR) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    users = train.row_ids()[::3]
    pos = train.indices[::3]
    neg = (pos + 5) % I
    return torch.as_tensor(users), torch.as_tensor(pos), torch.as_tensor(neg)


def _compare(full: CausalRec, sampled: CausalRec) -> None:
    batch = _batch(_graph())
    parts = ("bpr", "reg", "topo", "contrast")
    outs = []
    for model in (full, sampled):
        model.zero_grad()
        out = model(*batch)
        (out["bpr"] + 1e-3 * out["reg"] + out["topo"] + out["contrast"]).backward()
        outs.append(out)
    for key in parts:
        torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-5, atol=1e-6, msg=key)
    grads = {n: p.grad for n, p in full.named_parameters() if p.grad is not None}
    assert any("tables" in n for n in grads) and any(n.startswith("projection.") for n in grads)
    for name, p in sampled.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        else:
            assert p.grad is None or float(p.grad.abs().max()) == 0, name


@pytest.mark.parametrize("pruned_bpr_weight,loss", [(1.0, "bpr"), (0.2, "bpr"), (0.2, "softmax")])
def test_full_fanout_step_equals_the_full_graph_step_before_and_after_a_refresh(pruned_bpr_weight: float,
                                                                                loss: str) -> None:
    # Eval mode: no EMA step, no diffusion noise, so both steps see the same codebook and content.
    ranking = Ranking(loss, 0.5)
    full = _model("full", pruned_bpr_weight=pruned_bpr_weight, ranking=ranking).eval()
    sampled = _model("sampled", pruned_bpr_weight=pruned_bpr_weight, ranking=ranking).eval()
    with torch.no_grad():  # open the gates, so the back-door and front-door terms are in the score
        for m in (full, sampled):
            m.gate_backdoor.fill_(0.3)
            m.gate_frontdoor.fill_(0.4)
    _compare(full, sampled)
    for m in (full, sampled):  # epoch 1 > warm-up: the subgraph is pruned and weighted
        torch.manual_seed(5)  # the codes' data initialisation draws random items: the same ones
        m.start_epoch(0)
        m.start_epoch(1)
        m.eval()
    assert bool((~full.frontdoor.kept).any()) and torch.equal(full.frontdoor.kept, sampled.frontdoor.kept)
    _compare(full, sampled)
    if pruned_bpr_weight < 1:  # the pruned pairs of the batch now weigh less in both steps' BPR
        users, pos, _ = _batch(_graph())
        assert bool((full.frontdoor.bpr_pair_weight(users, pos) < 1).any())
    # Evaluation embeddings: full propagation either way (sampled mode in row blocks, no adjacency).
    for a, b in zip(full.final_embeddings(), sampled.final_embeddings()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_small_fanouts_train() -> None:
    model = _model("sampled", fanout=2, profile_fanout=2).train()
    model.start_epoch(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = _batch(_graph())
    losses = []
    for _ in range(25):
        opt.zero_grad()
        out = model(*batch)
        out["loss"].backward()
        opt.step()
        losses.append(float(out["bpr"]))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert model.backdoor.cfg.allreduce_stats  # every rank quantises its own items in sampled mode


def test_profiles_are_uniform_subsets_weighted_to_an_unbiased_mean() -> None:
    train = _graph()
    sampler = NeighborSampler(NeighborGraph.from_csr(train), [2])
    users = np.array([0, 3, 7])
    x = np.random.default_rng(0).normal(size=I)
    estimates = []
    for seed in range(3000):
        row, item, weight = profiles(sampler, users, 2, np.random.default_rng(seed))
        for r, u in enumerate(users):
            assert set(item[row == r]) <= set(train.row(u)) and (row == r).sum() == min(2, len(train.row(u)))
        estimates.append(np.bincount(row, weights=weight * x[item], minlength=len(users)))
    truth = np.array([x[train.row(u)].mean() for u in users])
    np.testing.assert_allclose(np.mean(estimates, axis=0), truth, atol=0.05)


@pytest.mark.parametrize("extra,match", [({"user_content_in_score": True}, "user_content_in_score"),
                                         ({"frontdoor": FrontdoorConfig(mediator_items="content")}, "mediator_items"),
                                         ({"profile_fanout": 0}, "profile_fanout"),
                                         ({"id_contrast": IdContrastConfig(loss_weight=0.1)}, "id_contrast")])
def test_unsupported_sampled_settings_are_clear_errors(extra, match) -> None:
    with pytest.raises(ValueError, match=match):
        _model("sampled", **extra)


def test_front_door_layers_must_match_the_fanouts() -> None:
    cfg = CausalConfig(backbone=LightGCNConfig(graph_mode="sampled", fanouts=[5, 5, 5]))
    train = _graph()
    with pytest.raises(ValueError, match="one fanout per frontdoor.num_layers"):
        CausalRec(IdTables(U, I, D), num_layers=3, adjacency=None, features={"a": torch.randn(I, 3),
                  "b": torch.randn(I, 3)}, train=train, reg_weight=0.0, cfg=cfg)
