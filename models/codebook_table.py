"""The back-door codebook as a TorchRec embedding table, sharded like the ID tables (docs/MODEL.md §3).

`CodebookTable` holds the code vectors of every level in ONE `EmbeddingBagCollection`: table
"codes_<level>" (feature "code_<level>", K_level rows of width d) per level, e.g. "codes_coarse"
and "codes_fine". `trainer/sharding.py` shards every EmbeddingBagCollection of the model, so the
codebook is planned and sharded with the ID tables (table-, column-, row-wise or data-parallel,
fused or dense kernel) and checkpointed by `trainer/checkpoint.py` as per-rank local shards.
`TableCodebookStore` is one level's `CodebookStore` view of it.

Codes are never trained by gradient (EMA k-means, models/vq.py):

* Reading: a `KeyedJaggedTensor` lookup of ids 0..K-1 of every level at once (each id its own
  SUM-pooled bag, i.e. exactly its row), under `torch.no_grad()`. Nothing is recorded for
  backward, so neither the fused FBGEMM optimizer (which updates rows in backward) nor a torch
  optimizer (which skips parameters whose `.grad` is None) ever touches the codes. Once
  sharded the lookup is a collective: every rank must read the same number of times. Reads
  happen only where the model calls the back-door identically on every rank (the content path
  is replicated): `Backdoor` drops the cached copy at the start of `forward`, `refresh_prior`
  and `assign`, and the next `weight()` reads the table (one lookup for all levels).
* Writing (an EMA step, a restart, the data initialisation): every rank computes the same full
  new codes [K, d] from the replicated EMA state and copies the part it holds into its local
  shards, found through the collection's state dict: a `ShardedTensor` (table/column/row-wise;
  each local shard's `metadata.shard_offsets` / `shard_sizes` say which rows and columns it
  is, none on a rank that holds no part of the table), a plain replicated tensor
  (data-parallel), or the plain weight (unsharded). No communication.
* Cache: the last full codes read or written, per level. It equals the table as long as only
  this class writes it; external writes (shard_model copying rank 0's tables into the shards,
  trainer/checkpoint.py restoring shards in place) are picked up at the next `Backdoor` call,
  which re-reads the table; `load_state_dict` through this module also drops the cache. So a
  forward costs one small lookup (all levels) rather than one per `weight()` call.

The EMA state (counts N_k, sums m_k) stays in replicated buffers of each store: every rank
computes identical statistics (summed over ranks with `allreduce_stats`), so no collective is
needed to keep them equal.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import torch
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from models.vq import CodebookStore, ema_step_, member_counts

LEVEL_NAMES = ("coarse", "fine")


def table_name(level: str) -> str:
    return f"codes_{level}"


def feature_name(level: str) -> str:
    return f"code_{level}"


def is_code_table_parameter(name: str) -> bool:
    """Whether a model parameter name is a codebook table's: its rows are written by the codes' EMA,
    never by an optimizer, so they are running statistics (trainer/weight_average.py leaves them)."""
    return any(f"embedding_bags.{table_name(level)}." in name for level in LEVEL_NAMES)


def _drop_cache_after_load(module: "CodebookTable", incompatible_keys) -> None:
    # A module-level function (not a lambda): the model stays picklable and deep-copyable.
    module.invalidate()


class CodebookTable(nn.Module):
    """Every level's code vectors in one EmbeddingBagCollection (`self.ebc`), with a cached full copy.

    Args:
        sizes: codes per level (K1[, K2]).
        dim: code width d.
        names: level names (default "coarse", "fine"): table "codes_<name>", feature "code_<name>".
        device: where the full table is allocated (shard_model copies it into the shards).

    Initial codes ~ N(0, 1/d), like `BufferCodebookStore`'s. Build it once per model and give the
    levels `make_store(...)` in order (`Backdoor` does this when `store: table`).
    """

    def __init__(self, sizes: Sequence[int], dim: int, names: Sequence[str] | None = None,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        names = tuple(names) if names is not None else LEVEL_NAMES[:len(sizes)]
        if len(names) != len(sizes) or len(set(names)) != len(names):
            raise ValueError(f"CodebookTable: need one distinct name per level, got {names} for sizes {tuple(sizes)}")
        if min(sizes, default=0) < 1 or dim < 1:
            raise ValueError(f"CodebookTable: sizes and dim must be >= 1, got {tuple(sizes)}, {dim}")
        self.names, self.sizes, self.dim = names, tuple(int(k) for k in sizes), int(dim)
        # The sharded collection that replaces `ebc` exposes no device: an empty non-persistent
        # buffer follows the module's .to() (DMP moves the dense part to the compute device).
        self.register_buffer("_ids_device", torch.empty(0, device=device), persistent=False)
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=table_name(n), embedding_dim=dim, num_embeddings=k,
                                       feature_names=[feature_name(n)], pooling=PoolingType.SUM,
                                       init_fn=partial(nn.init.normal_, mean=0.0, std=1.0 / math.sqrt(dim)))
                    for n, k in zip(names, self.sizes)],
            device=torch.device(device))
        self._cache: list[torch.Tensor | None] = [None] * len(self.sizes)
        self._stores_made = 0
        self.register_load_state_dict_post_hook(_drop_cache_after_load)

    def make_store(self, num_codes: int, dim: int) -> "TableCodebookStore":
        """The next level's store (a `Backdoor` store_factory: called once per level, in order)."""
        level = self._stores_made
        if level >= len(self.sizes) or (num_codes, dim) != (self.sizes[level], self.dim):
            raise ValueError(f"CodebookTable{self.sizes} x {self.dim}: no level {level} of {num_codes} x {dim} codes")
        self._stores_made += 1
        return TableCodebookStore(self, level)

    def invalidate(self) -> None:
        """Forget the cached codes: the next `codes(level)` reads the table (a collective once sharded).

        Call it on every rank at once (the model's back-door calls are identical on all ranks).
        """
        self._cache = [None] * len(self.sizes)

    @torch.no_grad()
    def read(self) -> list[torch.Tensor]:
        """All levels' codes from the table: one lookup of ids 0..K_l-1 per level, no autograd.

        A KeyedJaggedTensor has one stride for all features, so shorter levels are padded with
        empty bags (pooled to zeros, sliced off); every rank passes the same ids, as row-wise
        sharding requires.
        """
        stride, device = max(self.sizes), self._ids_device.device
        lengths = torch.zeros(len(self.sizes) * stride, dtype=torch.int64, device=device)
        for level, k in enumerate(self.sizes):
            lengths[level * stride:level * stride + k] = 1
        kjt = KeyedJaggedTensor(keys=[feature_name(n) for n in self.names],
                                values=torch.cat([torch.arange(k, device=device) for k in self.sizes]),
                                lengths=lengths)
        # Unsharded: a KeyedTensor; sharded: a LazyAwaitable of one, resolved by to_dict().
        pooled = self.ebc(kjt).to_dict()
        self._cache = [pooled[feature_name(n)][:k].detach().clone() for n, k in zip(self.names, self.sizes)]
        return list(self._cache)

    def codes(self, level: int) -> torch.Tensor:
        """Level `level`'s codes [K, d]: the cached copy, read from the table first if there is none."""
        cached = self._cache[level]
        return cached if cached is not None else self.read()[level]

    @torch.no_grad()
    def write_(self, level: int, codes: torch.Tensor) -> None:
        """Store the full new codes [K, d] of `level`: the local part into the table, all into the cache.

        Every rank passes the same `codes`; each writes only the rows/columns it holds, so no
        communication is needed and the (sharded) table equals `codes` on every rank afterwards.
        """
        codes = codes.detach()
        if tuple(codes.shape) != (self.sizes[level], self.dim):
            raise ValueError(f"CodebookTable.write_: level {self.names[level]} takes "
                             f"{(self.sizes[level], self.dim)} codes, got {tuple(codes.shape)}")
        key = f"embedding_bags.{table_name(self.names[level])}.weight"
        value = self.ebc.state_dict()[key]
        if isinstance(value, ShardedTensor):  # table-, column-, row-wise: this rank's blocks
            for shard in value.local_shards():
                (r0, c0), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                shard.tensor.copy_(codes[r0:r0 + nr, c0:c0 + nc])
        elif type(value) is torch.Tensor:  # unsharded or data-parallel: the whole (replicated) table
            value.copy_(codes)
        else:
            raise TypeError(f"CodebookTable: cannot write {key} held as {type(value).__name__} "
                            "(expected a ShardedTensor or a plain tensor)")
        cached = self._cache[level]
        if cached is not None and cached.shape == codes.shape:
            cached.copy_(codes)  # in place, like a buffer: a tensor from weight() sees the new codes
        else:
            self._cache[level] = codes.to(torch.float32).clone()


