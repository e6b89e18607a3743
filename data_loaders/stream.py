"""Verified reader of the canonical dataset: per-rank record-batch streams and whole arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_loaders.format import (INTERACTIONS_DIR, ITEMS_DIR, MANIFEST_FILE, DatasetError, Manifest,
                                 Split, url_to_fs)

_HASH_CHUNK = 4 << 20  # bytes read per step when hashing: memory stays bounded for any file size


def open_dataset(url: str, *, storage_options: dict | None = None, verify: bool = True) -> Dataset:
    """Open the dataset at ``url`` (any fsspec URL).

    With ``verify`` every listed file must exist with its recorded size, interaction files are
    hashed now (one streaming pass each) and feature/truth files when loaded, since those are
    read whole anyway. ``Dataset.verify()`` hashes everything at once.
    """
    fs, root = url_to_fs(url, storage_options)
    path = f"{root}/{MANIFEST_FILE}"
    try:
        text = fs.cat_file(path)
    except FileNotFoundError:
        if fs.exists(root):
            raise DatasetError(f"{url} is not a complete dataset: it has no {MANIFEST_FILE} "
                               "(an interrupted or unfinished write?)", file=path) from None
        raise DatasetError(f"no dataset at {url}", file=path) from None
    ds = Dataset(url, Manifest.from_json(text, file=path), fs, root, verify)
    if verify:
        ds._check_sizes()
        for rel in ds._interaction_files:
            ds._check_hash(rel)
    return ds


class Dataset:
    """An opened dataset; build it with open_dataset()."""

    def __init__(self, url: str, manifest: Manifest, fs, root: str, verify: bool) -> None:
        self.url, self.manifest = url, manifest
        self._fs, self._root, self._verify = fs, root, verify
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
        together see every row exactly once; only one row group is held in memory at a time.
        A rank gets no rows when there are fewer row groups than ranks.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        columns = self._columns(columns)  # bad arguments fail here, not at the first next()
        wanted = (None if splits is None
                  else pa.array(sorted({int(Split(s)) for s in splits}), pa.int8()))
        units = [(rel, g) for rel in self._interaction_files for g in range(self._row_groups(rel))]
        by_file: dict[str, list[int]] = {}
        for rel, g in units[rank::world_size]:
            by_file.setdefault(rel, []).append(g)
        return self._stream(by_file, columns, wanted, batch_rows)

    def _stream(self, by_file: dict[str, list[int]], columns: list[str], wanted: pa.Array | None,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        read = columns if wanted is None or "split" in columns else [*columns, "split"]
        for rel, groups in by_file.items():
            with self._fs.open(self._path(rel), "rb") as f:
                batches = pq.ParquetFile(f).iter_batches(batch_size=batch_rows, row_groups=groups,
                                                         columns=read)
                for batch in batches:
                    if wanted is not None:
                        batch = batch.filter(pc.is_in(batch.column("split"), value_set=wanted))
                    if batch.num_rows:
                        yield batch.select(columns)

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

    def _parquet_meta(self, rel: str) -> pq.FileMetaData:
        with self._fs.open(self._path(rel), "rb") as f:
            return pq.ParquetFile(f).metadata

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
        found = {p.rstrip("/"): info for p, info in self._fs.find(self._root, detail=True).items()}
        for rel, entry in self.manifest.files.items():
            info = found.get(self._path(rel))
            if info is None:
                raise DatasetError("file listed in the manifest is missing", file=self._name(rel))
            if info["size"] != entry.bytes:
                raise DatasetError(f"size mismatch: manifest says {entry.bytes} bytes",
                                   file=self._name(rel), value=info["size"])

    def _check_hash(self, rel: str) -> None:
        sha, size = hashlib.sha256(), 0
        with self._fs.open(self._path(rel), "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                sha.update(chunk)
                size += len(chunk)
        self._compare(rel, sha.hexdigest(), size)

    def _read_whole(self, rel: str) -> bytes:
        data = self._fs.cat_file(self._path(rel))
        if self._verify:
            self._compare(rel, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def _compare(self, rel: str, sha256: str, size: int) -> None:
        entry = self.manifest.files[rel]
        if size != entry.bytes or sha256 != entry.sha256:
            raise DatasetError(f"checksum mismatch: file is corrupt or was modified (manifest sha256 "
                               f"{entry.sha256}, {entry.bytes} bytes)", file=self._name(rel),
                               value=f"sha256 {sha256}, {size} bytes")
