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


# ---- sampled mini-batch mode ------------------------------------------------------------------

from data_loaders.graph import CSR, lightgcn_adjacency  # noqa: E402
from data_loaders.neighbors import NeighborGraph  # noqa: E402
from models.lightgcn import LightGCNConfig  # noqa: E402

GU, GI = 60, 40


def _random_graph(seed: int = 0) -> CSR:
    """Skewed degrees (max ~20) and a few repeated pairs."""
    rng = np.random.default_rng(seed)
    users = np.minimum((rng.pareto(1.5, 400) * 5).astype(np.int64), GU - 1)
    items = np.minimum((rng.pareto(1.0, 400) * 4).astype(np.int64), GI - 1)
    return CSR.from_pairs(users, items, GU, GI)


def _pair(train: CSR, fanouts: list[int], num_layers: int, reg_weight: float = 1e-2, **kw):
    """A full and a sampled LightGCN over the SAME tables."""
    torch.manual_seed(0)
    tables = IdTables(GU, GI, D, device="cpu")
    full = LightGCN(GU, GI, D, num_layers, lightgcn_adjacency(train), tables, reg_weight)
    sampled = LightGCN(GU, GI, D, num_layers, None, tables, reg_weight,
                       cfg=LightGCNConfig(graph_mode="sampled", fanouts=fanouts, **kw), train=train, seed=3)
    return full, sampled


