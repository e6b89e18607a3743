"""The simulator at catalog scale: written in user blocks, never whole, with the same data.

The block sizes are part of the random-stream definition (docs/SIMULATOR.md), so these tests
shrink them (monkeypatch) to get many user and item blocks out of a small dataset.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from data_loaders.format import Split
from data_loaders.writer import DatasetWriter
from data_loaders.importers import synthetic
from data_loaders.importers.synthetic import SimulatorParams, generate, simulate
from data_loaders.stream import open_dataset

P = SimulatorParams(num_users=500, num_items=300, modalities="image:6,text:4", seed=5)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(synthetic, "USER_BLOCK", 64)   # 8 user blocks, the last one partial
    monkeypatch.setattr(synthetic, "ITEM_BLOCK", 128)  # 3 item blocks per modality


def test_streamed_blocks_equal_the_in_memory_dataset(tmp_path: Path, small_blocks) -> None:
    url = str(tmp_path / "ds")
    manifest = generate(url, P)
    d = simulate(P)
    ds = open_dataset(url)
    assert ds.verify() == len(manifest.files)
    got = ds.load_interactions(columns=("user_id", "item_id", "split", "is_noise"))
    for name in ("user_id", "item_id", "split", "is_noise"):
        np.testing.assert_array_equal(got[name], getattr(d, name))
    for m, f in d.features.items():
        np.testing.assert_array_equal(ds.load_item_features(m), f)
    # Invariants the simulator promises, across block boundaries.
    users, items, split = got["user_id"], got["item_id"], got["split"]
    assert manifest.num_interactions == len(users) == sum(manifest.splits.values())
    assert users.min() >= 0 and users.max() < P.num_users and items.min() >= 0 and items.max() < P.num_items
    assert np.unique(users * P.num_items + items).size == len(users)  # no (user, item) pair twice
    assert np.all(np.diff(users) >= 0)  # written in user order, block after block
    assert np.array_equal(np.unique(users[split == Split.TRAIN]), np.arange(P.num_users))  # all have train
    assert not got["is_noise"][split != Split.TRAIN].any()


def test_blocks_are_simulated_and_written_one_at_a_time(tmp_path: Path, small_blocks, monkeypatch) -> None:
    """Memory is one block: block b+1 is simulated only after block b went to the writer."""
    events: list[tuple[str, int]] = []
    simulate_block, write = synthetic.simulate_block, DatasetWriter.write_interactions

    def spy_simulate(p, world, block):
        events.append(("simulate", block))
        return simulate_block(p, world, block)

    def spy_write(self, cols):
        events.append(("write", int(cols["user_id"][0]) // synthetic.USER_BLOCK))
        return write(self, cols)

    monkeypatch.setattr(synthetic, "simulate_block", spy_simulate)
    monkeypatch.setattr(DatasetWriter, "write_interactions", spy_write)
    generate(str(tmp_path / "ds"), P)
    blocks = -(-P.num_users // synthetic.USER_BLOCK)
    assert events == [(kind, b) for b in range(blocks) for kind in ("simulate", "write")]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = generate(str(tmp_path / "a"), P)
    b = generate(str(tmp_path / "b"), P)
    c = generate(str(tmp_path / "c"), dataclasses.replace(P, seed=6))
    sha = lambda m: {rel: e.sha256 for rel, e in m.files.items()}  # noqa: E731
    assert sha(a) == sha(b)
    assert sha(a)["interactions/part-00000.parquet"] != sha(c)["interactions/part-00000.parquet"]


def test_a_block_does_not_depend_on_the_number_of_users(small_blocks) -> None:
    """Users of block b are the same whatever comes after them: a 1M-user dataset starts like a small one."""
    small = simulate(dataclasses.replace(P, num_users=200))
    large = simulate(P)
    first = large.user_id < 192  # the 3 full blocks both datasets share
    for name in ("user_id", "item_id", "split", "is_noise"):
        np.testing.assert_array_equal(getattr(small, name)[small.user_id < 192], getattr(large, name)[first])
