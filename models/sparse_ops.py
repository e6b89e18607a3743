"""A fixed sparse matrix times a dense one, forward and backward, through `embedding_bag`.

The full-graph models multiply the same sparse matrices (the normalised adjacency, the front-door's
kept subgraph, the user-content mean) by dense [N, d] embeddings several times per step. torch's
sparse CSR/COO `@` is slow on CPU in exactly the direction training needs, the backward above all
(benchmarks/spmm.py times both on a dataset's adjacency; docs/BENCHMARKS.md, section spmm-tiktok).
A CSR row product is a weighted bag sum, `embedding_bag(col, x, crow, mode="sum",
per_sample_weights=val)`, which fbgemm runs fast on CPU and GPU; the gradient with respect to x
is the transpose times the output gradient, another bag sum over the transpose's CSR (built once;
shared with the forward's when the matrix is symmetric, as the LightGCN adjacency is). The matrix
itself is data, never trained: no gradient flows to its values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class _Csr:
    crow: torch.Tensor  # [rows + 1] int64
    col: torch.Tensor   # [nnz] int64
    val: torch.Tensor   # [nnz]

    def to(self, device: torch.device | str) -> "_Csr":
        return _Csr(self.crow.to(device), self.col.to(device), self.val.to(device))

    def times(self, x: torch.Tensor) -> torch.Tensor:
        """This CSR matrix @ x [cols, d] -> [rows, d]; rows without entries give 0."""
        return F.embedding_bag(self.col, x, self.crow, mode="sum", per_sample_weights=self.val.to(x.dtype),
                               include_last_offset=True)


def _csr_of(coo: torch.Tensor) -> _Csr:
    """CSR arrays of a coalesced 2-D COO tensor (its indices are sorted by row, then column)."""
    rows, cols = coo.indices()
    crow = torch.zeros(coo.shape[0] + 1, dtype=torch.int64, device=coo.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=coo.shape[0]), 0)
    return _Csr(crow, cols.contiguous(), coo.values().contiguous())


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, op: "SparseOperator") -> torch.Tensor:  # type: ignore[override]
        ctx.op = op  # constant data, not a tensor input: nothing to save for the values
        return op.forward_csr.times(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # d(Ax)/dx^T g = A^T g; None for the operator (not differentiable).
        return ctx.op.transpose_csr.times(grad.contiguous()), None


class SparseOperator:
    """A constant sparse matrix A [n, m] with `A @ x` for dense x [m, d] (differentiable in x).

    Built from a torch sparse COO or CSR tensor; holds A's CSR arrays and A^T's (one set when A is
    symmetric). Not an `nn.Module`: like the adjacency it replaces, it is data rebuilt from the
    dataset, moved with `.to(device)`, and never checkpointed.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if matrix.layout is torch.sparse_csr:
            matrix = matrix.to_sparse_coo()
        if not matrix.is_sparse or matrix.dim() != 2:
            raise ValueError(f"SparseOperator: need a 2-D sparse COO or CSR tensor, got layout {matrix.layout}, "
                             f"shape {tuple(matrix.shape)}")
        matrix = matrix.coalesce()
        self.shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        self.forward_csr = _csr_of(matrix)
        transpose = _csr_of(matrix.t().coalesce())
        same = (self.shape[0] == self.shape[1] and torch.equal(transpose.crow, self.forward_csr.crow)
                and torch.equal(transpose.col, self.forward_csr.col)
                and torch.equal(transpose.val, self.forward_csr.val))
        self.symmetric = bool(same)
        self.transpose_csr = self.forward_csr if self.symmetric else transpose

    @property
    def device(self) -> torch.device:
        return self.forward_csr.crow.device

    @property
    def nnz(self) -> int:
        return int(self.forward_csr.col.numel())

    def to(self, device: torch.device | str) -> "SparseOperator":
        """This operator on `device` (self when already there)."""
        if torch.device(device) == self.device:
            return self
        moved = object.__new__(SparseOperator)
        moved.shape, moved.symmetric = self.shape, self.symmetric
        moved.forward_csr = self.forward_csr.to(device)
        moved.transpose_csr = moved.forward_csr if self.symmetric else self.transpose_csr.to(device)
        return moved

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[0] != self.shape[1]:
            raise ValueError(f"SparseOperator {self.shape} @ x: x must be [{self.shape[1]}, d], got {tuple(x.shape)}")
        return _SpMM.apply(x, self)

    def to_dense(self) -> torch.Tensor:
        """A as a dense tensor (tests and small explain outputs only)."""
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=self.device),
                                       self.forward_csr.crow.diff())
        dense = torch.zeros(self.shape, dtype=self.forward_csr.val.dtype, device=self.device)
        dense.index_put_((rows, self.forward_csr.col), self.forward_csr.val, accumulate=True)
        return dense
