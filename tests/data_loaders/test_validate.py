"""data_loaders/validate.py: each check names the file, column, row and value of the first bad entry.

The importers, writer and stream tests reach these checks through whole files; here each check
is called directly, so a wrong row (an off-by-one in `first_row`, the second bad row reported
instead of the first) or a wrong value fails one small test.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from data_loaders.format import DatasetError, Split
from data_loaders.validate import (
    as_vectors,
    check_below,
    check_finite,
    check_id_coverage,
    check_split,
    check_unique_pairs,
    compact_ids,
    first_duplicate,
    interaction_arrays,
    require_columns,
    to_int64,
)


def _where(err: pytest.ExceptionInfo[DatasetError]) -> tuple:
    e = err.value
    return e.file, e.column, e.row, e.value


def test_require_columns_names_the_missing_one() -> None:
    require_columns(["user_id", "item_id"], ["item_id"], file="f")
    with pytest.raises(DatasetError, match=r"missing column \(have \['item_id', 'user_id'\]\)") as err:
        require_columns(["user_id", "item_id"], ["user_id", "split"], file="f")
    assert err.value.column == "split"


@pytest.mark.parametrize("values, message, row, value", [
    (pa.array([1, None, None]), "missing value", 11, None),
    (pa.array(["1", " 2 ", "x3", "y"]), "not an integer", 12, "x3"),
    (pa.array(["1", "99999999999999999999"]), "integer too large for int64", 11, "99999999999999999999"),
    (np.array([0.0, 1.5, 2.5]), "not an integer", 11, 1.5),
    (np.array([0.0, np.nan]), "not an integer", 11, None),  # value nan: compared below
    (np.array([0, 2**63], dtype=np.uint64), "integer too large for int64", 11, 2**63),
    (np.array([3, 0, -1, -5]), "negative id", 12, -1),
])
def test_to_int64_reports_the_first_bad_row(values, message: str, row: int, value) -> None:
    with pytest.raises(DatasetError, match=message) as err:
        to_int64(values, file="f.parquet", column="item_id", first_row=10)
    file, column, got_row, got_value = _where(err)
    assert (file, column, got_row) == ("f.parquet", "item_id", row)
    if value is None and isinstance(values, np.ndarray):
        assert np.isnan(got_value)
    else:
        assert got_value == value


def test_to_int64_accepts_what_it_documents() -> None:
    assert to_int64(pa.array([" 3", "4 ", "-0"]), file="f", column="c").tolist() == [3, 4, 0]
    assert to_int64(np.array([1.0, 2.0]), file="f", column="c").dtype == np.int64
    assert to_int64(pa.chunked_array([[1, 2], [3]]), file="f", column="c").tolist() == [1, 2, 3]
    assert to_int64(np.array([-4, 2]), file="f", column="c", allow_negative=True).tolist() == [-4, 2]
    with pytest.raises(DatasetError, match="column dtype"):
        to_int64(np.array(["a"], dtype=object), file="f", column="c")
    with pytest.raises(DatasetError, match="1-D"):
        to_int64(np.zeros((2, 2), dtype=np.int64), file="f", column="c")


def test_check_below_and_check_split() -> None:
    check_below(np.array([0, 4]), 5, file="f", column="user_id", limit_name="num_users")
    with pytest.raises(DatasetError, match="must be < num_users = 5") as err:
        check_below(np.array([0, 5, 9]), 5, file="f", column="user_id", limit_name="num_users", first_row=100)
    assert _where(err) == ("f", "user_id", 101, 5)
    assert check_split(np.array([0, 1, 2, 3, 4]), file="f").dtype == np.int8
    with pytest.raises(DatasetError, match=r"unknown split value \(expected one of \[0, 1, 2\]\)") as err:
        check_split(np.array([0, 2, 3]), file="f", allowed=[Split.TRAIN, Split.VALID, Split.TEST])
    assert _where(err) == ("f", "split", 2, 3)


def test_check_finite_names_the_matrix_entry() -> None:
    check_finite(np.ones((3, 2)), file="f", column="vector")
    m = np.ones((4, 3))
    m[2, 1], m[3, 0] = np.inf, np.nan
    with pytest.raises(DatasetError, match="not a finite number") as err:
        check_finite(m, file="f", column="vector", first_row=5)
    assert _where(err) == ("f", "vector[1]", 7, float("inf"))


def test_as_vectors_shapes_dtypes_and_overflow() -> None:
    out = as_vectors(np.arange(6, dtype=np.int64).reshape(3, 2), file="f", dim=2, rows=3)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    with pytest.raises(DatasetError, match="2-D"):
        as_vectors(np.ones(3), file="f")
    with pytest.raises(DatasetError, match="real numbers"):
        as_vectors(np.array([["a"]]), file="f")
    with pytest.raises(DatasetError, match="3 vectors for 4 item ids"):
        as_vectors(np.ones((3, 2)), file="f", rows=4)
    with pytest.raises(DatasetError, match="dimension mismatch: expected 4") as err:
        as_vectors(np.ones((3, 2)), file="f", dim=4)
    assert err.value.value == 2
    big = np.ones((2, 2))
    big[1, 1] = 1e300  # finite in float64, inf once stored as float32: must be caught after the cast
    with pytest.raises(DatasetError, match="not a finite number") as err:
        as_vectors(big, file="f")
    assert (err.value.row, err.value.column) == (1, "vector[1]")


def test_first_duplicate_reports_the_first_repeat_and_its_original() -> None:
    assert first_duplicate(np.array([3, 1, 2])) is None
    assert first_duplicate(np.array([5])) is None
    # 7 repeats at index 3 (first seen at 1); 2 repeats later, at index 4: index 3 is first
    assert first_duplicate(np.array([2, 7, 9, 7, 2, 7])) == (3, 1)
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, size=40)
    seen: dict[int, int] = {}
    expected = None
    for i, k in enumerate(keys.tolist()):  # the loop the vectorised version must agree with
        if k in seen:
            expected = (i, seen[k])
            break
        seen[k] = i
    assert first_duplicate(keys) == expected


def test_check_unique_pairs_and_id_coverage() -> None:
    users, items = np.array([0, 0, 1, 0]), np.array([1, 2, 1, 2])
    with pytest.raises(DatasetError, match="duplicate \\(user, item\\) pair, first seen at row 11") as err:
        check_unique_pairs(users, items, 3, file="f", first_row=10)
    assert _where(err) == ("f", "user_id,item_id", 13, (0, 2))
    check_unique_pairs(np.array([0, 1]), np.array([1, 0]), 2, file="f")  # (0,1) and (1,0) differ
    check_id_coverage(np.array([2, 0, 1]), 3, file="feat")
    with pytest.raises(DatasetError, match="item has two feature rows \\(first at row 0\\)") as err:
        check_id_coverage(np.array([1, 0, 1]), 3, file="feat")
    assert (err.value.row, err.value.value) == (2, 1)
    with pytest.raises(DatasetError, match="1 of 3 items have no feature row; first missing item id 1"):
        check_id_coverage(np.array([2, 0]), 3, file="feat")
    with pytest.raises(DatasetError, match="must be < num_items = 3"):
        check_id_coverage(np.array([0, 3]), 3, file="feat")


def test_compact_ids_only_when_it_fits() -> None:
    assert compact_ids(np.array([0, 2**31 - 1])).dtype == np.int32
    assert compact_ids(np.array([0, 2**31])).dtype == np.int64
    assert compact_ids(np.array([], dtype=np.int64)).dtype == np.int64


def test_interaction_arrays_canonical_output_and_errors() -> None:
    table = pa.table({"user_id": [0, 1], "item_id": ["2", "3"], "split": [0, 2],
                      "weight": [1.0, 0.5], "is_noise": [False, True]})
    out = interaction_arrays(table, file="chunk")
    assert out["item_id"].tolist() == [2, 3] and out["split"].dtype == np.int8
    assert out["weight"].dtype == np.float32 and out["is_noise"].tolist() == [False, True]
    with pytest.raises(DatasetError, match="unknown column") as err:
        interaction_arrays(table.append_column("rating", pa.array([5, 4])), file="chunk")
    assert err.value.column == "rating"
    with pytest.raises(DatasetError, match="missing column") as err:
        interaction_arrays(table.drop(["split"]), file="chunk", first_row=40)
    assert (err.value.column, err.value.row) == ("split", 40)
    bad_split = table.set_column(2, "split", pa.array([0, 7]))
    with pytest.raises(DatasetError, match="unknown split value") as err:
        interaction_arrays(bad_split, file="chunk", first_row=40)
    assert (err.value.row, err.value.value) == (41, 7)
    with pytest.raises(DatasetError, match="expected non-null booleans"):
        interaction_arrays(table.set_column(4, "is_noise", pa.array([0, 1])), file="chunk")
    with pytest.raises(DatasetError, match="not a finite number") as err:
        interaction_arrays(table.set_column(3, "weight", pa.array([1.0, float("nan")])), file="chunk")
    assert (err.value.column, err.value.row) == ("weight", 1)
