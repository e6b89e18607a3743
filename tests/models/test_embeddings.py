"""IdTables: lookups return the table rows, padding works, initialisation has the right scale."""

from __future__ import annotations

import math

import pytest
import torch

from models.embeddings import IdTables, InitScheme, table_init_fn


def _weights(tables: IdTables) -> tuple[torch.Tensor, torch.Tensor]:
    bags = tables.ebc.embedding_bags
    return bags["user"].weight.detach(), bags["item"].weight.detach()


@pytest.mark.parametrize("users,items", [([0, 3, 3, 1], [2, 0]), ([4], [0, 1, 2, 3, 4, 5, 0]),
                                         ([2, 2], [1, 4]), ([], [5, 1]), ([3], [])])
def test_lookup_returns_the_rows_of_the_ids(users, items):
    torch.manual_seed(0)
    tables = IdTables(5, 6, 8, device="cpu")
    u, i = torch.tensor(users, dtype=torch.int64), torch.tensor(items, dtype=torch.int64)
    user_e, item_e = tables.lookup(u, i)
    w_user, w_item = _weights(tables)
    assert user_e.shape == (len(users), 8) and item_e.shape == (len(items), 8)
    torch.testing.assert_close(user_e, w_user[u])
    torch.testing.assert_close(item_e, w_item[i])


def test_lookup_all_and_gradient_reach_the_looked_up_rows_only():
    tables = IdTables(4, 3, 4, device="cpu")
    user_all, item_all = tables.lookup_all()
    torch.testing.assert_close(user_all, _weights(tables)[0])
    torch.testing.assert_close(item_all, _weights(tables)[1])
    user_e, item_e = tables.lookup(torch.tensor([1, 1]), torch.tensor([2]))
    (user_e.sum() + 3 * item_e.sum()).backward()
    user_grad = tables.ebc.embedding_bags["user"].weight.grad
    item_grad = tables.ebc.embedding_bags["item"].weight.grad
    assert torch.equal(user_grad[1], torch.full((4,), 2.0)) and user_grad[[0, 2, 3]].abs().sum() == 0
    assert torch.equal(item_grad[2], torch.full((4,), 3.0)) and item_grad[:2].abs().sum() == 0


def test_empty_lookup_is_an_error():
    tables = IdTables(2, 2, 4, device="cpu")
    with pytest.raises(ValueError, match="both id lists are empty"):
        tables.lookup(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))


@pytest.mark.parametrize("scheme,std", [(InitScheme.XAVIER, math.sqrt(2 / (3000 + 16))),
                                        (InitScheme.XAVIER_NORMAL, math.sqrt(2 / (3000 + 16))),
                                        (InitScheme.NORMAL, 0.05)])
def test_init_scale_comes_from_the_full_table_shape(scheme, std):
    torch.manual_seed(0)
    # A shard (the first 100 rows) gets the full table's scale, as TorchRec's per-shard init needs.
    shard = table_init_fn(scheme, 3000, 16, init_std=0.05)(torch.empty(100, 16))
    assert shard.std().item() == pytest.approx(std, rel=0.1)
    if scheme is InitScheme.XAVIER:
        assert shard.abs().max() <= math.sqrt(3) * std


def test_tables_are_initialised_by_the_chosen_scheme():
    torch.manual_seed(0)
    w_user, w_item = _weights(IdTables(2000, 1000, 32, init="normal", init_std=0.01, device="cpu"))
    assert w_user.std().item() == pytest.approx(0.01, rel=0.05)
    assert w_item.std().item() == pytest.approx(0.01, rel=0.05)


def test_meta_device_is_refused():
    with pytest.raises(ValueError, match="not 'meta'"):
        IdTables(3, 3, 4, device="meta")
