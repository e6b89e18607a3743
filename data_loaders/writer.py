"""The atomic dataset writer: Parquet parts hashed as they are written, the manifest written last.

``DatasetWriter`` stages everything under ``<url>.partial-<uuid>/`` and publishes it on commit()
(layout and manifest: format.py, checks: validate.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from data_loaders import validate
from data_loaders.format import (
    FORMAT_VERSION,
    INTERACTION_TYPES,
    INTERACTIONS_DIR,
    ITEMS_DIR,
    MANIFEST_FILE,
    TRUTH_DIR,
    DatasetError,
    FileEntry,
    Manifest,
    Split,
    split_name,
    url_to_fs,
)

# Modality and truth names become path components.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _HashingFile:
    """Write-only file wrapper hashing the bytes on their way out (no re-read for checksums)."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data) -> int:
        self._sha.update(data)
        self.bytes += memoryview(data).nbytes
        return self._raw.write(data)

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._raw.close()

    def entry(self, rows: int) -> FileEntry:
        self.close()
        return FileEntry(sha256=self._sha.hexdigest(), bytes=self.bytes, rows=rows)


class _PartWriter:
    """Appends tables to ``<dir>/part-NNNNN.parquet`` files of at most ``rows_per_file`` rows.

    Rows are buffered so that every row group has exactly ``row_group_rows`` rows (the last one
    of each file may be shorter) however small the appended chunks are.
    """

    def __init__(self, open_file: Callable[[str], _HashingFile], directory: str, schema: pa.Schema,
                 rows_per_file: int, row_group_rows: int, files: dict[str, FileEntry]) -> None:
        self._open_file, self._dir, self.schema, self._files = open_file, directory, schema, files
        self._rows_per_file, self._row_group_rows = rows_per_file, row_group_rows
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._index = 0
        self._sink: _HashingFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0

    def append(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        while self._buffered >= self._row_group_rows:
            self._write_group(self._row_group_rows)

    def close(self) -> None:
        while self._buffered:
            self._write_group(self._buffered)
        if self._writer is not None:
            self._finish_file()

    def discard(self) -> None:
        """Close the open file without recording it (the staging area is about to be removed)."""
        for closer in (self._writer, self._sink):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - best effort while aborting
                    pass
        self._writer = self._sink = None
        self._buffer, self._buffered = [], 0

    def _write_group(self, n: int) -> None:
        n = min(n, self._rows_per_file - self._rows_in_file)
        table = pa.concat_tables(self._buffer)
        self._buffer = [table.slice(n)] if table.num_rows > n else []
        self._buffered -= n
        if self._writer is None:
            self._sink = self._open_file(f"{self._dir}/part-{self._index:05d}.parquet")
            self._writer = pq.ParquetWriter(self._sink, self.schema)
        self._writer.write_table(table.slice(0, n), row_group_size=n)
        self._rows_in_file += n
        if self._rows_in_file == self._rows_per_file:
            self._finish_file()

    def _finish_file(self) -> None:
        self._writer.close()
        rel = f"{self._dir}/part-{self._index:05d}.parquet"
        self._files[rel] = self._sink.entry(self._rows_in_file)
        self._writer = self._sink = None
        self._index += 1
        self._rows_in_file = 0


class DatasetWriter:
    """Writes a dataset under ``<url>.partial-<uuid>/`` and publishes it atomically on commit().

    Use as a context manager: an exception inside the block, in commit(), or leaving the block
    without committing removes the staging area and leaves whatever was at ``url`` untouched.
    (On object stores, which cannot rename, a replaced dataset is deleted just before the new
    files are copied in; a failure in that final copy leaves ``url`` empty, never half-written.)
    Error rows for interactions are global rows over all write_interactions() calls (file
    "interactions"); for features, rows over all write_item_features() calls of that modality.
    """

    def __init__(self, url: str, *, overwrite: bool = False, storage_options: dict | None = None,
                 rows_per_file: int = 1_000_000, row_group_rows: int = 131_072) -> None:
        if rows_per_file < 1 or row_group_rows < 1:
            raise ValueError("rows_per_file and row_group_rows must be positive")
        self.url = url
        self._fs, self._root = url_to_fs(url, storage_options)
        self._overwrite = overwrite
        self._check_destination()  # fail before writing millions of rows, and again at commit
        self._staging = f"{self._root}.partial-{uuid.uuid4().hex}"
        self._rows_per_file, self._row_group_rows = rows_per_file, row_group_rows
        self._files: dict[str, FileEntry] = {}
        self._interactions: _PartWriter | None = None
        self._rows = 0
        self._split_counts = np.zeros(len(Split), dtype=np.int64)
        self._users: list[np.ndarray] = []  # kept for the cross-chunk range and duplicate checks
        self._items: list[np.ndarray] = []
        self._modalities: dict[str, _PartWriter] = {}
        self._modality_ids: dict[str, list[np.ndarray]] = {}
        self._modality_rows: dict[str, int] = {}
        self._truth: list[str] = []
        self._closed = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.abort()

    # ---- writing ---------------------------------------------------------------------------

    def write_interactions(self, batch: pa.Table | pa.RecordBatch | dict[str, np.ndarray]) -> None:
        """Append rows: user_id, item_id, split required; optional columns fixed by the first call."""
        self._check_open()
        table = _as_table(batch)
        arrays = validate.interaction_arrays(table, file=INTERACTIONS_DIR, first_row=self._rows)
        if self._interactions is None:
            schema = pa.schema([(c, INTERACTION_TYPES[c]) for c in arrays])
            self._interactions = self._part_writer(INTERACTIONS_DIR, schema)
        elif list(arrays) != self._interactions.schema.names:
            raise DatasetError(f"columns differ from the first batch's "
                               f"{self._interactions.schema.names}", file=INTERACTIONS_DIR,
                               row=self._rows, value=sorted(arrays))
        n = table.num_rows
        self._split_counts += np.bincount(arrays["split"], minlength=len(Split))
        self._users.append(validate.compact_ids(arrays["user_id"]))
        self._items.append(validate.compact_ids(arrays["item_id"]))
        self._interactions.append(
            pa.table({c: pa.array(a, INTERACTION_TYPES[c]) for c, a in arrays.items()}))
        self._rows += n

    def write_item_features(self, modality: str, item_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append feature rows of one modality; every item id must get exactly one row overall."""
        self._check_open()
        _check_name(modality, "modality")
        file = f"{ITEMS_DIR}/{modality}"
        first = self._modality_rows.get(modality, 0)
        writer = self._modalities.get(modality)
        dim = writer.schema.field("vector").type.list_size if writer is not None else None
        ids = validate.to_int64(item_ids, file=file, column="item_id", first_row=first)
        vecs = validate.as_vectors(vectors, file=file, column="vector", first_row=first, dim=dim,
                                   rows=len(ids))
        dim = vecs.shape[1]
        if writer is None:
            schema = pa.schema([("item_id", pa.int64()), ("vector", pa.list_(pa.float32(), dim))])
            writer = self._modalities[modality] = self._part_writer(file, schema)
            self._modality_ids[modality] = []
        vector_column = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim)
        writer.append(pa.table({"item_id": pa.array(ids), "vector": vector_column},
                               schema=writer.schema))
        self._modality_ids[modality].append(ids)
        self._modality_rows[modality] = first + len(ids)

    def write_truth(self, name: str, table: pa.Table) -> None:
        """Write ``truth/<name>.parquet`` (free-form ground truth, e.g. the simulator's)."""
        self._check_open()
        _check_name(name, "truth name")
        rel = f"{TRUTH_DIR}/{name}.parquet"
        if rel in self._truth:
            raise DatasetError("truth table written twice", file=rel)
        if not isinstance(table, pa.Table):
            raise DatasetError("truth must be a pyarrow Table", file=rel,
                               value=type(table).__name__)
        sink = self._open_file(rel)
        pq.write_table(table, sink, row_group_size=self._row_group_rows)
        self._files[rel] = sink.entry(table.num_rows)
        self._truth.append(rel)

    # ---- commit / abort --------------------------------------------------------------------

    def commit(self, *, name: str, num_users: int, num_items: int, source: dict) -> Manifest:
        """Validate everything written, write the manifest last and move the dataset into place."""
        self._check_open()
        try:
            manifest = self._finish(name, num_users, num_items, source)
            self._publish(manifest.to_json().encode())
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._users = self._items = []
        return manifest

    def abort(self) -> None:
        """Drop everything written so far; a dataset already at ``url`` is left as it was."""
        self._closed = True
        for writer in [self._interactions, *self._modalities.values()]:
            if writer is not None:
                writer.discard()
        if self._fs.exists(self._staging):
            self._fs.rm(self._staging, recursive=True)

    def _finish(self, name: str, num_users: int, num_items: int, source: dict) -> Manifest:
        for writer in [self._interactions, *self._modalities.values()]:
            if writer is not None:
                writer.close()
        if self._split_counts[Split.TRAIN] == 0:
            raise DatasetError("the train split is empty", file=INTERACTIONS_DIR, column="split")
        for key, count in (("num_users", num_users), ("num_items", num_items)):
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                raise DatasetError("must be a positive integer", column=key, value=count)
        users, items = np.concatenate(self._users), np.concatenate(self._items)
        validate.check_below(users, int(num_users), file=INTERACTIONS_DIR, column="user_id",
                             limit_name="num_users")
        validate.check_below(items, int(num_items), file=INTERACTIONS_DIR, column="item_id",
                             limit_name="num_items")
        validate.check_unique_pairs(users, items, int(num_items), file=INTERACTIONS_DIR)
        for modality, ids in self._modality_ids.items():
            validate.check_id_coverage(np.concatenate(ids), int(num_items),
                                       file=f"{ITEMS_DIR}/{modality}", column="item_id")
        return Manifest(
            format_version=FORMAT_VERSION, name=name, num_users=int(num_users),
            num_items=int(num_items), num_interactions=self._rows,
            splits={split_name(s): int(self._split_counts[s]) for s in Split},
            modalities={m: w.schema.field("vector").type.list_size
                        for m, w in self._modalities.items()},
            files=dict(sorted(self._files.items())), truth=list(self._truth), source=dict(source),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def _publish(self, manifest: bytes) -> None:
        fs, root, staging = self._fs, self._root, self._staging
        self._check_destination()
        if isinstance(fs, LocalFileSystem):
            # Manifest last inside staging, then one rename makes the complete dataset appear.
            fs.pipe_file(f"{staging}/{MANIFEST_FILE}", manifest)
            if fs.exists(root):
                old = f"{root}.old-{uuid.uuid4().hex}"
                os.rename(root, old)
                try:
                    os.rename(staging, root)
                except BaseException:
                    os.rename(old, root)
                    raise
                fs.rm(old, recursive=True)
            else:
                fs.makedirs(os.path.dirname(root), exist_ok=True)
                os.rename(staging, root)
            return
        # Object stores have no rename: invalidate the old dataset (manifest first), copy the
        # data files, and make the new one visible with a single PUT of the manifest.
        if fs.exists(root):
            if fs.exists(f"{root}/{MANIFEST_FILE}"):
                fs.rm(f"{root}/{MANIFEST_FILE}")
            fs.rm(root, recursive=True)
        try:
            for rel in self._files:
                fs.copy(f"{staging}/{rel}", f"{root}/{rel}")
            fs.pipe_file(f"{root}/{MANIFEST_FILE}", manifest)
        except BaseException:
            if fs.exists(root):
                fs.rm(root, recursive=True)
            raise
        fs.rm(staging, recursive=True)

    # ---- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("DatasetWriter is already committed or aborted")

    def _check_destination(self) -> None:
        """Refuse an existing dataset unless overwrite; never replace a non-dataset directory."""
        fs, root = self._fs, self._root
        if not fs.exists(root):
            return
        if not fs.isdir(root):
            raise DatasetError("exists and is not a dataset directory", file=self.url)
        entries = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
        if not entries:
            return
        if not self._overwrite:
            raise DatasetError("a dataset already exists here; pass overwrite=True "
                               "(--overwrite) to replace it", file=self.url)
        foreign = entries - {MANIFEST_FILE, INTERACTIONS_DIR, ITEMS_DIR, TRUTH_DIR}
        if foreign:
            raise DatasetError("refusing to replace a directory that is not a dataset",
                               file=self.url, value=sorted(foreign))

    def _open_file(self, rel: str) -> _HashingFile:
        path = f"{self._staging}/{rel}"
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        return _HashingFile(self._fs.open(path, "wb"))

    def _part_writer(self, directory: str, schema: pa.Schema) -> _PartWriter:
        return _PartWriter(self._open_file, directory, schema, self._rows_per_file,
                           self._row_group_rows, self._files)


def _as_table(batch: pa.Table | pa.RecordBatch | dict[str, np.ndarray]) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, dict):
        try:
            return pa.table({k: pa.array(np.asarray(v)) for k, v in batch.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as e:
            raise DatasetError(f"cannot convert input columns ({e})",
                               file=INTERACTIONS_DIR) from None
    raise TypeError("expected a pyarrow Table/RecordBatch or a dict of arrays, "
                    f"got {type(batch).__name__}")


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DatasetError(f"invalid {what} (letters, digits, '_', '.', '-')", value=name)
