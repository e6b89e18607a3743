"""The canonical dataset: manifest schema, paths, errors and filesystems (the writer: writer.py).

Layout (see docs/ARCHITECTURE.md)::

    <url>/manifest.json                        written last; no manifest, no dataset
    <url>/interactions/part-NNNNN.parquet      user_id, item_id, split [timestamp weight is_noise]
    <url>/items/<modality>/part-NNNNN.parquet  item_id, vector fixed_size_list<float32>[dim]
    <url>/truth/<name>.parquet                 optional ground truth
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from data_loaders import storage

FORMAT_VERSION: int = 1

MANIFEST_FILE = "manifest.json"
INTERACTIONS_DIR = "interactions"
ITEMS_DIR = "items"
TRUTH_DIR = "truth"

REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "split")
OPTIONAL_COLUMNS: tuple[str, ...] = ("timestamp", "weight", "is_noise")
INTERACTION_TYPES: dict[str, pa.DataType] = {
    "user_id": pa.int64(),
    "item_id": pa.int64(),
    "split": pa.int8(),
    "timestamp": pa.int64(),
    "weight": pa.float32(),
    "is_noise": pa.bool_(),
}


class Split(enum.IntEnum):
    TRAIN = 0
    VALID = 1
    TEST = 2
    UNBIASED_TEST = 3   # simulator only: drawn under uniform exposure (docs/SIMULATOR.md)
    UNBIASED_VALID = 4  # simulator only: as UNBIASED_TEST, disjoint from it, for choosing (eval.select_split)


class DatasetError(ValueError):
    """Bad dataset or bad input; the message names the file, row, column and value when known.

    ``row_kind`` only changes the wording ("line" for text files whose header is line 1).
    """

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None,
                 row: int | None = None, value: object = None, row_kind: str = "row") -> None:
        if isinstance(value, np.generic):
            value = value.item()
        self.message, self.file, self.column, self.row = message, file, column, row
        self.value, self.row_kind = value, row_kind
        where = [file] if file is not None else []
        if row is not None:
            where.append(f"{row_kind} {row}")
        if column is not None:
            where.append(f"column {column!r}")
        text = f"{', '.join(where)}: {message}" if where else message
        if value is not None:
            text += f" (value: {value!r})"
        super().__init__(text)

    def __reduce__(self):  # keep the fields when pickled across processes (Ray workers)
        kwargs = dict(file=self.file, column=self.column, row=self.row, value=self.value,
                      row_kind=self.row_kind)
        return (_rebuild_error, (self.message, kwargs))


def _rebuild_error(message: str, kwargs: dict) -> DatasetError:
    return DatasetError(message, **kwargs)


@dataclass
class FileEntry:
    sha256: str
    bytes: int
    rows: int


@dataclass
class Manifest:
    format_version: int
    name: str
    num_users: int
    num_items: int
    num_interactions: int
    splits: dict[str, int]  # split name (Split.X.name.lower()) -> rows
    modalities: dict[str, int]  # modality -> vector dim
    files: dict[str, FileEntry]  # path relative to the dataset root -> checksum
    truth: list[str]
    source: dict[str, Any]
    created_at: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, file: str = MANIFEST_FILE) -> Manifest:
        """Parse and type-check a manifest; anything malformed is a DatasetError naming the key."""
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"not valid JSON ({e})", file=file) from None
        if not isinstance(raw, dict):
            raise DatasetError("expected a JSON object", file=file, value=type(raw).__name__)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in names:
            if key not in raw:
                raise DatasetError("missing key (incomplete manifest)", file=file, column=key)
        for key in raw:
            if key not in names:
                raise DatasetError("unknown key", file=file, column=key)
        kinds = {"format_version": int, "name": str, "num_users": int, "num_items": int,
                 "num_interactions": int, "splits": dict, "modalities": dict, "files": dict,
                 "truth": list, "source": dict, "created_at": str}
        for key, kind in kinds.items():
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                raise DatasetError(f"expected {kind.__name__}", file=file, column=key,
                                   value=raw[key])
        if raw["format_version"] != FORMAT_VERSION:
            raise DatasetError(f"unsupported format version (this reader knows {FORMAT_VERSION})",
                               file=file, column="format_version", value=raw["format_version"])
        for key in ("splits", "modalities"):
            for name, count in raw[key].items():
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise DatasetError("expected a non-negative integer", file=file,
                                       column=f"{key}.{name}", value=count)
        files = {}
        for rel, entry in raw["files"].items():
            _check_relative(rel, file)
            ok = (isinstance(entry, dict) and set(entry) == {"sha256", "bytes", "rows"}
                  and isinstance(entry["sha256"], str)
                  and all(isinstance(entry[k], int) and not isinstance(entry[k], bool)
                          for k in ("bytes", "rows")))
            if not ok:
                raise DatasetError("expected {sha256: str, bytes: int, rows: int}", file=file,
                                   column=f"files.{rel}", value=entry)
            files[rel] = FileEntry(**entry)
        for rel in raw["truth"]:
            if not isinstance(rel, str) or rel not in files:
                raise DatasetError("truth file not listed in files", file=file, column="truth",
                                   value=rel)
        return cls(**{**raw, "files": files})


def _check_relative(rel: str, file: str) -> None:
    # The reader joins these onto the dataset root: refuse anything that could escape it.
    if not rel or rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
        raise DatasetError("file path must be relative to the dataset root", file=file,
                           column="files", value=rel)


def split_name(split: Split | int) -> str:
    return Split(split).name.lower()


def url_to_fs(url: str, storage_options: dict | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and the root path (no trailing slash) of a dataset URL.

    s3:// gets short connect/read timeouts unless the options set them (data_loaders/storage.py).
    """
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    fs, root = fsspec.core.url_to_fs(url, **storage.with_default_timeouts(protocol, storage_options))
    storage.tune_filesystem(fs)
    return fs, root.rstrip("/")
