"""MMRec import: round trip, every kind of bad raw input (named by file, line, column, value)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_loaders.format import DatasetError, Split
from data_loaders.importers.mmrec import import_mmrec
from data_loaders.stream import open_dataset

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def test_round_trip(mmrec_tiny: dict, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    manifest = import_mmrec(str(mmrec_tiny["src"]), url)
    assert (manifest.name, manifest.num_users, manifest.num_items) == ("tiny", 12, 9)
    assert manifest.modalities == {"image": 4, "text": 3}
    ds = open_dataset(url)
    got = ds.load_interactions()
    np.testing.assert_array_equal(got["user_id"], mmrec_tiny["users"])
    np.testing.assert_array_equal(got["item_id"], mmrec_tiny["items"])
    np.testing.assert_array_equal(got["split"], mmrec_tiny["labels"])
    counts = np.bincount(mmrec_tiny["labels"], minlength=4)
    assert manifest.splits == {"train": counts[0], "valid": counts[1], "test": counts[2],
                               "unbiased_test": 0, "unbiased_valid": 0}
    for modality, matrix in mmrec_tiny["features"].items():
        np.testing.assert_array_equal(ds.load_item_features(modality), matrix)
    valid = ds.load_interactions(splits=[Split.VALID], columns=("user_id",))
    np.testing.assert_array_equal(valid["user_id"], mmrec_tiny["users"][mmrec_tiny["labels"] == 1])


def test_progress_bars_report_rows(mmrec_tiny: dict, tmp_path: Path, capsys) -> None:
    import_mmrec(str(mmrec_tiny["src"]), str(tmp_path / "ds"), progress=True)
    err = capsys.readouterr().err
    assert f"reading tiny.inter: {len(mmrec_tiny['users'])}.0row" in err  # every row counted
    for modality, matrix in mmrec_tiny["features"].items():  # tqdm may shorten the description
        assert f"{modality}_feat.npy: 100%" in err and f"{len(matrix)}.00/{len(matrix)}.00" in err
    import_mmrec(str(mmrec_tiny["src"]), str(tmp_path / "quiet"))
    assert "reading" not in capsys.readouterr().err


def test_interactions_only_and_explicit_name(make_mmrec, tmp_path: Path) -> None:
    src = make_mmrec(tmp_path / "src", [0, 1, 1], [2, 0, 1], [0, 0, 2], {}, name="b")
    (src / "other.inter").write_text("junk")  # two .inter files: the name picks one
    manifest = import_mmrec(str(src), str(tmp_path / "ds"), name="b")
    assert (manifest.num_users, manifest.num_items, manifest.modalities) == (2, 3, {})
    with pytest.raises(DatasetError, match="exactly one .inter"):
        import_mmrec(str(src), str(tmp_path / "ds2"))


def _error(src: Path, tmp_path: Path) -> DatasetError:
    url = tmp_path / "out"
    with pytest.raises(DatasetError) as info:
        import_mmrec(str(src), str(url))
    assert not url.exists() and not list(tmp_path.glob("out.partial-*"))  # nothing left behind
    return info.value


def _edit_line(src: Path, line: int, text: str) -> None:
    path = src / "tiny.inter"
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = text
    path.write_text("".join(lines))


@pytest.mark.parametrize("line, text, column, value, message", [
    (4, "3\t1.5\t1\t0\t0\n", "itemID", "1.5", "not an integer"),
    (5, "abc\t1\t1\t0\t0\n", "userID", "abc", "not an integer"),
    (6, "-2\t1\t1\t0\t0\n", "userID", -2, "negative id"),
    (3, "1\t\t1\t0\t0\n", "itemID", None, "missing value"),
    (7, "1\t3\t1\t0\t7\n", "x_label", 7, "unknown split value"),
    (8, "1\t9\t1\t0\t0\n", "itemID", 9, "feature rows of image_feat.npy"),
])
def test_bad_inter_values(mmrec_tiny: dict, tmp_path: Path, line, text, column, value,
                          message) -> None:
    _edit_line(mmrec_tiny["src"], line, text)
    err = _error(mmrec_tiny["src"], tmp_path)
    assert (err.file, err.row, err.column, err.value) == (
        str(mmrec_tiny["src"] / "tiny.inter"), line, column, value)
    text = str(err)
    assert "tiny.inter" in text and f"line {line}" in text and repr(column) in text
    assert message in text and (value is None or repr(value) in text)


def test_bad_value_found_beyond_the_first_block(make_mmrec, tmp_path: Path) -> None:
    # Arrow infers/parses in blocks; the text re-scan must still find the exact line.
    n = 200_000
    users, items = np.arange(n) // 10, np.arange(n) % 10
    src = make_mmrec(tmp_path / "src", users, items, np.zeros(n, int), {})
    _edit_line(src, n, f"{users[n - 2]}\tX\t1\t0\t0\n")
    err = _error(src, tmp_path)
    assert (err.row, err.column, err.value) == (n, "itemID", "X")


def test_wrong_field_count_and_missing_column(mmrec_tiny: dict, tmp_path: Path) -> None:
    src = mmrec_tiny["src"]
    _edit_line(src, 9, "1\t2\t1\t0\n")
    err = _error(src, tmp_path)
    assert (err.row, err.value) == (9, "1\t2\t1\t0") and "expected 5 tab-separated fields" in str(err)
    _edit_line(src, 1, "userID\titem\trating\ttimestamp\tx_label\n")
    err = _error(src, tmp_path)
    assert (err.row, err.column) == (1, "itemID") and "missing column" in str(err)


def test_duplicate_pair_names_both_lines(mmrec_tiny: dict, tmp_path: Path) -> None:
    u, i = mmrec_tiny["users"][2], mmrec_tiny["items"][2]  # data line 3 = file line 4
    _edit_line(mmrec_tiny["src"], 10, f"{u}\t{i}\t1\t0\t2\n")
    err = _error(mmrec_tiny["src"], tmp_path)
    assert (err.row, err.column, err.value) == (10, "userID,itemID", (u, i))
    assert "tiny.inter, line 10" in str(err) and "first seen at line 4" in str(err)


def test_no_train_rows(make_mmrec, tmp_path: Path) -> None:
    src = make_mmrec(tmp_path / "src", [0, 1], [0, 1], [1, 2], {})
    err = _error(src, tmp_path)
    assert err.column == "x_label" and "no training interactions" in str(err)


def test_bad_features(mmrec_tiny: dict, tmp_path: Path) -> None:
    src, image = mmrec_tiny["src"], mmrec_tiny["features"]["image"].copy()
    image[5, 2] = np.nan
    np.save(src / "image_feat.npy", image)
    err = _error(src, tmp_path)
    assert (err.file, err.row, err.column) == (str(src / "image_feat.npy"), 5, "vector[2]")
    assert "not a finite number" in str(err) and "nan" in str(err)

    np.save(src / "image_feat.npy", mmrec_tiny["features"]["image"][:8])  # one row short
    err = _error(src, tmp_path)
    assert "text_feat.npy" in err.file and "9 rows but image_feat.npy has 8" in str(err)

    np.save(src / "image_feat.npy", np.zeros(9, np.float32))  # not a matrix
    err = _error(src, tmp_path)
    assert "image_feat.npy" in err.file and "2-D" in str(err)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "tiktok").is_dir(), reason="../shared/data/tiktok absent")
def test_real_tiktok(tmp_path: Path) -> None:
    manifest = import_mmrec(str(SHARED_DATA / "tiktok"), str(tmp_path / "tiktok"))
    assert (manifest.num_users, manifest.num_items, manifest.num_interactions) == (9308, 6710, 68722)
    assert manifest.splits == {"train": 59541, "valid": 3051, "test": 6130, "unbiased_test": 0, "unbiased_valid": 0}
    assert manifest.modalities == {"audio": 128, "image": 128}
    ds = open_dataset(str(tmp_path / "tiktok"))
    np.testing.assert_array_equal(ds.load_item_features("image"),
                                  np.load(SHARED_DATA / "tiktok" / "image_feat.npy"))
