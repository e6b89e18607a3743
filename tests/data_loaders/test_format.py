"""DatasetWriter round trips, file layout, manifest parsing and the writer's validation errors."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_loaders.format import DatasetError, Manifest, Split
from data_loaders.writer import DatasetWriter
from data_loaders.stream import open_dataset

U, I = 20, 15


def _interactions(n: int = 150, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.choice(U * I, size=n, replace=False)
    return {"user_id": keys // I, "item_id": keys % I,
            "split": rng.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1]).astype(np.int8),
            "timestamp": rng.integers(-5, 10**9, size=n), "weight": rng.random(n).astype(np.float32),
            "is_noise": rng.random(n) < 0.2}


def _write(url: str, data: dict[str, np.ndarray], chunk: int = 17, features=None, **kwargs):
    with DatasetWriter(url, **kwargs) as w:
        for start in range(0, len(data["user_id"]), chunk):
            w.write_interactions({k: v[start:start + chunk] for k, v in data.items()})
        for modality, matrix in (features or {}).items():
            order = np.arange(len(matrix))[::-1]  # any row order: the reader places rows by id
            w.write_item_features(modality, order[:7], matrix[order[:7]])
            w.write_item_features(modality, order[7:], matrix[order[7:]])
        w.write_truth("items", pa.table({"item_id": np.arange(I), "quality": np.linspace(0, 1, I)}))
        return w.commit(name="toy", num_users=U, num_items=I, source={"importer": "test"})


@pytest.mark.parametrize("where", ["local", "memory"])
def test_round_trip(tmp_path: Path, where: str) -> None:
    url = str(tmp_path / "ds") if where == "local" else f"memory://rt-{uuid.uuid4().hex}/ds"
    data = _interactions()
    image = np.random.default_rng(1).normal(size=(I, 6)).astype(np.float32)
    manifest = _write(url, data, features={"image": image}, rows_per_file=40, row_group_rows=16)
    assert manifest.num_interactions == 150 and manifest.modalities == {"image": 6}
    assert manifest.splits == {s.name.lower(): int((data["split"] == s).sum()) for s in Split}
    assert sorted(manifest.files) == [f"interactions/part-0000{k}.parquet" for k in range(4)] + [
        "items/image/part-00000.parquet", "truth/items.parquet"]
    assert [manifest.files[f"interactions/part-0000{k}.parquet"].rows for k in range(4)] == [40, 40, 40, 30]

    ds = open_dataset(url)
    assert Manifest.from_json(manifest.to_json()) == manifest == ds.manifest
    got = ds.load_interactions(columns=list(data))
    for column, values in data.items():
        np.testing.assert_array_equal(got[column], values)
        assert got[column].dtype == {"split": np.int8, "weight": np.float32,
                                     "is_noise": bool}.get(column, np.int64)
    np.testing.assert_array_equal(ds.load_item_features("image"), image)
    assert ds.load_truth("items").column("quality").to_pylist() == list(np.linspace(0, 1, I))

    fs, root = fsspec.core.url_to_fs(url)
    with fs.open(f"{root}/interactions/part-00000.parquet", "rb") as f:
        meta = pq.ParquetFile(f).metadata
        schema = pq.ParquetFile(f).schema_arrow
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [16, 16, 8]
    assert schema.field("user_id").type == pa.int64() and schema.field("split").type == pa.int8()
    with fs.open(f"{root}/items/image/part-00000.parquet", "rb") as f:
        assert pq.ParquetFile(f).schema_arrow.field("vector").type == pa.list_(pa.float32(), 6)


def test_inputs_as_tables_and_record_batches(tmp_path: Path) -> None:
    data = _interactions()
    table = pa.table({k: data[k] for k in ("user_id", "item_id", "split")})
    with DatasetWriter(str(tmp_path / "ds")) as w:
        w.write_interactions(table.slice(0, 100))
        w.write_interactions(table.slice(100).to_batches()[0])
        w.commit(name="t", num_users=U, num_items=I, source={})
    np.testing.assert_array_equal(open_dataset(str(tmp_path / "ds")).load_interactions()["item_id"],
                                  data["item_id"])


def test_dataset_error_text_and_pickle() -> None:
    err = DatasetError("negative id", file="a.inter", column="userID", row=7, value=np.int64(-3),
                       row_kind="line")
    assert str(err) == "a.inter, line 7, column 'userID': negative id (value: -3)"
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.file, again.row, again.value) == (str(err), "a.inter", 7, -3)
    assert str(DatasetError("plain")) == "plain"


def test_manifest_rejects_bad_json() -> None:
    good = json.loads(_manifest_text())
    with pytest.raises(DatasetError, match="not valid JSON") as info:
        Manifest.from_json("{", file="m.json")
    assert info.value.file == "m.json"
    for broken, column in [
        ({k: v for k, v in good.items() if k != "num_items"}, "num_items"),
        ({**good, "num_users": "9"}, "num_users"),
        ({**good, "format_version": 99}, "format_version"),
        ({**good, "files": {"../x": {"sha256": "0", "bytes": 1, "rows": 1}}}, "files"),
        ({**good, "files": {"a.parquet": {"sha256": "0"}}}, "files.a.parquet"),
        ({**good, "extra": 1}, "extra"),
    ]:
        with pytest.raises(DatasetError) as info:
            Manifest.from_json(json.dumps(broken), file="m.json")
        assert (info.value.file, info.value.column) == ("m.json", column)


def _manifest_text() -> str:
    return Manifest(format_version=1, name="x", num_users=1, num_items=1, num_interactions=1,
                    splits={"train": 1}, modalities={}, files={}, truth=[], source={},
                    created_at="2026-01-01T00:00:00+00:00").to_json()


def _writer_error(tmp_path: Path, write, num_users: int = U, num_items: int = I) -> DatasetError:
    url = tmp_path / "ds"
    with pytest.raises(DatasetError) as info:
        with DatasetWriter(str(url)) as w:
            write(w)
            w.commit(name="t", num_users=num_users, num_items=num_items, source={})
    assert not url.exists() and not list(tmp_path.glob("ds.*"))  # staging removed too
    return info.value


def _base(n: int = 30) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in _interactions(n).items() if k in ("user_id", "item_id", "split")}


def _with(column: str, row: int, value, dtype=None) -> dict[str, np.ndarray]:
    data = _base()
    data[column] = data[column].astype(dtype or data[column].dtype)
    data[column][row] = value
    return data


@pytest.mark.parametrize("data, column, row, value, message", [
    ({k: v for k, v in _base().items() if k != "split"}, "split", 30, None, "missing column"),
    (_with("item_id", 4, 2.5, np.float64), "item_id", 34, 2.5, "not an integer"),
    (_with("user_id", 5, -1), "user_id", 35, -1, "negative id"),
    (_with("split", 6, 9), "split", 36, 9, "unknown split value"),
    ({**_base(), "rating": np.ones(30)}, "rating", None, None, "unknown column"),
])
def test_bad_chunk_is_reported_with_global_row(tmp_path: Path, data, column, row, value,
                                               message) -> None:
    def write(w: DatasetWriter) -> None:
        w.write_interactions(_base())  # rows 0..29 are fine; the bad chunk starts at row 30
        w.write_interactions(data)

    err = _writer_error(tmp_path, write)
    assert (err.file, err.column, err.row, err.value) == ("interactions", column, row, value)
    assert message in str(err) and "interactions" in str(err) and repr(column) in str(err)


def test_commit_time_checks_span_chunks(tmp_path: Path) -> None:
    base = _base()
    dup = {k: v[[3]] for k, v in base.items()}
    err = _writer_error(tmp_path, lambda w: (w.write_interactions(base), w.write_interactions(dup)))
    assert (err.row, err.column, err.value) == (30, "user_id,item_id",
                                                (base["user_id"][3], base["item_id"][3]))
    assert "duplicate" in str(err) and "first seen at row 3" in str(err)

    high = _with("item_id", 7, I)
    err = _writer_error(tmp_path, lambda w: (w.write_interactions(_base()), w.write_interactions(high)))
    assert (err.row, err.column, err.value) == (37, "item_id", I) and "num_items = 15" in str(err)
    err = _writer_error(tmp_path, lambda w: w.write_interactions(_base()), num_users=5)
    assert err.column == "user_id" and "num_users = 5" in str(err)

    no_train = {**_base(), "split": np.full(30, Split.TEST, np.int8)}
    err = _writer_error(tmp_path, lambda w: w.write_interactions(no_train))
    assert err.column == "split" and "train split is empty" in str(err)


def test_feature_checks(tmp_path: Path) -> None:
    def features(ids, vectors, more=None):
        def write(w: DatasetWriter) -> None:
            w.write_interactions(_base())
            w.write_item_features("image", np.arange(8), np.ones((8, 4), np.float32))
            w.write_item_features("image", ids, vectors)
            if more is not None:
                w.write_item_features("image", *more)
        return _writer_error(tmp_path, write)

    bad = np.ones((7, 4))
    bad[2, 1] = np.inf
    err = features(np.arange(8, 15), bad)
    assert (err.file, err.row, err.column, err.value) == ("items/image", 10, "vector[1]", np.inf)
    err = features(np.arange(8, 15), np.ones((7, 5)))
    assert err.column == "vector" and err.value == 5 and "dimension mismatch" in str(err)
    err = features(np.arange(8, 14), np.ones((6, 4)))
    assert "first missing item id 14" in str(err)
    err = features(np.arange(7, 14), np.ones((7, 4)))
    assert (err.row, err.value) == (8, 7) and "two feature rows" in str(err)
    err = features(np.arange(8, 16), np.ones((8, 4)))
    assert (err.row, err.value) == (15, 15) and "num_items" in str(err)
    err = features(np.arange(8, 15), np.ones((7, 4)), more=(np.array([1.5]), np.ones((1, 4))))
    assert (err.row, err.column, err.value) == (15, "item_id", 1.5)


def test_writer_is_single_use(tmp_path: Path) -> None:
    with DatasetWriter(str(tmp_path / "ds")) as w:
        w.write_interactions(_base())
        w.commit(name="t", num_users=U, num_items=I, source={})
    with pytest.raises(RuntimeError, match="already committed"):
        w.write_interactions(_base())
