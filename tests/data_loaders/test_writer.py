"""Atomic commit and the reader's refusal of incomplete or tampered datasets."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest

from data_loaders import writer
from data_loaders.format import DatasetError, Manifest
from data_loaders.stream import open_dataset
from data_loaders.writer import DatasetWriter


def _rows(n: int, offset: int = 0) -> dict[str, np.ndarray]:
    return {"user_id": np.arange(n) % 7, "item_id": (np.arange(n) // 7 + offset) % 9,
            "split": np.zeros(n, np.int8)}


def _commit(url: str, n: int = 40, **kwargs) -> Manifest:
    with DatasetWriter(url, **kwargs) as w:
        w.write_interactions(_rows(n))
        return w.commit(name=f"n{n}", num_users=7, num_items=9, source={})


def _commit_with_image(url: Path) -> None:
    """A committed dataset with interactions and one 2-d "image" modality."""
    with DatasetWriter(str(url)) as w:
        w.write_interactions(_rows(40))
        w.write_item_features("image", np.arange(9), np.ones((9, 2)))
        w.commit(name="t", num_users=7, num_items=9, source={})


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    url = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(str(url), rows_per_file=10, row_group_rows=5) as w:
            w.write_interactions(_rows(30))  # several part files already on disk
            raise KeyboardInterrupt
    assert not url.exists() and _leftovers(tmp_path) == []


def test_failed_write_keeps_the_existing_dataset(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    before = _commit(url)
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(url, overwrite=True) as w:
            w.write_interactions(_rows(20))
            raise RuntimeError("boom")
    with pytest.raises(DatasetError, match="duplicate"):  # failure inside commit
        with DatasetWriter(url, overwrite=True) as w:
            w.write_interactions(_rows(20))
            w.write_interactions(_rows(1))
            w.commit(name="x", num_users=7, num_items=9, source={})
    with DatasetWriter(url, overwrite=True) as w:  # leaving the block without commit
        w.write_interactions(_rows(20))
    assert open_dataset(url).manifest == before and _leftovers(tmp_path) == []


def test_overwrite_is_explicit_and_replaces_after_completion(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _commit(url, 40)
    with pytest.raises(DatasetError, match="already exists.*overwrite") as info:
        DatasetWriter(url)
    assert info.value.file == url
    assert _commit(url, 30, overwrite=True).num_interactions == 30
    assert open_dataset(url).manifest.name == "n30" and _leftovers(tmp_path) == []


def test_rename_failure_restores_the_old_dataset(tmp_path: Path, monkeypatch) -> None:
    url = str(tmp_path / "ds")
    before = _commit(url)
    real_rename = os.rename

    def flaky(src: str, dst: str) -> None:
        if ".partial-" in str(src):
            raise OSError("disk full")
        real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", flaky)
    with pytest.raises(OSError, match="disk full"):
        _commit(url, 30, overwrite=True)
    monkeypatch.undo()
    assert open_dataset(url).manifest == before and _leftovers(tmp_path) == []


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a dataset") as info:
        DatasetWriter(str(tmp_path / "ds"), overwrite=True)
    assert info.value.value == ["notes.txt"]
    assert (tmp_path / "ds" / "notes.txt").read_text() == "mine"


def test_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    url = tmp_path / "ds"
    _commit(str(url))
    (url / "manifest.json").unlink()  # what an interrupted object-store copy leaves
    with pytest.raises(DatasetError, match="not a complete dataset.*interrupted"):
        open_dataset(str(url))
    with pytest.raises(DatasetError, match="no dataset at"):
        open_dataset(str(tmp_path / "nothing"))


def test_tampered_missing_and_truncated_files(tmp_path: Path) -> None:
    url = tmp_path / "ds"
    _commit_with_image(url)
    part = url / "interactions" / "part-00000.parquet"
    feature = url / "items" / "image" / "part-00000.parquet"
    original = part.read_bytes()

    part.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])  # same size
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        open_dataset(str(url))
    assert info.value.file == f"{url}/interactions/part-00000.parquet"
    open_dataset(str(url), verify=False)  # explicitly unverified reads still open

    part.write_bytes(original[:-1])
    with pytest.raises(DatasetError, match="size mismatch"):
        open_dataset(str(url))
    part.unlink()
    with pytest.raises(DatasetError, match="missing") as info:
        open_dataset(str(url))
    assert info.value.file.endswith("interactions/part-00000.parquet")

    part.write_bytes(original)
    data = bytearray(feature.read_bytes())
    data[-50] ^= 1
    feature.write_bytes(bytes(data))
    ds = open_dataset(str(url))  # features are hashed when read, not at open
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        ds.load_item_features("image")
    assert "items/image/part-00000.parquet" in info.value.file
    with pytest.raises(DatasetError, match="checksum mismatch"):
        ds.verify()


def test_memory_filesystem_overwrite_and_abort() -> None:
    url = f"memory://atomic-{uuid.uuid4().hex}/ds"
    _commit(url, 40)
    with pytest.raises(RuntimeError):
        with DatasetWriter(url, overwrite=True) as w:
            w.write_interactions(_rows(20))
            raise RuntimeError
    assert open_dataset(url).manifest.num_interactions == 40
    _commit(url, 25, overwrite=True)
    assert open_dataset(url).manifest.num_interactions == 25
    fs, root = fsspec.core.url_to_fs(url)
    assert [p for p in fs.ls(root.rsplit("/", 1)[0], detail=False) if "partial" in p] == []


def test_manifest_that_disagrees_with_the_files(tmp_path: Path) -> None:
    url = tmp_path / "ds"
    _commit_with_image(url)
    manifest = url / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"image": 2', '"image": 3'))
    with pytest.raises(DatasetError, match="does not match the manifest's dim 3") as info:
        open_dataset(str(url)).load_item_features("image")
    assert info.value.column == "vector" and "items/image/part-00000.parquet" in info.value.file

    manifest.write_text(text[: len(text) // 2])  # a torn manifest
    with pytest.raises(DatasetError, match="not valid JSON") as info:
        open_dataset(str(url))
    assert info.value.file == f"{url}/manifest.json"
