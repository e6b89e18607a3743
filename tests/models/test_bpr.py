"""BPR-MF and the shared BPR loss terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bpr import BPRMF, bpr_loss_terms
from models.embeddings import IdTables


def _model(reg_weight: float = 1e-3) -> BPRMF:
    torch.manual_seed(0)
    return BPRMF(IdTables(6, 5, 8, init="xavier_normal", device="cpu"), reg_weight)


def test_forward_scores_dot_products_of_ego_rows():
    model = _model(reg_weight=0.2)
    users, pos, neg = torch.tensor([0, 5, 5]), torch.tensor([1, 2, 4]), torch.tensor([0, 0, 3])
    out = model(users, pos, neg)
    user_w, item_w = model.tables.lookup_all()
    want = bpr_loss_terms(user_w[users], item_w[pos], item_w[neg], (user_w[users], item_w[pos], item_w[neg]),
                          reg_weight=0.2)
    assert set(out) == {"loss", "bpr", "reg"}
    for key in out:
        torch.testing.assert_close(out[key], want[key])


def test_gradients_are_finite_and_sgd_lowers_the_loss():
    model = _model()
    users, pos, neg = torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([4, 3, 0, 1, 2, 1])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        out = model(users, pos, neg)
        out["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 1e-3


def test_final_embeddings_are_the_tables():
    model = _model()
    user_all, item_all = model.final_embeddings()
    assert user_all.shape == (6, 8) and item_all.shape == (5, 8) and not user_all.requires_grad
    torch.testing.assert_close(user_all, model.tables.ebc.embedding_bags["user"].weight.detach())


def test_bpr_loss_matches_mmrec_formula():
    u, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    out = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1)
    bpr = -np.log(1e-10 + 1 / (1 + np.exp(-2.0)))
    assert out["bpr"].item() == pytest.approx(bpr, rel=1e-6)
    assert out["reg"].item() == pytest.approx(1.0 + 2.0 + 1.0)  # Frobenius norms / batch of 1
    assert out["loss"].item() == pytest.approx(bpr + 0.4, rel=1e-6)


def test_weighted_bpr_is_the_weighted_mean_and_zero_weight_stops_the_gradient():
    g = torch.Generator().manual_seed(3)
    u, p, n = (torch.randn(5, 4, generator=g, requires_grad=True) for _ in range(3))
    plain = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1)
    ones = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1, weight=torch.ones(5))
    torch.testing.assert_close(ones["loss"], plain["loss"])
    w = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    out = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.0, weight=w)
    terms = -torch.log(1e-10 + torch.sigmoid((u * p).sum(-1) - (u * n).sum(-1)))
    torch.testing.assert_close(out["bpr"], (w * terms).sum() / w.sum())
    out["loss"].backward()
    assert p.grad[1].abs().sum() == 0 and p.grad[4].abs().sum() == 0  # weight 0: no pull on the positive
    assert p.grad[0].abs().sum() > 0
