"""The prepare CLI: both import forms, verify, info, and exit code 2 with a message on bad data."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np

from data_loaders import prepare
from data_loaders.writer import DatasetWriter

REPO = Path(__file__).resolve().parents[2]


def test_mmrec_import_verify_info(mmrec_tiny: dict, tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "ds")
    assert prepare.main(["--from", "mmrec", "--src", str(mmrec_tiny["src"]), "--to", url]) == 0
    counts = np.bincount(mmrec_tiny["labels"])
    out = capsys.readouterr().out
    assert f"train {counts[0]} / valid {counts[1]} / test {counts[2]}" in out
    assert "users 12  items 9" in out and "image 4-d, text 3-d" in out

    assert prepare.main(["verify", url]) == 0
    assert "OK: 3 files" in capsys.readouterr().out
    assert prepare.main(["info", url]) == 0
    assert '"importer": "mmrec"' in capsys.readouterr().out

    assert prepare.main(["--from", "mmrec", "--src", str(mmrec_tiny["src"]), "--to", url]) == 2
    assert "already exists" in capsys.readouterr().err
    assert prepare.main(["--from", "mmrec", "--src", str(mmrec_tiny["src"]), "--to", url,
                         "--name", "tiny", "--overwrite"]) == 0


def test_verify_reports_the_tampered_file(mmrec_tiny: dict, tmp_path: Path, capsys) -> None:
    url = tmp_path / "ds"
    prepare.main(["--from", "mmrec", "--src", str(mmrec_tiny["src"]), "--to", str(url)])
    feature = url / "items" / "text" / "part-00000.parquet"
    data = bytearray(feature.read_bytes())
    data[10] ^= 1
    feature.write_bytes(bytes(data))
    capsys.readouterr()
    assert prepare.main(["verify", str(url)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "items/text/part-00000.parquet" in err and "checksum" in err


def test_bad_input_exits_2_without_traceback(mmrec_tiny: dict, tmp_path: Path) -> None:
    inter = mmrec_tiny["src"] / "tiny.inter"
    inter.write_text(inter.read_text().replace("\n1\t", "\n-1\t", 1))
    result = subprocess.run([sys.executable, "-m", "data_loaders.prepare", "--from", "mmrec", "--src",
                             str(mmrec_tiny["src"]), "--to", str(tmp_path / "ds")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "tiny.inter, line" in result.stderr and "'userID'" in result.stderr and "-1" in result.stderr


def test_synthetic_options_are_forwarded(tmp_path: Path, monkeypatch, capsys) -> None:
    calls = []

    def add_cli_arguments(parser) -> None:
        parser.add_argument("--users", type=int, required=True)
        parser.add_argument("--items", type=int, required=True)

    def run_from_args(args, url: str, overwrite: bool):
        calls.append((args.users, args.items, url, overwrite))
        with DatasetWriter(url, overwrite=overwrite) as w:
            w.write_interactions({"user_id": np.arange(args.users), "item_id": np.zeros(args.users, int),
                                  "split": np.zeros(args.users, np.int8)})
            return w.commit(name="fake", num_users=args.users, num_items=args.items, source={})

    fake = types.ModuleType("data_loaders.importers.synthetic")
    fake.add_cli_arguments, fake.run_from_args = add_cli_arguments, run_from_args
    monkeypatch.setitem(sys.modules, "data_loaders.importers.synthetic", fake)
    url = str(tmp_path / "syn")
    assert prepare.main(["--from", "synthetic", "--users", "5", "--items", "3", "--to", url,
                         "--overwrite"]) == 0
    assert calls == [(5, 3, url, True)]
    assert "users 5  items 3  interactions 5" in capsys.readouterr().out
