"""CSR and LightGCN adjacency against dense numpy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_loaders.format import Split
from data_loaders.writer import DatasetWriter
from data_loaders.graph import CSR, interaction_csr, lightgcn_adjacency
from data_loaders.stream import open_dataset


def _random_pairs(users: int = 9, items: int = 7, n: int = 25, seed: int = 0):
    keys = np.random.default_rng(seed).choice(users * items, size=n, replace=False)
    return keys // items, keys % items


def test_csr_matches_dense() -> None:
    rows, cols = _random_pairs()
    data = np.arange(len(rows), dtype=np.float64) + 1
    csr = CSR.from_pairs(rows, cols, 10, 7, data=data)  # row 9 is empty
    dense = np.zeros((10, 7))
    dense[rows, cols] = data
    assert csr.indptr.shape == (11,) and csr.nnz == len(rows)
    for r in range(10):
        np.testing.assert_array_equal(csr.row(r), np.flatnonzero(dense[r]))  # sorted within row
        np.testing.assert_array_equal(csr.data[csr.indptr[r]:csr.indptr[r + 1]], dense[r][csr.row(r)])
    np.testing.assert_array_equal(csr.degrees(), (dense != 0).sum(axis=1))
    rebuilt = np.zeros_like(dense)
    rebuilt[csr.row_ids(), csr.indices] = csr.data
    np.testing.assert_array_equal(rebuilt, dense)
    with pytest.raises(ValueError, match="outside"):
        CSR.from_pairs([0], [7], 10, 7)


def _dense_lightgcn(users: int, items: int, rows, cols, weights=None) -> np.ndarray:
    r = np.zeros((users, items))
    np.add.at(r, (rows, cols), 1.0 if weights is None else weights)
    a = np.block([[np.zeros((users, users)), r], [r.T, np.zeros((items, items))]])
    d = a.sum(axis=1)
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, 1 / np.sqrt(d), 0.0)
    return inv[:, None] * a * inv[None, :]


def test_lightgcn_adjacency_matches_dense() -> None:
    rows, cols = _random_pairs()
    users, items = 11, 8  # users 9, 10 and item 7 have no edges
    adj = lightgcn_adjacency(CSR.from_pairs(rows, cols, users, items))
    assert adj.is_sparse and adj.is_coalesced() and adj.dtype == torch.float32
    assert adj.shape == (users + items, users + items) and adj._nnz() == 2 * len(rows)
    dense = adj.to_dense().numpy()
    assert np.isfinite(dense).all()
    np.testing.assert_allclose(dense, _dense_lightgcn(users, items, rows, cols), rtol=1e-6)
    assert not dense[9:11].any() and not dense[:, users + 7].any()

    weights = np.linspace(0.5, 2.0, len(rows))
    weighted = lightgcn_adjacency(CSR.from_pairs(rows, cols, users, items, data=weights),
                                  dtype=torch.float64)
    np.testing.assert_allclose(weighted.to_dense().numpy(),
                               _dense_lightgcn(users, items, rows, cols, weights), rtol=1e-12)


def test_norm_power_is_d_to_the_minus_r_a_d_to_the_minus_one_minus_r() -> None:
    rows, cols = _random_pairs()
    users, items = 11, 8  # users 9, 10 and item 7 have no edges
    train = CSR.from_pairs(rows, cols, users, items)
    r_ = np.zeros((users, items))
    r_[rows, cols] = 1.0
    a = np.block([[np.zeros((users, users)), r_], [r_.T, np.zeros((items, items))]])
    d = a.sum(axis=1)
    for power in (0.3, 0.7, 1.0):
        with np.errstate(divide="ignore"):
            receive = np.where(d > 0, d ** -power, 0.0)
            send = np.where(d > 0, d ** (power - 1), 0.0)
        got = lightgcn_adjacency(train, norm_power=power, dtype=torch.float64).to_dense().numpy()
        np.testing.assert_allclose(got, receive[:, None] * a * send[None, :], rtol=1e-12)
        assert np.isfinite(got).all() and not np.allclose(got, got.T)  # asymmetric unless r = 1/2
    # r = 1: each row averages its neighbours (row sums 1 for every node with an edge).
    rows_sum = lightgcn_adjacency(train, norm_power=1.0, dtype=torch.float64).to_dense().numpy().sum(axis=1)
    np.testing.assert_allclose(rows_sum[d > 0], 1.0)
    # r = 1/2 is exactly the symmetric matrix it always was.
    assert torch.equal(lightgcn_adjacency(train, norm_power=0.5).to_dense(), lightgcn_adjacency(train).to_dense())
    with pytest.raises(ValueError, match=r"norm_power must be in \[0, 1\], got 1.5"):
        lightgcn_adjacency(train, norm_power=1.5)


def test_empty_graph_has_no_nan() -> None:
    adj = lightgcn_adjacency(CSR.from_pairs(np.zeros(0), np.zeros(0), 3, 2))
    assert adj.shape == (5, 5) and adj._nnz() == 0


def test_interaction_csr_per_split(tmp_path: Path) -> None:
    rows, cols = _random_pairs(n=30)
    split = np.arange(30) % 3
    with DatasetWriter(str(tmp_path / "ds")) as w:
        w.write_interactions({"user_id": rows, "item_id": cols, "split": split})
        w.commit(name="g", num_users=9, num_items=7, source={})
    ds = open_dataset(str(tmp_path / "ds"))
    for s in (Split.TRAIN, Split.TEST):
        csr = interaction_csr(ds, s)
        dense = np.zeros((9, 7), dtype=bool)
        dense[rows[split == s], cols[split == s]] = True
        assert (csr.num_rows, csr.num_cols) == (9, 7)
        np.testing.assert_array_equal(csr.degrees(), dense.sum(axis=1))
        for r in range(9):
            np.testing.assert_array_equal(csr.row(r), np.flatnonzero(dense[r]))
