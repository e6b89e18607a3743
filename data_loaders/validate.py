"""Vectorised input checks raising DatasetError with file, column, row and value.

Every check finds the first offending row with a whole-array operation (argmax on a mask,
a sort for duplicates), never a Python loop over rows. ``first_row`` is the number of the
array's element 0 in the caller's numbering (a global row for chunked input, a line number
for text files together with ``row_kind="line"``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_loaders.format import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, DatasetError, Split

_INT_RE = r"^\s*-?[0-9]+\s*$"


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True in a boolean array, or None (argmax avoids materialising indices)."""
    if mask.size == 0:
        return None
    i = int(np.argmax(mask))
    return i if mask[i] else None


def require_columns(available: Iterable[str], required: Iterable[str], *, file: str,
                    row: int | None = None, row_kind: str = "row") -> None:
    have = set(available)
    for column in required:
        if column not in have:
            raise DatasetError(f"missing column (have {sorted(have)})", file=file,
                               column=column, row=row, row_kind=row_kind)


def to_int64(values: pa.Array | pa.ChunkedArray | np.ndarray, *, file: str, column: str,
             first_row: int = 0, row_kind: str = "row", allow_negative: bool = False) -> np.ndarray:
    """Integer column -> int64 array; rejects nulls, non-integers and (unless allowed) negatives.

    Integral floats (``3.0``) and integer strings (``"3"``) are accepted, anything else is not.
    """
    def fail(message: str, i: int, value: object) -> DatasetError:
        return DatasetError(message, file=file, column=column, row=first_row + i,
                            value=value, row_kind=row_kind)

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count:
            i = _first(values.is_null().to_numpy(zero_copy_only=False))
            raise fail("missing value", i, None)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            ok = pc.match_substring_regex(values, _INT_RE).to_numpy(zero_copy_only=False)
            i = _first(~ok)
            if i is not None:
                raise fail("not an integer", i, values[i].as_py())
            trimmed = pc.utf8_trim_whitespace(values)
            try:
                values = pc.cast(trimmed, pa.int64()).to_numpy()
            except pa.ArrowInvalid:  # only overflow is left: >= 19 digits
                i = _first(pc.utf8_length(trimmed).to_numpy() >= 19)
                raise fail("integer too large for int64", i or 0, values[i or 0].as_py()) from None
        else:
            values = values.to_numpy(zero_copy_only=False)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DatasetError(f"expected a 1-D array, got shape {arr.shape}", file=file,
                           column=column)
    if arr.dtype.kind == "f":
        i = _first(~np.isfinite(arr) | (arr != np.floor(arr)) | (np.abs(arr) >= 2.0**63))
        if i is not None:
            raise fail("not an integer", i, arr[i])
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        i = _first(arr >= np.uint64(2**63))
        if i is not None:
            raise fail("integer too large for int64", i, arr[i])
    elif arr.dtype.kind not in "iu":
        raise fail(f"not an integer (column dtype {arr.dtype})", 0, arr[0] if arr.size else None)
    arr = arr.astype(np.int64, copy=False)
    if not allow_negative:
        i = _first(arr < 0)
        if i is not None:
            raise fail("negative id", i, arr[i])
    return arr


def check_below(values: np.ndarray, limit: int, *, file: str, column: str, limit_name: str,
                first_row: int = 0, row_kind: str = "row") -> None:
    """Every id must be < limit (num_users, num_items, the number of feature rows ...)."""
    i = _first(values >= limit)
    if i is not None:
        raise DatasetError(f"id out of range: must be < {limit_name} = {limit}", file=file,
                           column=column, row=first_row + i, value=values[i], row_kind=row_kind)


def check_split(values: np.ndarray, *, file: str, column: str = "split", first_row: int = 0,
                row_kind: str = "row", allowed: Iterable[int] | None = None) -> np.ndarray:
    """Split codes -> int8; any value outside ``allowed`` (default: every Split) is an error."""
    allowed = sorted(int(a) for a in (Split if allowed is None else allowed))
    i = _first(~np.isin(values, allowed))
    if i is not None:
        raise DatasetError(f"unknown split value (expected one of {allowed})", file=file,
                           column=column, row=first_row + i, value=values[i], row_kind=row_kind)
    return values.astype(np.int8)


def check_finite(values: np.ndarray, *, file: str, column: str, first_row: int = 0,
                 row_kind: str = "row") -> None:
    """No NaN or infinity; for a matrix the column is reported as ``column[j]`` of the bad entry."""
    bad = ~np.isfinite(values)
    i = _first(bad if values.ndim == 1 else bad.any(axis=1))
    if i is not None:
        if values.ndim == 1:
            value = values[i]
        else:
            j = _first(bad[i])
            column, value = f"{column}[{j}]", values[i, j]
        raise DatasetError("not a finite number", file=file, column=column, row=first_row + i,
                           value=value, row_kind=row_kind)


