"""Item-item kNN graphs: chunked top-k equals a dense brute force; D^-1/2 S D^-1/2; modality mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.knn import knn_indices, mixed_knn_graph, normalised_knn_graph

I, F = 23, 6


def _features(seed: int = 0, n: int = I, dim: int = F) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _brute_force(features: torch.Tensor, k: int, self_loops: bool) -> np.ndarray:
    unit = features.double() / features.double().norm(dim=1, keepdim=True)
    sim = unit @ unit.T
    if not self_loops:
        sim.fill_diagonal_(float("-inf"))
    return np.sort(sim.topk(k, dim=1).indices.numpy(), axis=1)


def _dense(graph: torch.Tensor) -> np.ndarray:
    return graph.to_dense().double().numpy()


@pytest.mark.parametrize("row_chunk,col_chunk", [(1, 1), (4, 5), (7, 3), (I, I), (1000, 1000)])
@pytest.mark.parametrize("k,self_loops", [(1, True), (4, True), (4, False), (I - 1, False)])
def test_chunked_topk_equals_brute_force(row_chunk, col_chunk, k, self_loops):
    features = _features()
    got = knn_indices(features, k, self_loops=self_loops, row_chunk=row_chunk, col_chunk=col_chunk)
    assert got.shape == (I, k) and got.dtype == torch.int64
    np.testing.assert_array_equal(np.sort(got.numpy(), axis=1), _brute_force(features, k, self_loops))


def test_self_loops_only_when_asked():
    features = _features()
    with_self = knn_indices(features, 3, self_loops=True, row_chunk=5, col_chunk=4)
    without = knn_indices(features, 3, self_loops=False, row_chunk=5, col_chunk=4)
    items = torch.arange(I)[:, None]
    assert (with_self == items).any(1).all()  # distinct features: an item is its own nearest
    assert not (without == items).any()


def test_normalisation_is_d_inv_sqrt_s_d_inv_sqrt_with_row_degrees():
    neighbours = knn_indices(_features(), 4, row_chunk=6, col_chunk=7)
    graph = normalised_knn_graph(neighbours)
    s = np.zeros((I, I))
    s[np.repeat(np.arange(I), 4), neighbours.reshape(-1).numpy()] = 1.0
    inv = s.sum(1) ** -0.5
    np.testing.assert_allclose(_dense(graph), inv[:, None] * s * inv[None, :], rtol=1e-6)
    assert graph.is_coalesced() and graph._nnz() == I * 4
    np.testing.assert_allclose(graph.values().numpy(), 0.25)  # k entries per row: each 1/k


def test_zero_feature_rows_give_no_nan():
    features = _features()
    features[[2, 5]] = 0.0
    graph = normalised_knn_graph(knn_indices(features, 3, row_chunk=4, col_chunk=4))
    assert torch.isfinite(graph.values()).all()


def test_mixture_is_the_normalised_weighted_sum():
    features = {"image": _features(1), "audio": _features(2, dim=3)}
    parts = {m: _dense(normalised_knn_graph(knn_indices(f, 3))) for m, f in features.items()}
    got = _dense(mixed_knn_graph(features, {"image": 1.0, "audio": 3.0}, 3, row_chunk=5, col_chunk=6))
    np.testing.assert_allclose(got, 0.25 * parts["image"] + 0.75 * parts["audio"], rtol=1e-6, atol=1e-7)
    only_audio = _dense(mixed_knn_graph(features, {"image": 0.0, "audio": 2.0}, 3))
    np.testing.assert_allclose(only_audio, parts["audio"], rtol=1e-6)


@pytest.mark.parametrize("weights,match", [({"text": 1.0}, "text"), ({}, "none"),
                                           ({"image": -1.0}, ">= 0"), ({"image": 0.0}, "positive sum")])
def test_bad_weights_are_refused(weights, match):
    with pytest.raises(ValueError, match=match):
        mixed_knn_graph({"image": _features()}, weights, 3)


@pytest.mark.parametrize("k,self_loops", [(0, True), (I + 1, True), (I, False)])
def test_k_out_of_range_is_refused(k, self_loops):
    with pytest.raises(ValueError, match="k must be in"):
        knn_indices(_features(), k, self_loops=self_loops)
