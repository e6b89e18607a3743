"""Import the MMRec layout: ``<name>.inter`` (tab-separated) plus ``<modality>_feat.npy`` files.

Only userID, itemID and x_label (0 train, 1 valid, 2 test) are read; rating and timestamp are
placeholders in the reference data. Errors name the .inter file with its line number (the
header is line 1) and column, or the .npy file with its row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from tqdm import tqdm

from data_loaders import validate
from data_loaders.format import DatasetError, Manifest, Split
from data_loaders.writer import DatasetWriter

USER, ITEM, LABEL = "userID", "itemID", "x_label"
FEATURE_SUFFIX = "_feat.npy"
_FEATURE_CHUNK = 65_536  # feature rows validated and written per step (the .npy is memory-mapped)
_LABELS = (Split.TRAIN, Split.VALID, Split.TEST)  # MMRec's x_label codes equal ours


def import_mmrec(src_dir: str, url: str, *, name: str | None = None, overwrite: bool = False,
                 storage_options: dict | None = None, progress: bool = False) -> Manifest:
    """Convert an MMRec folder into a canonical dataset at ``url``; returns its manifest.

    ``progress`` shows bars over the interaction rows read and the feature rows written.
    """
    src = Path(src_dir)
    inter = _find_inter(src, name)
    features = _open_features(src)
    feature_rows = next(iter(features.values()))[1].shape[0] if features else None
    feature_limit = "the feature rows of " + ", ".join(p.name for p, _ in features.values())
    with inter.open("rb") as f:
        header = f.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
    validate.require_columns(header, (USER, ITEM, LABEL), file=str(inter), row=1, row_kind="line")

    with DatasetWriter(url, overwrite=overwrite, storage_options=storage_options) as writer:
        users, items, split_counts = [], [], np.zeros(3, dtype=np.int64)
        rows_bar = _bar(progress, f"reading {inter.name}", unit="row")
        for line, batch in _read_inter(inter):
            rows_bar.update(batch.num_rows)
            where = dict(file=str(inter), first_row=line, row_kind="line")
            u = validate.to_int64(batch.column(USER), column=USER, **where)
            i = validate.to_int64(batch.column(ITEM), column=ITEM, **where)
            label = validate.to_int64(batch.column(LABEL), column=LABEL, allow_negative=True,
                                      **where)
            split = validate.check_split(label, column=LABEL, allowed=_LABELS, **where)
            if feature_rows is not None:
                validate.check_below(i, feature_rows, column=ITEM, limit_name=feature_limit, **where)
            writer.write_interactions({"user_id": u, "item_id": i, "split": split})
            users.append(validate.compact_ids(u))
            items.append(validate.compact_ids(i))
            split_counts += np.bincount(split, minlength=3)
        if split_counts[Split.TRAIN] == 0:
            raise DatasetError(f"no training interactions ({LABEL} 0)", file=str(inter),
                               column=LABEL)
        users, items = np.concatenate(users), np.concatenate(items)
        num_users = int(users.max()) + 1
        num_items = feature_rows if feature_rows is not None else int(items.max()) + 1
        # Checked here, not only by the writer, so that the error carries the .inter line.
        validate.check_unique_pairs(users, items, num_items, file=str(inter), columns=(USER, ITEM),
                                    first_row=2, row_kind="line")
        del users, items
        rows_bar.close()
        for modality, (path, matrix) in features.items():
            feature_bar = _bar(progress, f"writing {path.name}", unit="row", total=len(matrix))
            for start in range(0, len(matrix), _FEATURE_CHUNK):
                chunk = validate.as_vectors(matrix[start:start + _FEATURE_CHUNK], file=str(path),
                                            column="vector", first_row=start)
                writer.write_item_features(modality, np.arange(start, start + len(chunk)), chunk)
                feature_bar.update(len(chunk))
            feature_bar.close()
        source = {"importer": "mmrec", "src_dir": str(src.resolve()), "inter_file": inter.name,
                  "feature_files": {m: p.name for m, (p, _) in features.items()}}
        return writer.commit(name=name or inter.stem, num_users=num_users, num_items=num_items,
                             source=source)


def _bar(enabled: bool, desc: str, *, unit: str, total: int | None = None) -> tqdm:
    # disable=True keeps the same update/close calls working without drawing anything.
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled)


def _find_inter(src: Path, name: str | None) -> Path:
    if not src.is_dir():
        raise DatasetError("not a directory", file=str(src))
    if name is not None:
        path = src / f"{name}.inter"
        if not path.is_file():
            raise DatasetError("interaction file not found", file=str(path))
        return path
    found = sorted(src.glob("*.inter"))
    if len(found) != 1:
        raise DatasetError(f"expected exactly one .inter file, found {[p.name for p in found]}; "
                           "pass name=", file=str(src))
    return found[0]


def _open_features(src: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Memory-map every ``<modality>_feat.npy``; all must be 2-D with the same number of rows."""
    out: dict[str, tuple[Path, np.ndarray]] = {}
    for path in sorted(src.glob(f"*{FEATURE_SUFFIX}")):
        try:
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"not a readable .npy array ({e})", file=str(path)) from None
        if matrix.ndim != 2 or matrix.shape[1] < 1:
            raise DatasetError(f"expected a 2-D (items, dim) matrix, got shape {matrix.shape}",
                               file=str(path))
        if out:
            first_path, first = next(iter(out.values()))
            if len(matrix) != len(first):
                raise DatasetError(f"{len(matrix)} rows but {first_path.name} has {len(first)}: "
                                   "every modality needs one row per item", file=str(path),
                                   value=len(matrix))
        out[path.name[:-len(FEATURE_SUFFIX)]] = (path, matrix)
    return out


def _read_inter(path: Path) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(line number of the first row, batch) over the three used columns, streamed.

    The fast path parses int64 directly; if arrow rejects a value, the file is re-read as text
    so that validate.to_int64 can name the exact line, column and value.
    """
    try:
        yield from _batches(path, pa.int64())
    except pa.ArrowInvalid as e:
        for line, batch in _batches(path, pa.string()):
            for column in (USER, ITEM, LABEL):
                validate.to_int64(batch.column(column), file=str(path), column=column,
                                  first_row=line, row_kind="line", allow_negative=column == LABEL)
        raise DatasetError(f"unreadable ({e})", file=str(path)) from None


def _batches(path: Path, kind: pa.DataType) -> Iterator[tuple[int, pa.RecordBatch]]:
    invalid: list[pcsv.InvalidRow] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:  # arrow ignores exceptions raised in here
        invalid.append(row)
        return "error"

    line = 2
    try:  # open_csv already parses the first block
        reader = pcsv.open_csv(
            path,
            # Single-threaded parsing is what gives the handler line numbers.
            read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False,
                                            ignore_empty_lines=False,
                                            invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                include_columns=[USER, ITEM, LABEL],
                column_types={c: kind for c in (USER, ITEM, LABEL)}),
        )
        for batch in reader:
            yield line, batch
            line += batch.num_rows
    except pa.ArrowInvalid:
        if not invalid:
            raise
        row = invalid[0]
        raise DatasetError(f"expected {row.expected_columns} tab-separated fields, got "
                           f"{row.actual_columns}", file=str(path), row=row.number,
                           row_kind="line", value=row.text) from None
