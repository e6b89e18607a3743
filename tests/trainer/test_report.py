"""`python -m trainer.report`: one row per run from metrics.json (or per seed group), clear error for a non-run."""

import json
import struct
from pathlib import Path

import pytest

from trainer.config import Config
from trainer.report import comparison_table, grouped_table, load_published, main, replace_section, seed_group

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, name: str, r20: float, data: str = "data/synthetic-demo") -> str:
    run = tmp_path / name
    run.mkdir()
    metrics = {k: r20 for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")} | {"num_users": 7}
    config = Config().to_dict()
    config["data"]["url"] = data
    history = [{"epoch": e, "loss": 1.0 / e, "valid/recall@20": r20 * e / 9} for e in range(1, 10)]
    (run / "metrics.json").write_text(json.dumps({
        "config": config, "best_epoch": 3, "epoch": 9, "best_test": metrics,
        "best_test_valid_masked": metrics, "best_valid": metrics, "history": history}))
    return str(run)


def test_one_row_per_run(tmp_path: Path) -> None:
    table = comparison_table([_run(tmp_path, "a", 0.125), _run(tmp_path, "b", 0.25)])
    rows = table.splitlines()
    assert len(rows) == 4 and rows[2].startswith("| a | lightgcn |") and "0.2500" in rows[3]
    assert "3 / 9" in rows[2]


def test_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="metrics.json not found"):
        main([str(tmp_path / "nope")])


def test_plot_has_one_line_per_run(tmp_path: Path) -> None:
    from PIL import Image

    runs = [_run(tmp_path, "a", 0.125), _run(tmp_path, "b", 0.25)]
    out = tmp_path / "figs" / "valid.png"
    assert main(runs + ["--plot", str(out)]) == 0
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] >= 400
    with Image.open(out) as image:  # two differently coloured lines: matplotlib's first two colours
        colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours


def test_replace_section_touches_only_its_block() -> None:
    doc = "# T\n\nintro\n\n<!-- begin a -->\nold a\n<!-- end a -->\n\nmiddle\n\n<!-- begin b -->\nold b\n<!-- end b -->\n"
    new = replace_section(doc, "a", "| new |\n")
    assert new == doc.replace("old a", "| new |")
    assert replace_section(new, "a", "| new |") == new  # idempotent
    appended = replace_section(doc, "c", "x")
    assert appended.startswith(doc.rstrip()) and appended.endswith("\n\n<!-- begin c -->\nx\n<!-- end c -->\n")
    assert replace_section(doc, "a", r"back\1slash") == doc.replace("old a", r"back\1slash")  # no regex escapes


def test_markdown_section_is_regenerated_from_run_dirs(tmp_path: Path, capsys) -> None:
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\n<!-- begin models -->\nstale table\n<!-- end models -->\n\nprose after\n")
    runs = [_run(tmp_path, "a", 0.125)]
    assert main(runs + ["--markdown-section", "models", "--write", str(doc)]) == 0
    table = capsys.readouterr().out.strip()
    text = doc.read_text()
    assert "stale table" not in text and f"<!-- begin models -->\n{table}\n<!-- end models -->" in text
    assert text.startswith("# Results\n") and text.endswith("prose after\n")
    assert not list(tmp_path.glob("RESULTS.md.tmp-*"))
    with pytest.raises(SystemExit):  # one without the other is a usage error
        main(runs + ["--markdown-section", "models"])


def test_published_rows_are_appended_and_labelled(tmp_path: Path) -> None:
    rows = load_published(str(REPO / "docs/published.yaml"))
    assert {"MMSSL (WWW'23)", "DiffMM (MM'24)"} <= {r["model"] for r in rows}
    table = comparison_table([_run(tmp_path, "ours", 0.1, data="data/tiktok")], rows)
    lines = table.splitlines()
    mmssl = next(line for line in lines if "MMSSL" in line)
    assert mmssl.startswith("| *published* | MMSSL (WWW'23) | tiktok |") and "protocol V" in mmssl
    assert "| 0.0921 |" in mmssl and "| 0.0392 |" in mmssl
    assert "protocol T" in next(line for line in lines if "DiffMM" in line)
    assert sum(line.startswith("| *published*") for line in lines) == len(rows)
    assert "not measured here" in table
    # rows of other datasets are left out
    other = comparison_table([_run(tmp_path, "sim", 0.1)], rows)
    assert "*published*" not in other


