"""Per-rank streaming: every row exactly once across ranks, bounded batches, split filters."""

from __future__ import annotations


import numpy as np
import pytest

from data_loaders.format import DatasetError, Split
from data_loaders.writer import DatasetWriter
from data_loaders.stream import open_dataset

U, I, N = 40, 30, 1000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    keys = rng.choice(U * I, size=N, replace=False)
    data = {"user_id": keys // I, "item_id": keys % I,
            "split": rng.choice(4, size=N).astype(np.int8), "weight": rng.random(N).astype(np.float32)}
    url = str(tmp_path_factory.mktemp("stream") / "ds")
    with DatasetWriter(url, rows_per_file=300, row_group_rows=64) as w:  # 4 files, 17 row groups
        for start in range(0, N, 90):
            w.write_interactions({k: v[start:start + 90] for k, v in data.items()})
        w.commit(name="s", num_users=U, num_items=I, source={})
    return url, data


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_ranks_cover_every_row_exactly_once(dataset, world_size: int) -> None:
    url, data = dataset
    ds = open_dataset(url)
    per_rank = []
    for rank in range(world_size):
        batches = list(ds.iter_interactions(rank=rank, world_size=world_size, batch_rows=25,
                                            columns=["user_id", "item_id"]))
        assert all(0 < b.num_rows <= 25 and b.schema.names == ["user_id", "item_id"] for b in batches)
        per_rank.append(np.concatenate([b.column("user_id").to_numpy() * I + b.column("item_id").to_numpy()
                                        for b in batches]))
    seen = np.concatenate(per_rank)
    assert len(seen) == N and np.array_equal(np.sort(seen), np.sort(data["user_id"] * I + data["item_id"]))
    if world_size > 1:
        assert min(map(len, per_rank)) > 0 and max(map(len, per_rank)) - min(map(len, per_rank)) <= 2 * 64


def test_split_filter_and_columns(dataset) -> None:
    url, data = dataset
    ds = open_dataset(url, verify=False)
    wanted = [Split.VALID, Split.UNBIASED_TEST]
    rows = np.isin(data["split"], wanted)
    got = np.concatenate([b.column("weight").to_numpy() for r in range(2)
                          for b in ds.iter_interactions(rank=r, world_size=2, splits=wanted,
                                                        columns=["weight"])])
    np.testing.assert_array_equal(np.sort(got), np.sort(data["weight"][rows]))
    loaded = ds.load_interactions(splits=[Split.TEST], columns=("item_id", "split"))
    assert list(loaded) == ["item_id", "split"] and (loaded["split"] == Split.TEST).all()
    np.testing.assert_array_equal(loaded["item_id"], data["item_id"][data["split"] == Split.TEST])
    assert list(ds.iter_interactions(columns=None))[0].schema.names == ["user_id", "item_id", "split",
                                                                        "weight"]


def test_bad_requests(dataset) -> None:
    ds = open_dataset(dataset[0], verify=False)
    with pytest.raises(DatasetError, match="no such interaction column") as info:
        ds.load_interactions(columns=("user_id", "timestamp"))
    assert info.value.column == "timestamp"
    with pytest.raises(DatasetError, match="no such modality"):
        ds.load_item_features("image")
    with pytest.raises(DatasetError, match="no such truth"):
        ds.load_truth("items")
    with pytest.raises(ValueError, match="rank"):
        ds.iter_interactions(rank=2, world_size=2)


def test_rank_shares_merge_to_the_full_split_matrices(dataset) -> None:
    """interaction_csrs: each rank reads its row groups, the merged shares equal one full read."""
    from data_loaders.graph import interaction_csr, interaction_csrs

    url, _ = dataset
    ds = open_dataset(url, prefetch_row_groups=1)
    splits = (Split.TRAIN, Split.VALID, Split.TEST)
    shares: dict[int, dict] = {}
    interaction_csrs(ds, splits, rank=1, world_size=2, all_gather=lambda local: shares.setdefault(1, local) and [local])
    merged = interaction_csrs(ds, splits, rank=0, world_size=2, all_gather=lambda local: [local, shares[1]])
    assert 0 < len(shares[1]["user_id"]) < N
    for split in splits:
        full = interaction_csr(ds, split)
        np.testing.assert_array_equal(merged[split].indptr, full.indptr)
        np.testing.assert_array_equal(merged[split].indices, full.indices)
    with pytest.raises(ValueError, match="all_gather"):
        interaction_csrs(ds, splits, rank=0, world_size=2)


def test_verify_share_hashes_only_this_ranks_files(dataset, tmp_path) -> None:
    import shutil

    url, _ = dataset
    copy = tmp_path / "ds"
    shutil.copytree(url, copy)
    part = sorted((copy / "interactions").iterdir())[1]  # rank 1's file of 2 ranks
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, different bytes
    part.write_bytes(bytes(raw))
    open_dataset(str(copy), verify_share=(0, 2))  # rank 0 does not hash it
    with pytest.raises(DatasetError, match="checksum mismatch"):
        open_dataset(str(copy), verify_share=(1, 2))