class TableCodebookStore(CodebookStore):
    """One level of a `CodebookTable`: codes in the (sharded) table, EMA state in replicated buffers.

    Same arithmetic as `BufferCodebookStore` (tests/models/test_codebook_table.py checks equality):
    initial state "one member at the code" (N = 1, m = c), restarts "N members at the code".
    """

    def __init__(self, table: CodebookTable, level: int) -> None:
        super().__init__()
        # Not a submodule: the collection must have exactly one parent module, so that
        # DistributedModelParallel replaces it once and the state dict holds it once.
        object.__setattr__(self, "table", table)
        self.level, self.num_codes, self.dim = level, table.sizes[level], table.dim
        # The unsharded table at construction: its own weight (no lookup, no collective).
        initial = table.ebc.embedding_bags[table_name(table.names[level])].weight.detach()
        self.register_buffer("count", torch.ones(self.num_codes, device=initial.device))
        self.register_buffer("sum", initial.clone().float())

    def weight(self) -> torch.Tensor:
        return self.table.codes(self.level)

    def ema_count(self) -> torch.Tensor:
        return self.count

    @torch.no_grad()
    def ema_update_(self, counts: torch.Tensor, sums: torch.Tensor, decay: float, eps: float) -> None:
        self.table.write_(self.level, ema_step_(self.count, self.sum, counts, sums, decay, eps))

    @torch.no_grad()
    def restart_(self, index: torch.Tensor, vectors: torch.Tensor, count: float | torch.Tensor = 1.0) -> None:
        count = member_counts(count, self.count)
        codes = self.weight().clone()
        codes[index] = vectors.to(codes)
        self.sum[index] = vectors.to(self.sum) * count.unsqueeze(-1)
        self.count[index] = count
        self.table.write_(self.level, codes)
