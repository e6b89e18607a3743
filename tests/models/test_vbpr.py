"""VBPR: [ID ; projected content] items, double-width users, BPR + reg, gradients, training."""

from __future__ import annotations

import pytest
import torch

from models.embeddings import IdTables
from models.registry import build_model
from models.vbpr import VBPR, VBPRConfig, concat_features

U, I, D = 6, 9, 4


def _features() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(I, 5, generator=g), "audio": torch.randn(I, 3, generator=g)}


def _model(reg_weight: float = 0.0) -> VBPR:
    torch.manual_seed(0)
    return VBPR(IdTables(U, I, D, user_dim=2 * D), concat_features(_features(), []), reg_weight)


USERS, POS, NEG = torch.tensor([0, 1, 5, 3]), torch.tensor([2, 8, 0, 4]), torch.tensor([1, 1, 7, 6])


def test_final_embeddings_are_id_plus_projected_content():
    model = _model()
    user_all, item_all = model.final_embeddings()
    assert user_all.shape == (U, 2 * D) and item_all.shape == (I, 2 * D)
    ego_u, ego_i = model.tables.lookup_all()
    features = torch.cat([_features()["audio"], _features()["image"]], 1)  # name order
    torch.testing.assert_close(user_all, ego_u)
    torch.testing.assert_close(item_all[:, :D], ego_i)
    torch.testing.assert_close(item_all[:, D:], features @ model.content.weight.T + model.content.bias)


def test_loss_is_bpr_plus_reg_on_the_scored_vectors():
    model = _model(reg_weight=0.5)
    out = model(USERS, POS, NEG)
    user_all, item_all = model.propagate()
    u, p, n = user_all[USERS], item_all[POS], item_all[NEG]
    bpr = -torch.log(1e-10 + torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    reg = (u.norm() + p.norm() + n.norm()) / len(USERS)
    torch.testing.assert_close(out["bpr"], bpr)
    torch.testing.assert_close(out["reg"], reg)
    torch.testing.assert_close(out["loss"], bpr + 0.5 * reg)


def test_gradients_reach_every_parameter():
    model = _model(reg_weight=0.1)
    model(USERS, POS, NEG)["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_decreases():
    model = _model(reg_weight=1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        out = model(USERS, POS, NEG)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_modalities_are_selected_and_checked():
    assert concat_features(_features(), ["image"]).shape == (I, 5)
    assert concat_features(_features(), []).shape == (I, 8)
    with pytest.raises(ValueError, match="text"):
        concat_features(_features(), ["text"])
    with pytest.raises(ValueError, match="none"):
        concat_features({}, [])


def test_user_table_must_be_twice_as_wide():
    with pytest.raises(ValueError, match="twice as wide"):
        VBPR(IdTables(U, I, D), concat_features(_features(), []), 0.0)


def test_registry_builds_vbpr_with_a_double_width_user_table():
    model = build_model("vbpr", num_users=U, num_items=I, adjacency=None, dim=D, num_layers=0, reg_weight=0.0,
                        device="cpu", features=_features(), options=VBPRConfig(modalities=["audio"]))
    assert isinstance(model, VBPR) and model.tables.user_dim == 2 * D and model.features.shape == (I, 3)
    user_all, item_all = model.final_embeddings()
    assert user_all.shape == (U, 2 * D) and item_all.shape == (I, 2 * D)


def test_vbpr_refuses_candidate_pools():
    with pytest.raises(ValueError, match=r"vbpr: train\.negative_candidates > 1"):
        _model()(torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 3]]))
