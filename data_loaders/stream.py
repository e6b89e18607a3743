"""Verified reader of the canonical dataset: per-rank record-batch streams and whole arrays.

Every read goes through `data_loaders.storage.retry` (transient storage errors are tried again
with back-off, then end in a `StorageError` naming the URL and file), and the per-rank stream
reads its row groups in a background thread a bounded number ahead (`prefetch`), so a slow
object store overlaps with the consumer while memory stays at a few row groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_loaders.format import (INTERACTIONS_DIR, ITEMS_DIR, MANIFEST_FILE, DatasetError, Manifest,
                                 Split, url_to_fs)
from data_loaders.storage import RetryPolicy, prefetch, retry

_HASH_CHUNK = 4 << 20  # bytes read per step when hashing: memory stays bounded for any file size


def open_dataset(url: str, *, storage_options: dict | None = None, verify: bool = True,
                 retry_policy: RetryPolicy | None = None, prefetch_row_groups: int = 2,
                 verify_share: tuple[int, int] = (0, 1)) -> Dataset:
    """Open the dataset at ``url`` (any fsspec URL).

    With ``verify`` every listed file must exist with its recorded size, interaction files are
    hashed now (one streaming pass each) and feature/truth files when loaded, since those are
    read whole anyway. ``Dataset.verify()`` hashes everything at once.

    ``retry_policy``: attempts, back-off and deadline for transient storage errors (default
    `storage.DEFAULT_POLICY`); ``prefetch_row_groups``: how many row groups the background
    reader of `iter_interactions` may hold ahead of the consumer (0: read inline).
    ``verify_share=(rank, world_size)``: hash only this rank's share of the interaction files
    (every `world_size`-th), so W workers that each open the dataset hash every file once in
    total rather than W times; sizes are still checked for every file.
    """
    fs, root = url_to_fs(url, storage_options)
    path = f"{root}/{MANIFEST_FILE}"
    try:
        text = retry(lambda: fs.cat_file(path), url=url, what=f"reading {MANIFEST_FILE}",
                     policy=retry_policy)
    except FileNotFoundError:
        if retry(lambda: fs.exists(root), url=url, what="listing the dataset", policy=retry_policy):
            raise DatasetError(f"{url} is not a complete dataset: it has no {MANIFEST_FILE} "
                               "(an interrupted or unfinished write?)", file=path) from None
        raise DatasetError(f"no dataset at {url}", file=path) from None
    ds = Dataset(url, Manifest.from_json(text, file=path), fs, root, verify,
                 retry_policy=retry_policy, prefetch_row_groups=prefetch_row_groups)
    if verify:
        ds._check_sizes()
        rank, world_size = verify_share
        for rel in ds._interaction_files[rank::world_size]:
            ds._check_hash(rel)
    return ds


class Dataset:
    """An opened dataset; build it with open_dataset()."""

    def __init__(self, url: str, manifest: Manifest, fs, root: str, verify: bool, *,
                 retry_policy: RetryPolicy | None = None, prefetch_row_groups: int = 2) -> None:
        self.url, self.manifest = url, manifest
        self._fs, self._root, self._verify = fs, root, verify
        self._policy, self._prefetch = retry_policy, prefetch_row_groups
        self._interaction_files = sorted(
            r for r in manifest.files if r.startswith(f"{INTERACTIONS_DIR}/"))
        self._schema: pa.Schema | None = None
        self._row_group_counts: dict[str, int] = {}  # footers are read once, not every epoch

    def verify(self) -> int:
        """Check size and sha256 of every listed file; returns the number of files checked."""
        self._check_sizes()
        for rel in self.manifest.files:
            self._check_hash(rel)
        return len(self.manifest.files)

    # ---- interactions ----------------------------------------------------------------------

    def iter_interactions(self, *, rank: int = 0, world_size: int = 1,
                          columns: Sequence[str] | None = None,
                          splits: Iterable[Split] | None = None,
                          batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """This rank's share of the interactions, as record batches of at most ``batch_rows``.

        The units of work are (file, row group) pairs dealt round-robin over ranks, so the ranks
        together see every row exactly once. A background thread reads the row groups, at most
        ``prefetch_row_groups`` ahead of the consumer (plus the one being consumed), each read
        retried on transient storage errors. A rank gets no rows when there are fewer row groups
        than ranks.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        columns = self._columns(columns)  # bad arguments fail here, not at the first next()
        wanted = (None if splits is None
                  else pa.array(sorted({int(Split(s)) for s in splits}), pa.int8()))
        units = [(rel, g) for rel in self._interaction_files for g in range(self._row_groups(rel))]
        return self._stream(units[rank::world_size], columns, wanted, batch_rows)

    def _stream(self, units: list[tuple[str, int]], columns: list[str], wanted: pa.Array | None,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        read = columns if wanted is None or "split" in columns else [*columns, "split"]
        for table in prefetch(self._row_group_tables(units, read), self._prefetch):
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("split"), value_set=wanted))
            for batch in table.to_batches(max_chunksize=batch_rows):
                if batch.num_rows:
                    yield batch.select(columns)

    def _row_group_tables(self, units: list[tuple[str, int]], columns: list[str]) -> Iterator[pa.Table]:
        """One table per (file, row group), keeping the file open between its row groups; a
        failed read drops the handle and the retry reopens the file."""
        handle: dict[str, tuple] = {}  # rel -> (open file, ParquetFile); at most one entry

        def drop(_exc: BaseException | None = None) -> None:
            for f, _ in handle.values():
                try:
                    f.close()
                except Exception:  # noqa: BLE001 - a broken handle is discarded anyway
                    pass
            handle.clear()

        def read(rel: str, group: int) -> pa.Table:
            if rel not in handle:
                drop()
                f = self._fs.open(self._path(rel), "rb")
                handle[rel] = (f, pq.ParquetFile(f))
            return handle[rel][1].read_row_group(group, columns=columns)

        try:
            for rel, group in units:
                yield retry(lambda: read(rel, group), url=self.url, what=f"reading {rel} row group {group}",
                            policy=self._policy, on_retry=drop)
        finally:
            drop()

    def load_interactions(self, splits: Iterable[Split] | None = None,
                          columns: Sequence[str] = ("user_id", "item_id", "split"),
                          ) -> dict[str, np.ndarray]:
        """All interactions (optionally of some splits) as numpy arrays, in file order."""
        columns = self._columns(columns)
        batches = list(self.iter_interactions(columns=columns, splits=splits, batch_rows=1 << 20))
        schema = pa.schema([self._interaction_schema().field(c) for c in columns])
        table = pa.Table.from_batches(batches, schema=schema)
        return {c: table.column(c).to_numpy() for c in columns}

    # ---- items and truth -------------------------------------------------------------------

    def load_item_features(self, modality: str) -> np.ndarray:
        """(num_items, dim) float32; row i is item i."""
        if modality not in self.manifest.modalities:
            raise DatasetError(f"no such modality (have {sorted(self.manifest.modalities)})",
                               file=self.url, value=modality)
        dim, n = self.manifest.modalities[modality], self.manifest.num_items
        out = np.empty((n, dim), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        prefix = f"{ITEMS_DIR}/{modality}/"
        for rel in sorted(r for r in self.manifest.files if r.startswith(prefix)):
            table = pq.read_table(pa.BufferReader(self._read_whole(rel)))
            vectors = table.column("vector").combine_chunks()
            if not pa.types.is_fixed_size_list(vectors.type) or vectors.type.list_size != dim:
                raise DatasetError(f"vector type {vectors.type} does not match the manifest's "
                                   f"dim {dim}", file=self._name(rel), column="vector")
            ids = table.column("item_id").to_numpy()
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                raise DatasetError("item id out of range", file=self._name(rel), column="item_id")
            out[ids] = vectors.flatten().to_numpy().reshape(-1, dim)
            seen[ids] = True
        if not seen.all():
            raise DatasetError("items without a feature row", file=self._name(prefix),
                               column="item_id", value=int(np.argmin(seen)))
        return out

    def load_truth(self, name: str) -> pa.Table:
        rel = f"truth/{name}.parquet"
        if rel not in self.manifest.truth:
            raise DatasetError(f"no such truth table (have {self.manifest.truth})", file=self.url,
                               value=name)
        return pq.read_table(pa.BufferReader(self._read_whole(rel)))

    # ---- helpers ---------------------------------------------------------------------------

    def _path(self, rel: str) -> str:
        return f"{self._root}/{rel}"

    def _name(self, rel: str) -> str:
        """How errors name a file: the dataset URL plus the relative path."""
        return f"{self.url.rstrip('/')}/{rel}"

    def _retry(self, operation, what: str):
        return retry(operation, url=self.url, what=what, policy=self._policy)

    def _parquet_meta(self, rel: str) -> pq.FileMetaData:
        def read() -> pq.FileMetaData:
            with self._fs.open(self._path(rel), "rb") as f:
                return pq.ParquetFile(f).metadata
        return self._retry(read, f"reading the footer of {rel}")

    def _row_groups(self, rel: str) -> int:
        if rel not in self._row_group_counts:
            self._row_group_counts[rel] = self._parquet_meta(rel).num_row_groups
        return self._row_group_counts[rel]

    def _interaction_schema(self) -> pa.Schema:
        if self._schema is None:
            if not self._interaction_files:
                raise DatasetError("dataset has no interaction files", file=self.url)
            self._schema = self._parquet_meta(self._interaction_files[0]).schema.to_arrow_schema()
        return self._schema

    def _columns(self, columns: Sequence[str] | None) -> list[str]:
        available = self._interaction_schema().names
        if columns is None:
            return list(available)
        for c in columns:
            if c not in available:
                raise DatasetError(f"no such interaction column (have {available})", file=self.url,
                                   column=c)
        return list(columns)

    def _check_sizes(self) -> None:
        """Existence and byte count of every listed file, from one recursive listing."""
        listing = self._retry(lambda: self._fs.find(self._root, detail=True), "listing the dataset's files")
        found = {p.rstrip("/"): info for p, info in listing.items()}
        for rel, entry in self.manifest.files.items():
            info = found.get(self._path(rel))
            if info is None:
                raise DatasetError("file listed in the manifest is missing", file=self._name(rel))
            if info["size"] != entry.bytes:
                raise DatasetError(f"size mismatch: manifest says {entry.bytes} bytes",
                                   file=self._name(rel), value=info["size"])

    def _check_hash(self, rel: str) -> None:
        def digest() -> tuple[str, int]:  # a retry hashes from the start again
            sha, size = hashlib.sha256(), 0
            with self._fs.open(self._path(rel), "rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
            return sha.hexdigest(), size
        self._compare(rel, *self._retry(digest, f"hashing {rel}"))

    def _read_whole(self, rel: str) -> bytes:
        data = self._retry(lambda: self._fs.cat_file(self._path(rel)), f"reading {rel}")
        if self._verify:
            self._compare(rel, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def _compare(self, rel: str, sha256: str, size: int) -> None:
        entry = self.manifest.files[rel]
        if size != entry.bytes or sha256 != entry.sha256:
            raise DatasetError(f"checksum mismatch: file is corrupt or was modified (manifest sha256 "
                               f"{entry.sha256}, {entry.bytes} bytes)", file=self._name(rel),
                               value=f"sha256 {sha256}, {size} bytes")
