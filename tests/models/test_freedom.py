"""FREEDOM: degree-sensitive pruning, the two graphs, the loss, gradients and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_loaders.graph import CSR, lightgcn_adjacency
from models.embeddings import IdTables
from models.freedom import Freedom, FreedomConfig, degree_pruned_edges
from models.knn import mixed_knn_graph
from models.registry import build_model

U, I, D = 9, 12, 8


def _train(seed: int = 0, edges: int = 40) -> CSR:
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(0, U, edges), rng.integers(0, I, edges)], 1), axis=0)
    return CSR.from_pairs(pairs[:, 0], pairs[:, 1], U, I)


def _features() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(I, 5, generator=g), "audio": torch.randn(I, 3, generator=g)}


def _model(seed: int = 0, **options) -> Freedom:
    torch.manual_seed(seed)
    cfg = FreedomConfig(**{"knn_k": 3, "keep_ratio": 0.5, "modality_loss_weight": 0.1, **options})
    return Freedom(U, I, D, 2, IdTables(U, I, D), _features(), _train(), cfg, seed=7)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    train = _train()
    pick = torch.arange(0, train.nnz, 2)
    users = torch.from_numpy(train.row_ids())[pick]
    return users, torch.from_numpy(train.indices)[pick], torch.randint(0, I, (pick.numel(),),
                                                                        generator=torch.Generator().manual_seed(3))


# --- pruning -------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9, 1.0])
def test_pruning_keeps_the_configured_fraction(ratio):
    train = _train()
    kept = degree_pruned_edges(train, ratio, seed=0, epoch=3)
    assert kept.size == int(train.nnz * ratio) and np.unique(kept).size == kept.size
    assert np.all(np.diff(kept) > 0) and kept.min() >= 0 and kept.max() < train.nnz


def test_pruning_is_a_function_of_seed_and_epoch_only():
    train = _train(edges=200)
    same = degree_pruned_edges(train, 0.3, seed=5, epoch=2)
    np.testing.assert_array_equal(same, degree_pruned_edges(train, 0.3, seed=5, epoch=2))
    torch.manual_seed(123)  # the global RNGs play no part (ranks may have consumed them differently)
    np.random.seed(123)
    np.testing.assert_array_equal(same, degree_pruned_edges(train, 0.3, seed=5, epoch=2))
    assert not np.array_equal(same, degree_pruned_edges(train, 0.3, seed=5, epoch=3))
    assert not np.array_equal(same, degree_pruned_edges(train, 0.3, seed=6, epoch=2))


def test_pruning_samples_like_mmrecs_weighted_multinomial_without_replacement():
    # User 0 and item 0 are hubs (degree 20); users 1..20 also each hold one private item, so
    # 1/sqrt(d_u d_i) is 0.71 for private edges, 0.22 and 0.16 for hub edges.
    rows = np.concatenate([np.zeros(20), np.arange(1, 21), np.arange(1, 21)])
    cols = np.concatenate([np.arange(1, 21), np.zeros(20), np.arange(21, 41)])
    train = CSR.from_pairs(rows, cols, 21, 41)
    reps, keep = 4000, 20
    ours = np.zeros(train.nnz)
    for epoch in range(reps):
        ours[degree_pruned_edges(train, keep / train.nnz, seed=0, epoch=epoch)] += 1
    degree_u, degree_i = np.bincount(train.row_ids()), np.bincount(train.indices)
    prob = torch.tensor(1.0 / np.sqrt(degree_u[train.row_ids()] * degree_i[train.indices]))
    g = torch.Generator().manual_seed(0)
    reference = np.zeros(train.nnz)
    for _ in range(reps):
        reference[torch.multinomial(prob, keep, generator=g).numpy()] += 1
    np.testing.assert_allclose(ours / reps, reference / reps, atol=0.05)  # ~4 standard errors
    assert (ours / reps)[train.indices >= 21].mean() > 0.5  # a uniform sample keeps 1/3


def test_start_epoch_renormalises_the_kept_graph_without_nan():
    model = _model(keep_ratio=0.2)  # 20% of ~36 edges: most users and items lose every edge
    stats = model.start_epoch(4)
    kept = degree_pruned_edges(model.train_graph, 0.2, seed=7, epoch=4)
    assert stats == {"kept_edges": float(kept.size)}
    pruned = CSR.from_pairs(model.train_graph.row_ids()[kept], model.train_graph.indices[kept], U, I)
    want = lightgcn_adjacency(pruned).to_dense()
    torch.testing.assert_close(model.train_adjacency.to_dense(), want)
    assert (want.sum(1) == 0).any()  # isolated nodes exist ...
    out = model(*_batch())
    assert all(torch.isfinite(v) for v in out.values())  # ... and give no NaN
    assert model.start_epoch(4) == stats  # the same graph again
    torch.testing.assert_close(model.train_adjacency.to_dense(), want)


def test_keep_ratio_one_trains_on_the_full_graph():
    model = _model(keep_ratio=1.0)
    assert model.start_epoch(3) == {"kept_edges": float(model.train_graph.nnz)}
    assert model.train_adjacency is model.full_adjacency


# --- representations and loss --------------------------------------------------------------

def test_final_embeddings_are_lightgcn_on_the_full_graph_plus_item_graph_propagation():
    model = _model(item_layers=2, modality_weights={"image": 0.3, "audio": 0.7})
    model.start_epoch(1)  # pruning must not touch evaluation
    ego_u, ego_i = (t.detach().double() for t in model.tables.lookup_all())
    a = lightgcn_adjacency(_train()).to_dense().double()
    s = mixed_knn_graph(_features(), {"image": 0.3, "audio": 0.7}, 3).to_dense().double()
    x = torch.cat([ego_u, ego_i])
    mean = (x + a @ x + a @ a @ x) / 3
    user_all, item_all = model.final_embeddings()
    assert user_all.shape == (U, D) and item_all.shape == (I, D)
    torch.testing.assert_close(user_all.double(), mean[:U], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(item_all.double(), mean[U:] + s @ s @ ego_i, rtol=1e-5, atol=1e-6)


def test_loss_is_bpr_plus_weighted_modality_bprs_plus_reg():
    model = _model(modality_loss_weight=0.3)
    model.reg_weight = 0.01
    users, pos, neg = _batch()
    out = model(users, pos, neg)
    assert {"loss", "bpr", "reg", "bpr_image", "bpr_audio"} == set(out)
    for m in ("image", "audio"):
        user_all = model._propagate(model.train_adjacency)[0][users]
        proj = model.features[m] @ model.projections[m].weight.T
        diff = (user_all * proj[pos]).sum(1) - (user_all * proj[neg]).sum(1)
        torch.testing.assert_close(out[f"bpr_{m}"], -torch.nn.functional.logsigmoid(diff).mean())
    torch.testing.assert_close(out["loss"], out["bpr"] + 0.3 * (out["bpr_image"] + out["bpr_audio"])
                               + 0.01 * out["reg"])


@pytest.mark.parametrize("weight", [0.0, 0.1])
def test_gradients_reach_every_dense_parameter(weight):
    # DDP's static graph needs every dense parameter in every step, even at weight 0.
    model = _model(modality_loss_weight=weight)
    model(*_batch())["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        if weight and "tables" not in name:
            assert p.grad.abs().sum() > 0, name


def test_frozen_features_are_not_trained():
    model = _model(train_features=False)
    assert not any(p.requires_grad for p in model.features.parameters())
    model(*_batch())["loss"].backward()
    assert all(p.grad is None for p in model.features.parameters())


def test_loss_decreases():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = _batch()
    losses = []
    for epoch in range(30):
        model.start_epoch(epoch)
        out = model(*batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_registry_builds_freedom_with_its_options():
    model = build_model("freedom", num_users=U, num_items=I, adjacency=None, dim=D, num_layers=1, reg_weight=0.0,
                        device="cpu", features=_features(), train=_train(), seed=3,
                        options=FreedomConfig(knn_k=2, keep_ratio=0.5))
    assert isinstance(model, Freedom) and model.seed == 3 and model.item_graph.nnz <= 2 * I * 2
    with pytest.raises(ValueError, match="training graph and the item features"):
        build_model("freedom", num_users=U, num_items=I, adjacency=None, dim=D, num_layers=1, reg_weight=0.0,
                    device="cpu")


@pytest.mark.parametrize("options,match", [({"keep_ratio": 0.0}, "keep_ratio"), ({"item_layers": -1}, "layers")])
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        _model(**options)


def test_candidate_pools_train_on_each_rows_hardest_negative():
    model = _model()
    users, pos, _ = _batch()
    pools = torch.randint(0, I, (users.numel(), 4), generator=torch.Generator().manual_seed(5))
    user_all, item_all = model._propagate(model.train_adjacency)[:2]
    scores = (user_all[users].unsqueeze(1) * item_all[pools]).sum(-1)
    hardest = pools.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)
    got, want = model(users, pos, pools), model(users, pos, hardest)
    for key in want:  # the modality BPR terms use the picked negatives too
        torch.testing.assert_close(got[key], want[key])
