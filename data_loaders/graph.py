"""Sparse interaction graphs: CSR matrices and the LightGCN-normalised adjacency.

Everything is built with whole-array numpy/torch operations, never a Python loop over edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data_loaders.format import Split
from data_loaders.stream import Dataset


@dataclass
class CSR:
    """Compressed sparse rows; column indices are sorted within each row, duplicates kept."""

    indptr: np.ndarray  # int64 (num_rows + 1,)
    indices: np.ndarray  # int64 (nnz,)
    num_rows: int
    num_cols: int
    data: np.ndarray | None = None  # (nnz,) values; None means every entry is 1

    @classmethod
    def from_pairs(cls, rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int,
                   data: np.ndarray | None = None) -> CSR:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.ndim != 1 or rows.shape != cols.shape or (
                data is not None and np.shape(data) != rows.shape):
            raise ValueError("rows, cols (and data) must be 1-D arrays of the same length")
        if rows.size and (rows.min() < 0 or rows.max() >= num_rows
                          or cols.min() < 0 or cols.max() >= num_cols):
            raise ValueError(f"pairs outside a {num_rows} x {num_cols} matrix")
        # By row, then column: one int64 key sorts about twice as fast as np.lexsort.
        if num_rows * num_cols < 2**63:
            order = np.argsort(rows * num_cols + cols, kind="stable")
        else:
            order = np.lexsort((cols, rows))
        indptr = np.zeros(num_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=num_rows), out=indptr[1:])
        return cls(indptr=indptr, indices=cols[order], num_rows=int(num_rows),
                   num_cols=int(num_cols), data=None if data is None else np.asarray(data)[order])

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def row(self, r: int) -> np.ndarray:
        """Column indices of row ``r`` (a view)."""
        return self.indices[self.indptr[r]:self.indptr[r + 1]]

    def degrees(self) -> np.ndarray:
        """Stored entries per row."""
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        """Row index of every stored entry (the COO row array)."""
        return np.repeat(np.arange(self.num_rows, dtype=np.int64), self.degrees())


def interaction_csr(ds: Dataset, split: Split) -> CSR:
    """Users x items matrix of one split's interactions."""
    arrays = ds.load_interactions(splits=[split], columns=("user_id", "item_id"))
    return CSR.from_pairs(arrays["user_id"], arrays["item_id"], ds.manifest.num_users,
                          ds.manifest.num_items)


def interaction_csrs(ds: Dataset, splits: Sequence[Split], *, rank: int = 0, world_size: int = 1,
                     all_gather: Callable[[Any], list[Any]] | None = None) -> dict[Split, CSR]:
    """Users x items matrix of each split, from one pass over this rank's share of the rows.

    Each rank reads only its row groups (`Dataset.iter_interactions(rank, world_size)`); with
    `world_size > 1`, `all_gather(obj) -> [obj of rank 0, obj of rank 1, ...]` (e.g.
    torch.distributed.all_gather_object) merges the shares, so every rank returns the full
    matrices while the group reads each byte from storage once. The result equals
    `interaction_csr` per split: CSR rows are sorted by column, whatever order rows arrive in.
    """
    wanted = sorted({Split(s) for s in splits})
    columns = ("user_id", "item_id", "split")
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in ds.iter_interactions(rank=rank, world_size=world_size, columns=list(columns), splits=wanted,
                                      batch_rows=1 << 20):
        for c in columns:
            parts[c].append(batch.column(c).to_numpy())
    dtypes = {"user_id": np.int64, "item_id": np.int64, "split": np.int8}
    local = {c: np.concatenate(v) if v else np.empty(0, dtypes[c]) for c, v in parts.items()}
    if world_size > 1:
        if all_gather is None:
            raise ValueError("interaction_csrs: world_size > 1 needs all_gather to merge the ranks' shares")
        shares = all_gather(local)
        local = {c: np.concatenate([share[c] for share in shares]) for c in columns}
    out = {}
    for split in wanted:
        mask = local["split"] == int(split)
        out[split] = CSR.from_pairs(local["user_id"][mask], local["item_id"][mask], ds.manifest.num_users,
                                    ds.manifest.num_items)
    return out


def lightgcn_adjacency(train: CSR, *, dtype: torch.dtype = torch.float32, norm_power: float = 0.5) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph A = [[0, R], [R^T, 0]], (U+I) x (U+I), coalesced COO.

    R holds ``train.data`` (or ones); degrees are its row/column sums, so repeated pairs count
    with their multiplicity. Nodes of degree 0 get an all-zero row and column (no NaN).

    `norm_power` r != 1/2 gives D^-r A D^-(1-r) (r-AdjNorm, Zhao et al. SIGIR 2022): entry (a, b)
    is w / (d_a^r d_b^(1-r)), no longer symmetric. r > 1/2 shrinks what a high-degree node
    receives, so popular items' propagated rows grow less with their degree.
    """
    if not 0 <= norm_power <= 1:
        raise ValueError(f"lightgcn_adjacency: norm_power must be in [0, 1], got {norm_power}")
    num_users, num_items = train.num_rows, train.num_cols
    users = train.row_ids()
    items = train.indices + num_users
    weight = np.ones(train.nnz) if train.data is None else np.asarray(train.data, np.float64)
    degree = np.concatenate([np.bincount(users, weights=weight, minlength=num_users),
                             np.bincount(train.indices, weights=weight, minlength=num_items)])
    index = np.stack([np.concatenate([users, items]), np.concatenate([items, users])])
    n = num_users + num_items
    if norm_power == 0.5:  # the symmetric case, kept bit for bit as it always was
        inv_sqrt = np.zeros(len(degree))  # float64 even when bincount of no edges gives int64
        np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
        values = weight * inv_sqrt[users] * inv_sqrt[items]
        values = np.concatenate([values, values])
    else:
        receive, send = (np.zeros(len(degree)) for _ in range(2))
        np.power(degree, -norm_power, out=receive, where=degree > 0)
        np.power(degree, norm_power - 1.0, out=send, where=degree > 0)
        values = np.concatenate([weight * receive[users] * send[items], weight * receive[items] * send[users]])
    values = torch.from_numpy(values).to(dtype)
    return torch.sparse_coo_tensor(torch.from_numpy(index), values, (n, n),
                                   check_invariants=True).coalesce()