def _batch(seed: int = 1, size: int = 24):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, GU, (size,), generator=g), torch.randint(0, GI, (size,), generator=g),
            torch.randint(0, GI, (size,), generator=g))


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_sampled_with_fanout_at_max_degree_equals_full_graph(num_layers):
    train = _random_graph()
    max_degree = NeighborGraph.from_csr(train).max_degree()
    full, sampled = _pair(train, [max_degree] * num_layers, num_layers)
    users, pos, neg = _batch()
    # Batch-node embeddings: every layer mean equals the full propagation's rows.
    sub = sampled.sample(users, pos, neg)
    mean, ego = sampled.sampled_layer_mean(sub)
    user_all, item_all = full.propagate()
    want = torch.cat([user_all, item_all])[torch.from_numpy(sub.nodes[:sub.sizes[0]])]
    torch.testing.assert_close(mean, want, rtol=1e-5, atol=1e-5)
    # Loss and every table gradient.
    grads = {}
    for name, model in (("full", full), ("sampled", sampled)):
        model.tables.zero_grad()
        out = model(users, pos, neg)
        out["loss"].backward()
        grads[name] = (out, [p.grad.clone() for p in model.tables.parameters()])
    (out_f, g_f), (out_s, g_s) = grads["full"], grads["sampled"]
    for key in ("loss", "bpr", "reg"):
        torch.testing.assert_close(out_s[key], out_f[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(g_f, g_s):
        assert a.abs().max() > 0
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_sampled_layer_mean_is_unbiased_with_small_fanouts():
    """Mean over draws of the batch nodes' sampled layer mean -> the full one (5 standard errors)."""
    train = _random_graph()
    full, sampled = _pair(train, [2, 3], 2)
    users, pos, neg = _batch()
    with torch.no_grad():
        user_all, item_all = full.propagate()
        everything = torch.cat([user_all, item_all]).double().numpy()
        draws = []
        for _ in range(400):
            sub = sampled.sample(users, pos, neg)
            mean, _ = sampled.sampled_layer_mean(sub)
            draws.append(mean.double().numpy())
            assert all(np.bincount(d, minlength=s).max() <= f
                       for (d, _, _), s, f in zip(sub.hops, sub.sizes, [2, 3]))  # bounded per node
    draws = np.stack(draws)
    want = everything[sub.nodes[:sub.sizes[0]]]
    se = draws.std(0, ddof=1) / np.sqrt(len(draws))
    err = np.abs(draws.mean(0) - want)
    assert (se > 1e-4).mean() > 0.5  # really subsampled
    assert np.all(err <= 5 * se + 1e-6), (err / np.maximum(se, 1e-12)).max()


def test_sampled_training_is_reproducible_by_seed_epoch_and_step():
    train = _random_graph()
    users, pos, neg = _batch()

    def losses(epochs):
        _, model = _pair(train, [3, 3], 2)
        out = []
        for epoch in epochs:
            model.start_epoch(epoch)
            out.append([float(model(users, pos, neg)["loss"].detach()) for _ in range(3)])
        return out

    a, b = losses([0, 1]), losses([0, 1])
    assert a == b
    assert len(set(a[0])) == 3  # each step draws its own subgraph
    assert a[0] != a[1]  # and each epoch
    assert losses([1])[0] == a[1]  # (seed, epoch, step) alone decides a step's sample


def test_sampled_training_lowers_the_loss():
    train = _random_graph()
    _, model = _pair(train, [4, 4], 2)
    users, pos, neg = _batch(size=60)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for step in range(30):
        opt.zero_grad()
        out = model(users, pos, neg)
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.05


@pytest.mark.parametrize("chunk", [7, 4_000_000])
def test_sampled_mode_evaluates_the_full_graph_in_chunks(chunk):
    train = _random_graph()
    full, sampled = _pair(train, [2, 2], 2, eval_chunk_edges=chunk)
    for a, b in zip(full.final_embeddings(), sampled.final_embeddings()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_sampled_mode_holds_no_adjacency_and_the_same_state():
    full, sampled = _pair(_random_graph(), [2, 2], 2)
    assert sampled.adjacency is None and list(sampled.buffers()) == []
    assert sampled.state_dict().keys() == full.state_dict().keys()
    assert sampled.start_epoch(4) == {}


@pytest.mark.parametrize("kw,match", [({"fanouts": [3]}, "one positive integer fanout per layer"),
                                      ({"fanouts": [3, 0]}, "one positive integer fanout per layer"),
                                      ({"graph_mode": "bogus"}, "graph_mode")])
def test_bad_sampled_config_is_refused(kw, match):
    cfg = LightGCNConfig(**{"graph_mode": "sampled", **kw})
    with pytest.raises(ValueError, match=match):
        LightGCN(GU, GI, D, 2, None, IdTables(GU, GI, D, device="cpu"), 0.0, cfg=cfg, train=_random_graph())
    with pytest.raises(ValueError, match="training CSR"):
        LightGCN(GU, GI, D, 2, None, IdTables(GU, GI, D, device="cpu"), 0.0,
                 cfg=LightGCNConfig(graph_mode="sampled", fanouts=[2, 2]))


def _dropped(edge_keep: float, seed: int = 3) -> tuple[LightGCN, CSR]:
    train = _random_graph()
    torch.manual_seed(0)
    model = LightGCN(GU, GI, D, 2, lightgcn_adjacency(train), IdTables(GU, GI, D, device="cpu"), 0.0,
                     cfg=LightGCNConfig(edge_keep=edge_keep), train=train, seed=seed)
    return model, train


def test_edge_dropout_trains_on_the_kept_edges_and_evaluates_on_all() -> None:
    model, train = _dropped(0.6)
    stats = model.start_epoch(2)
    keep = np.random.default_rng([3, 2, 7]).random(train.nnz) < 0.6
    assert stats["backbone/kept_edges"] == pytest.approx(keep.mean())
    kept = CSR.from_pairs(train.row_ids()[keep], train.indices[keep], GU, GI)
    x = torch.randn(GU + GI, D)
    # Training mode: the kept edges' graph, normalised by the kept degrees; eval mode: the full graph.
    model.train()
    torch.testing.assert_close(model._full_mm(x), lightgcn_adjacency(kept).to_dense() @ x)
    model.eval()
    torch.testing.assert_close(model._full_mm(x), lightgcn_adjacency(train).to_dense() @ x)
    # The full graph's propagation is what final_embeddings returns.
    full, _ = _pair(train, [2, 2], 2)
    torch.testing.assert_close(model.final_embeddings()[0], full.final_embeddings()[0])


def test_edge_dropout_is_redrawn_per_epoch_and_reproducible() -> None:
    a, _ = _dropped(0.5)
    b, _ = _dropped(0.5)
    x = torch.randn(GU + GI, D)
    a.start_epoch(1), b.start_epoch(1)
    first = a._full_mm(x)
    torch.testing.assert_close(first, b._full_mm(x), rtol=0, atol=0)  # same seed and epoch: same graph
    a.start_epoch(2)
    assert not torch.allclose(first, a._full_mm(x))  # a new draw each epoch


def test_edge_keep_one_is_off_and_bad_values_are_refused() -> None:
    model, _ = _dropped(1.0)
    assert model.start_epoch(0) == {} and model.train_adjacency is None
    with pytest.raises(ValueError, match=r"edge_keep must be in \(0, 1\], got 0.0"):
        _dropped(0.0)
    with pytest.raises(ValueError, match="edge_keep=0.5 needs graph_mode 'full'"):
        LightGCN(GU, GI, D, 2, None, IdTables(GU, GI, D, device="cpu"), 0.0,
                 cfg=LightGCNConfig(graph_mode="sampled", fanouts=[2, 2], edge_keep=0.5), train=_random_graph())
    with pytest.raises(ValueError, match="edge_keep < 1 needs the training CSR"):
        LightGCN(GU, GI, D, 2, lightgcn_adjacency(_random_graph()), IdTables(GU, GI, D, device="cpu"), 0.0,
                 cfg=LightGCNConfig(edge_keep=0.5))


def test_candidate_pools_train_on_each_rows_hardest_negative():
    # train.negative_candidates: the loss of [B, M] candidates is the loss of the candidates the
    # current propagation scores highest, chosen per row.
    model = _model()
    users, pos = torch.tensor([0, 2, 4]), torch.tensor([2, 3, 2])
    pools = torch.tensor([[1, 3], [0, 2], [0, 3]])
    user_all, item_all = model.propagate()
    scores = (user_all[users].unsqueeze(1) * item_all[pools]).sum(-1)
    hardest = pools.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    got, want = model(users, pos, pools), model(users, pos, hardest)
    for key in want:
        torch.testing.assert_close(got[key], want[key])
    # The other candidates are easier: a smaller BPR loss (so a fixed column could not pass).
    other = pools.gather(1, (1 - scores.argmax(1, keepdim=True))).squeeze(1)
    assert float(model(users, pos, other)["bpr"].detach()) < float(got["bpr"].detach())


def test_norm_power_propagates_with_its_matrix_and_differentiates_through_its_transpose() -> None:
    train = _random_graph()
    torch.manual_seed(0)
    cfg = LightGCNConfig(norm_power=0.7, edge_keep=0.6)
    adj = lightgcn_adjacency(train, norm_power=0.7)
    model = LightGCN(GU, GI, D, 2, adj, IdTables(GU, GI, D, device="cpu"), 0.0, cfg=cfg, train=train, seed=3)
    x = torch.randn(GU + GI, D, requires_grad=True)
    model.eval()
    out = model._full_mm(x)
    torch.testing.assert_close(out, adj.to_dense() @ x)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad, adj.to_dense().t() @ g)  # A^T, not A: the matrix is not symmetric
    # Edge dropout's per-epoch graph keeps the same normalisation power.
    model.start_epoch(2)
    keep = np.random.default_rng([3, 2, 7]).random(train.nnz) < 0.6
    kept = CSR.from_pairs(train.row_ids()[keep], train.indices[keep], GU, GI)
    model.train()
    torch.testing.assert_close(model._full_mm(x), lightgcn_adjacency(kept, norm_power=0.7).to_dense() @ x)
    with pytest.raises(ValueError, match="norm_power=0.7 needs graph_mode 'full'"):
        LightGCN(GU, GI, D, 2, None, IdTables(GU, GI, D, device="cpu"), 0.0,
                 cfg=LightGCNConfig(graph_mode="sampled", fanouts=[2, 2], norm_power=0.7), train=train)
