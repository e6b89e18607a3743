"""The user and item ID tables: one TorchRec EmbeddingBagCollection, looked up by id.

Both tables live in a single `EmbeddingBagCollection` so that `trainer/sharding.py` can hand
the whole collection to TorchRec's `DistributedModelParallel`, which replaces it in place by a
sharded version (table-, column-, row-wise or data-parallel). The model code never changes:
`IdTables.lookup` builds the same `KeyedJaggedTensor` either way; after sharding each rank
passes *its own* ids, TorchRec routes them to the ranks owning the rows and returns the rows
for exactly those ids. Once sharded, every lookup is therefore a collective: all ranks must
call it the same number of times.

Gradient scale across ranks: TorchRec's embedding collectives divide the gradient by the world
size on the way back (`torchrec.distributed.comm_ops.GRADIENT_DIVISION`, on by default and
asserted by `trainer/sharding.py`), and data-parallel tables are averaged by DDP. So a table
row's gradient is the *mean* over ranks of the per-rank gradients, exactly like a DDP-averaged
dense parameter: W ranks with a mean loss over B/W samples each step the tables exactly like one
rank with the mean loss over B samples (measured in tests/trainer/test_sharding.py). No
scaling is needed here, hence no world size in this module.
"""

from __future__ import annotations

import math
from enum import Enum
from functools import partial
from typing import Callable

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

USER_TABLE, ITEM_TABLE = "user", "item"
USER_FEATURE, ITEM_FEATURE = "user_id", "item_id"


class InitScheme(str, Enum):
    """How table rows are initialised."""

    XAVIER = "xavier"                # Xavier/Glorot uniform (MMRec's LightGCN)
    XAVIER_NORMAL = "xavier_normal"  # Xavier/Glorot normal (MMRec's BPR)
    NORMAL = "normal"                # N(0, init_std)


def table_init_fn(scheme: InitScheme | str, num_rows: int, dim: int,
                  init_std: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """An in-place initialiser for a `num_rows x dim` table, usable on any shard of it.

    TorchRec calls a table's `init_fn` on each *shard* when it (re)initialises a sharded
    table, so the Xavier scale is computed here from the full table's shape rather than
    left to `nn.init.xavier_*`, which would read the shard's shape.
    `functools.partial` rather than a lambda keeps the config deep-copyable and picklable.
    """
    scheme = InitScheme(scheme)
    # nn.init's fan convention for a 2-D weight: fan_in = size(1), fan_out = size(0).
    xavier_var = 2.0 / (num_rows + dim)
    if scheme is InitScheme.XAVIER:
        bound = math.sqrt(3.0 * xavier_var)
        return partial(nn.init.uniform_, a=-bound, b=bound)
    if scheme is InitScheme.XAVIER_NORMAL:
        return partial(nn.init.normal_, mean=0.0, std=math.sqrt(xavier_var))
    return partial(nn.init.normal_, mean=0.0, std=init_std)


class IdTables(nn.Module):
    """User and item ID embedding tables ("user": feature "user_id", "item": feature "item_id").

    Args:
        num_users, num_items: table rows (ids are dense and 0-based).
        dim: embedding size d of the item table (and of the user table unless `user_dim`).
        init: an `InitScheme` value.
        init_std: standard deviation for `InitScheme.NORMAL`.
        device: where the full tables are allocated and initialised (the compute device).
            `trainer/sharding.py` copies these weights into the shards, so every world size
            and sharding plan starts from the same tables.
        user_dim: width of the user table when it differs from the item table's, e.g. VBPR's
            user vector, which scores the concatenation [ID part ; content part] of an item.
    """

    def __init__(self, num_users: int, num_items: int, dim: int, *, init: InitScheme | str = InitScheme.XAVIER,
                 init_std: float = 0.1, device: torch.device | str = "cpu", user_dim: int | None = None) -> None:
        super().__init__()
        device = torch.device(device)
        if device.type == "meta":
            # DMP would then initialise each shard separately from identically seeded RNGs on
            # every rank, which gives correlated shards and plan-dependent starting weights.
            raise ValueError("IdTables: build on the compute device, not 'meta' (shard_model copies the weights)")
        user_dim = dim if user_dim is None else user_dim
        if min(num_users, num_items, dim, user_dim) <= 0:
            raise ValueError(f"IdTables: sizes must be positive, got {num_users=}, {num_items=}, {dim=}, {user_dim=}")
        self.num_users, self.num_items, self.dim, self.user_dim = num_users, num_items, dim, user_dim
        # Kept here because the sharded collection that replaces `ebc` exposes no device.
        self.device = device
        self.ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(name=name, embedding_dim=width, num_embeddings=rows, feature_names=[feature],
                                   pooling=PoolingType.SUM, init_fn=table_init_fn(init, rows, width, init_std))
                for name, feature, rows, width in ((USER_TABLE, USER_FEATURE, num_users, user_dim),
                                                   (ITEM_TABLE, ITEM_FEATURE, num_items, dim))
            ],
            device=device,
        )

    def lookup(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of `user_ids` and of `item_ids`: ([len(user_ids), user_dim], [len(item_ids), d]).

        Each id is its own bag of length 1, and a SUM-pooled bag of one id is that id's row;
        pooled lookups work with every sharding type and both kernels (verified on CPU; it is
        TorchRec's standard path on GPU). A
        KeyedJaggedTensor has one batch size (stride) for all its features, so the shorter id
        list is padded with empty bags (length 0, pooled to zeros, sliced off).
        Ids must be int64 tensors on the compute device. Once row-wise sharded, every rank must
        pass the same stride (max of the two lengths) per call: TorchRec's row-wise backward
        all-gathers equal-sized gradients (gloo fails on unequal ones).
        """
        num_u, num_i = user_ids.numel(), item_ids.numel()
        stride = max(num_u, num_i)
        if stride == 0:
            raise ValueError("IdTables.lookup: both id lists are empty")
        device = user_ids.device
        lengths = torch.zeros(2 * stride, dtype=torch.int64, device=device)
        lengths[:num_u] = 1
        lengths[stride:stride + num_i] = 1
        kjt = KeyedJaggedTensor(keys=[USER_FEATURE, ITEM_FEATURE],
                                values=torch.cat([user_ids.reshape(-1), item_ids.reshape(-1)]),
                                lengths=lengths)
        # Unsharded: a KeyedTensor; sharded: a LazyAwaitable of one, resolved by to_dict().
        pooled = self.ebc(kjt).to_dict()
        return pooled[USER_FEATURE][:num_u], pooled[ITEM_FEATURE][:num_i]

    def lookup_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row of both tables ([num_users, user_dim], [num_items, d]), for full-graph models."""
        return self.lookup(torch.arange(self.num_users, device=self.device),
                           torch.arange(self.num_items, device=self.device))
