"""SparseOperator: the same product and gradient as the dense matrix, symmetric or not."""

import pytest
import torch

from data_loaders.graph import CSR, lightgcn_adjacency
from models.sparse_ops import SparseOperator


def _random_sparse(rows: int, cols: int, nnz: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    index = torch.stack([torch.randint(rows, (nnz,), generator=g), torch.randint(cols, (nnz,), generator=g)])
    return torch.sparse_coo_tensor(index, torch.rand(nnz, generator=g), (rows, cols), check_invariants=True).coalesce()


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_product_and_gradient_match_the_dense_matrix_for_a_rectangular_matrix(layout):
    coo = _random_sparse(7, 5, 12, seed=0)  # some rows (and columns) have no entries
    op = SparseOperator(coo if layout == "coo" else coo.to_sparse_csr())
    dense = coo.to_dense().double()
    x = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    y = op @ x
    torch.testing.assert_close(y, dense @ x.detach())
    g = torch.randn(7, 3, dtype=torch.double)
    (grad,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(grad, dense.T @ g)  # the transpose, not A itself
    assert not op.symmetric and op.shape == (7, 5) and op.nnz == coo._nnz()
    torch.testing.assert_close(op.to_dense(), coo.to_dense())


def test_symmetric_adjacency_shares_one_csr_and_passes_gradcheck():
    train = CSR.from_pairs([0, 0, 1, 2], [0, 1, 1, 2], 3, 3)
    op = SparseOperator(lightgcn_adjacency(train, dtype=torch.float64))
    assert op.symmetric and op.transpose_csr is op.forward_csr
    x = torch.randn(6, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: op @ v, (x,))


def test_an_empty_matrix_gives_zeros_and_bad_shapes_are_named():
    op = SparseOperator(torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (3, 4), check_invariants=True))
    torch.testing.assert_close(op @ torch.randn(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"x must be \[4, d\], got \(5, 2\)"):
        op @ torch.randn(5, 2)
    with pytest.raises(ValueError, match="2-D sparse"):
        SparseOperator(torch.randn(3, 3))


def test_to_the_same_device_is_a_no_op_and_keeps_sharing():
    op = SparseOperator(lightgcn_adjacency(CSR.from_pairs([0, 1], [1, 0], 2, 2)))
    assert op.to("cpu") is op