def test_bad_published_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("rows:\n  - {model: X, data: tiktok, recall@20: 0.1, protocol: Z, source: paper}\n")
    with pytest.raises(SystemExit, match="row 0 protocol 'Z'"):
        load_published(str(bad))
    bad.write_text("rows:\n  - {model: X, recall@20: 0.1}\n")
    with pytest.raises(SystemExit, match="row 0 lacks data, protocol, source"):
        load_published(str(bad))


# ---- --group-seeds ------------------------------------------------------------------------------------

def _fake_run(root: Path, name: str, seed: int, r20: float, model: str = "lightgcn", epoch: int = 5) -> str:
    run = root / name
    run.mkdir()
    config = Config().to_dict()
    config["data"]["url"] = "data/tiktok"
    config["model"]["name"] = model
    config["run"]["seed"] = seed
    figures = {"recall@10": r20 / 2, "recall@20": r20, "ndcg@10": r20 / 4, "ndcg@20": r20 / 3, "num_users": 6130}
    (run / "metrics.json").write_text(json.dumps({
        "config": config, "best_epoch": epoch, "epoch": epoch + 20, "best_score": r20 + 0.01, "best_test": figures,
        "best_test_valid_masked": figures, "best_valid": {**figures, "recall@20": r20 + 0.01}}))
    return str(run)


def test_group_seeds_is_mean_and_sample_std_over_seeds(tmp_path: Path, capsys) -> None:
    assert seed_group("tiktok_causal_no_topology_s12") == "tiktok_causal_no_topology"
    assert seed_group("tiktok_lightgcn_layers2") == "tiktok_lightgcn_layers2"
    runs = [_fake_run(tmp_path, f"x_s{s}", s, r, epoch=4 + s) for s, r in [(0, 0.1), (1, 0.2), (2, 0.3)]]
    runs += [_fake_run(tmp_path, "y_s0", 0, 0.05, model="bpr"), _fake_run(tmp_path, "z", 0, 0.07)]
    table = grouped_table(runs)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines() if line.startswith("| ")}
    x = rows["x"]
    assert x[1:6] == ["lightgcn", "tiktok", "0, 1, 2", "4, 5, 6", f"{0.1:.4f} ± {0.05:.4f}"]  # R@10 = r20 / 2
    assert x[6] == "0.2000 ± 0.1000"            # R@20: mean 0.2, sample std 0.1
    assert x[8] == f"{0.2 / 3:.4f} ± {0.1 / 3:.4f}"  # N@20
    assert x[10] == "0.2100 ± 0.1000" and x[12] == "6130"
    assert x[11] == f"{0.2 / 3:.4f} ± {0.1 / 3:.4f}"  # valid N@20 at the chosen epoch
    assert x[13] == "valid recall@20 0.2100 ± 0.1000 |"  # what chose each run's epoch, and its value there
    assert rows["y"][1] == "bpr" and rows["y"][6] == "0.0500"  # one seed: the value alone
    assert rows["z"][6] == "0.0700"
    assert list(rows)[1:] == ["x", "y", "z"]  # header first, then groups in order of appearance
    assert main(["--group-seeds", *runs, "--published", str(REPO / "docs/published.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "| x | lightgcn | tiktok | 0, 1, 2 |" in printed and "| *published* | MMSSL (WWW'23) | tiktok |" in printed
    widths = {line.count("|") for line in printed.splitlines() if line.startswith("| ")}
    assert len(widths) == 1  # published rows have the runs' columns
    mixed = _fake_run(tmp_path, "x_s3", 3, 0.4, model="bpr")
    with pytest.raises(SystemExit, match="seed group x mixes models"):
        grouped_table([*runs, mixed])
