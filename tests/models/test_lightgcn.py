"""LightGCN: propagation equals a dense numpy reference; the BPR loss trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.embeddings import IdTables
from models.lightgcn import LightGCN

U, I, D = 5, 4, 8
EDGES = np.array([[0, 0], [0, 2], [1, 1], [2, 1], [2, 3], [3, 0], [4, 2]])  # user 4 and item 3: degree 1


def _normalised_dense() -> np.ndarray:
    a = np.zeros((U + I, U + I))
    a[EDGES[:, 0], U + EDGES[:, 1]] = a[U + EDGES[:, 1], EDGES[:, 0]] = 1.0
    deg = a.sum(1)
    inv = np.where(deg > 0, deg ** -0.5, 0.0)
    return inv[:, None] * a * inv[None, :]


def _model(num_layers: int = 2, reg_weight: float = 1e-3, **kw) -> LightGCN:
    torch.manual_seed(0)
    adjacency = torch.tensor(_normalised_dense(), dtype=torch.float32).to_sparse()
    return LightGCN(U, I, D, num_layers, adjacency, IdTables(U, I, D, device="cpu"), reg_weight, **kw)


@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_propagate_equals_the_dense_layer_mean(num_layers):
    model = _model(num_layers)
    ego = torch.cat(model.tables.lookup_all()).detach().double().numpy()
    a_hat = _normalised_dense()
    layers = [ego]
    for _ in range(num_layers):
        layers.append(a_hat @ layers[-1])
    want = np.mean(layers, axis=0)
    user_all, item_all = model.propagate()
    assert user_all.shape == (U, D) and item_all.shape == (I, D)
    np.testing.assert_allclose(torch.cat([user_all, item_all]).detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_loss_is_mmrec_bpr_plus_ego_regulariser():
    model = _model(reg_weight=0.5)
    users, pos, neg = torch.tensor([0, 2, 4]), torch.tensor([2, 3, 2]), torch.tensor([1, 0, 3])
    out = model(users, pos, neg)
    user_all, item_all = model.propagate()
    ego_u, ego_i = model.tables.lookup_all()
    diff = (user_all[users] * item_all[pos]).sum(1) - (user_all[users] * item_all[neg]).sum(1)
    bpr = -torch.log(1e-10 + torch.sigmoid(diff)).mean()
    reg = (ego_u[users].norm() + ego_i[pos].norm() + ego_i[neg].norm()) / 3
    torch.testing.assert_close(out["bpr"], bpr)
    torch.testing.assert_close(out["reg"], reg)
    torch.testing.assert_close(out["loss"], bpr + 0.5 * reg)


def test_squared_regulariser():
    model = _model(reg_type="squared")
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 1]), torch.tensor([3, 3])
    ego_u, ego_i = model.tables.lookup_all()
    want = (ego_u[users].square().sum() + ego_i[pos].square().sum() + ego_i[neg].square().sum()) / 2
    torch.testing.assert_close(model(users, pos, neg)["reg"], want)


def test_gradients_are_finite_and_sgd_lowers_the_loss():
    model = _model()
    users, pos, neg = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 1, 3, 0, 2]), torch.tensor([1, 2, 0, 3, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        out = model(users, pos, neg)
        out["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 1e-3


def test_final_embeddings_are_detached_propagation():
    model = _model()
    user_all, item_all = model.final_embeddings()
    assert not user_all.requires_grad and not item_all.requires_grad
    want_u, want_i = model.propagate()
    torch.testing.assert_close(user_all, want_u.detach())
    torch.testing.assert_close(item_all, want_i.detach())


def test_adjacency_is_neither_parameter_nor_buffer_nor_state():
    model = _model()
    assert list(model.buffers()) == []
    assert all("adjacency" not in key for key in model.state_dict())
    assert model.to_device("cpu").adjacency.device.type == "cpu"


@pytest.mark.parametrize("bad,match", [(torch.zeros(U + I, U + I), "sparse"),
                                       (torch.zeros(3, 3).to_sparse(), r"expected \(9, 9\)")])
def test_bad_adjacency_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        LightGCN(U, I, D, 2, bad, IdTables(U, I, D, device="cpu"), 0.0)
