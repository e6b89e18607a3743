"""The co-interaction and content views (models/views.py) and their wiring into the causal model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from data_loaders.graph import CSR, lightgcn_adjacency
from models.causal import CausalConfig, CausalRec
from models.embeddings import IdTables
from models.views import Views, ViewsConfig, check_views_config, co_interaction_graph

U, I, D = 12, 10, 8


def _train() -> CSR:
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, U * I, size=50))
    return CSR.from_pairs(keys // I, keys % I, U, I)


def _features() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"image": torch.randn(I, 6), "audio": torch.randn(I, 5)}


def test_co_interaction_graph_is_row_normalised_shared_counts_without_the_diagonal() -> None:
    # Users 0 and 1 share items 0 and 1, users 0 and 2 share item 2; user 3 shares nothing.
    train = CSR.from_pairs(np.array([0, 0, 0, 1, 1, 2, 3]), np.array([0, 1, 2, 0, 1, 2, 3]), 4, 4)
    a = co_interaction_graph(train, 4).to_dense()
    expected = torch.tensor([[0, 2 / 3, 1 / 3, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(a, expected)


def test_co_interaction_graph_keeps_each_users_top_k_by_shared_count_then_smaller_id() -> None:
    r = _train()
    full = co_interaction_graph(r, U).to_dense()
    dense = torch.zeros(U, I)
    dense[torch.from_numpy(r.row_ids()).long(), torch.from_numpy(r.indices).long()] = 1
    counts = dense @ dense.t()
    counts.fill_diagonal_(0)
    torch.testing.assert_close(full, counts / counts.sum(1, keepdim=True).clamp_min(1e-12))
    cut = co_interaction_graph(r, U, top_k=2).to_dense()
    for u in range(U):
        nonzero = (counts[u] > 0).nonzero().flatten().tolist()
        ranked = sorted(nonzero, key=lambda v: (-float(counts[u, v]), v))[:2]
        assert (cut[u] > 0).nonzero().flatten().tolist() == sorted(ranked)
        kept = counts[u, ranked]
        torch.testing.assert_close(cut[u, ranked], kept / kept.sum())


def test_views_are_unit_rows_propagated_from_their_own_tables_and_get_gradients() -> None:
    cfg = ViewsConfig(enabled=True, user_layers=2, item_knn_k=3, item_layers=1)
    views = Views(U, I, D, _train(), _features(), cfg)
    user, item = views()
    t_u, t_i = views.tables.lookup_all()
    a_uu, s_ii = views.user_graph.to_dense(), views.item_graph.to_dense()
    want_u = torch.nn.functional.normalize(a_uu @ (a_uu @ t_u), dim=-1)
    torch.testing.assert_close(user, want_u)
    torch.testing.assert_close(item, torch.nn.functional.normalize(s_ii @ t_i, dim=-1))
    per_row = (s_ii > 0).sum(1)  # k neighbours per modality, two modalities mixed
    assert ((per_row >= 3) & (per_row <= 6)).all()
    h_u, h_i = torch.randn(U, D), torch.randn(I, D)
    loss = views.loss(torch.tensor([0, 1, 2]), torch.tensor([3, 4]), h_u, user, h_i, item)
    loss.backward()
    grads = [p.grad for p in views.tables.parameters()]
    assert loss > 0 and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("key, value", [("user_top_k", -1), ("item_knn_k", 0), ("temperature", 0.0),
                                        ("loss_weight", -0.1), ("max_nodes", 0), ("user_layers", -1)])
def test_bad_settings_are_refused_with_their_key(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"views.{key}"):
        check_views_config(dataclasses.replace(ViewsConfig(), **{key: value}))


def _model(views: bool) -> CausalRec:
    torch.manual_seed(0)
    train = _train()
    cfg = CausalConfig(views=ViewsConfig(enabled=views, item_knn_k=3))
    cfg.backdoor = dataclasses.replace(cfg.backdoor, coarse_codes=3, fine_codes=4)
    return CausalRec(IdTables(U, I, D), num_layers=2, adjacency=lightgcn_adjacency(train), features=_features(),
                     train=train, reg_weight=1e-4, cfg=cfg)


def test_causal_model_adds_the_views_to_both_sides_of_the_score_and_trains_their_tables() -> None:
    off, on = _model(False), _model(True)
    assert off.views is None and not any(n.startswith("views.") for n in off.state_dict())
    on.eval()
    with torch.no_grad():
        r = on.represent()
        plain = r.id_item + r.gate_backdoor * r.backdoor_item + r.gate_frontdoor * r.frontdoor_item
        torch.testing.assert_close(r.item, plain + r.view_item)
        torch.testing.assert_close(r.user, r.id_user + r.gate_frontdoor * r.frontdoor_user + r.view_user)
        user, item = on.final_embeddings()
        torch.testing.assert_close(item, r.item)
    on.train()
    out = on(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8]))
    assert out["views"] > 0
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in on.views.tables.parameters())


def test_sampled_mode_refuses_the_views() -> None:
    cfg = CausalConfig(views=ViewsConfig(enabled=True))
    cfg.backbone = dataclasses.replace(cfg.backbone, graph_mode="sampled")
    with pytest.raises(ValueError, match="views.enabled"):
        CausalRec(IdTables(U, I, D), num_layers=2, adjacency=None, features=_features(), train=_train(),
                  reg_weight=1e-4, cfg=cfg)


def test_gated_views_start_at_the_gate_init_and_learn_the_gate() -> None:
    torch.manual_seed(0)
    train = _train()
    cfg = CausalConfig(views=ViewsConfig(enabled=True, item_knn_k=3, gated=True), gate_init=0.0)
    cfg.backdoor = dataclasses.replace(cfg.backdoor, coarse_codes=3, fine_codes=4)
    model = CausalRec(IdTables(U, I, D), num_layers=2, adjacency=lightgcn_adjacency(train), features=_features(),
                      train=train, reg_weight=1e-4, cfg=cfg)
    model.eval()
    with torch.no_grad():
        r = model.represent()
        # g_v = 0: the score is the model without views, while the views themselves are unit rows.
        torch.testing.assert_close(r.item, r.id_item + r.gate_backdoor * r.backdoor_item
                                   + r.gate_frontdoor * r.frontdoor_item)
        torch.testing.assert_close(r.view_item.norm(dim=-1), torch.ones(I))
    model.train()
    out = model(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8]))
    assert out["views"] > 0  # the InfoNCE reads the unscaled views
    out["loss"].backward()
    assert model.views.gate.grad is not None and model.views.gate.grad != 0
    assert "views.gate" in model.state_dict() and "views.gate" not in _model(True).state_dict()