def as_vectors(vectors: np.ndarray, *, file: str, column: str = "vector", first_row: int = 0,
               row_kind: str = "row", dim: int | None = None,
               rows: int | None = None) -> np.ndarray:
    """Feature matrix -> float32 (n, dim): 2-D, real-valued, finite, of the expected dim/rows."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise DatasetError(f"expected a 2-D (rows, dim) matrix, got shape {arr.shape}",
                           file=file, column=column)
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"expected real numbers, got dtype {arr.dtype}", file=file,
                           column=column)
    if rows is not None and len(arr) != rows:
        raise DatasetError(f"{len(arr)} vectors for {rows} item ids", file=file, column=column)
    if arr.shape[1] < 1 or (dim is not None and arr.shape[1] != dim):
        raise DatasetError(f"dimension mismatch: expected {dim}", file=file, column=column,
                           row=first_row, value=arr.shape[1], row_kind=row_kind)
    with np.errstate(over="ignore"):  # overflow is reported below, by file, row and column
        arr = arr.astype(np.float32, copy=False)  # after the cast: float64 overflow becomes inf here
    check_finite(arr, file=file, column=column, first_row=first_row, row_kind=row_kind)
    return arr


def first_duplicate(keys: np.ndarray) -> tuple[int, int] | None:
    """(index of the first element equal to an earlier one, index of that earlier one), or None."""
    if keys.size < 2:
        return None
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():  # common case: one sort, no index arrays
        return None
    order = np.argsort(keys, kind="stable")  # stable: equal keys keep input order
    sk = keys[order]
    later = order[1:][sk[1:] == sk[:-1]]
    row = int(later.min())
    earlier = int(order[np.searchsorted(sk, keys[row])])
    return row, earlier


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Non-negative ids as int32 when they fit: halves what chunked writers keep per row for
    the final cross-chunk checks (range, duplicates)."""
    return ids.astype(np.int32) if ids.size and ids.max() < 2**31 else ids


def check_unique_pairs(users: np.ndarray, items: np.ndarray, num_items: int, *, file: str,
                       columns: tuple[str, str] = ("user_id", "item_id"), first_row: int = 0,
                       row_kind: str = "row") -> None:
    """No (user, item) pair twice; reports the first repeated row and where it first appeared."""
    dup = first_duplicate(users.astype(np.int64) * num_items + items)
    if dup is not None:
        row, earlier = dup
        raise DatasetError(f"duplicate (user, item) pair, first seen at {row_kind} "
                           f"{first_row + earlier}", file=file, column=",".join(columns),
                           row=first_row + row, value=(int(users[row]), int(items[row])),
                           row_kind=row_kind)


def check_id_coverage(ids: np.ndarray, count: int, *, file: str, column: str = "item_id") -> None:
    """Exactly one row per id in [0, count) (feature tables)."""
    check_below(ids, count, file=file, column=column, limit_name="num_items")
    dup = first_duplicate(ids)
    if dup is not None:
        raise DatasetError(f"item has two feature rows (first at row {dup[1]})", file=file,
                           column=column, row=dup[0], value=ids[dup[0]])
    if len(ids) != count:
        missing = _first(np.bincount(ids, minlength=count) == 0)
        raise DatasetError(f"{count - len(ids)} of {count} items have no feature row; first "
                           f"missing item id {missing}", file=file, column=column,
                           value=missing)


def interaction_arrays(table: pa.Table, *, file: str, first_row: int = 0,
                       row_kind: str = "row") -> dict[str, np.ndarray]:
    """Check one chunk of interactions; returns numpy columns in canonical order and dtypes."""
    require_columns(table.column_names, REQUIRED_COLUMNS, file=file, row=first_row,
                    row_kind=row_kind)
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    for column in table.column_names:
        if column not in known:
            raise DatasetError(f"unknown column (known: {list(known)})", file=file,
                               column=column)
    where = dict(file=file, first_row=first_row, row_kind=row_kind)
    out = {c: to_int64(table[c], column=c, **where) for c in ("user_id", "item_id")}
    split = to_int64(table["split"], column="split", allow_negative=True, **where)
    out["split"] = check_split(split, **where)
    if "timestamp" in table.column_names:
        out["timestamp"] = to_int64(table["timestamp"], column="timestamp", allow_negative=True,
                                    **where)
    if "weight" in table.column_names:
        weight = table["weight"]
        numeric = pa.types.is_floating(weight.type) or pa.types.is_integer(weight.type)
        if weight.null_count or not numeric:
            raise DatasetError(f"expected non-null numbers, got {weight.type}", file=file,
                               column="weight", row=first_row, row_kind=row_kind)
        out["weight"] = weight.to_numpy().astype(np.float32)
        check_finite(out["weight"], column="weight", **where)
    if "is_noise" in table.column_names:
        noise = table["is_noise"]
        if noise.null_count or not pa.types.is_boolean(noise.type):
            raise DatasetError(f"expected non-null booleans, got {noise.type}", file=file,
                               column="is_noise", row=first_row, row_kind=row_kind)
        out["is_noise"] = noise.to_numpy(zero_copy_only=False)
    return out
