"""Run figures: written next to metrics.json as real PNGs, atomically, only when their data exist."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import fsspec
import pytest
from PIL import Image

from trainer import plots
from trainer.config import load_config
from trainer.results import write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_MAGIC) and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def _summary(run_dir: str, counts: bool = True) -> dict:
    history = []
    for epoch in range(1, 7):
        entry = {"epoch": epoch, "loss": 1.0 / epoch, "valid/recall@20": 0.1 * min(epoch, 4) - 0.01 * (epoch > 4)}
        if counts:
            entry |= {"codebook/coarse_counts": [5, 3, 0, 2], "codebook/fine_counts": [1, 0, 0, 9, 0, 0],
                      "codebook/coarse_perplexity": 2.9, "codebook/coarse_used": 3.0}
        history.append(entry)
    test = {f"{m}@{k}": v * k / 50 for k in (10, 20, 50) for m, v in (("recall", 0.5), ("ndcg", 0.2))}
    return {"run_dir": run_dir, "epoch": 6, "best_epoch": 4, "best_score": 0.4, "history": history,
            "best_valid": test | {"num_users": 3}, "best_test": test | {"num_users": 3},
            "best_test_valid_masked": test}


def test_results_write_valid_pngs_and_embed_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = load_config(None, ["--run.name=run"])
    markdown = write_results(_summary(str(run)), cfg)
    for name in (plots.CURVES, plots.AT_K, plots.CODE_USAGE):
        png = (run / name).read_bytes()
        width, height = _size(png)
        assert width >= 400 and height >= 300, (name, width, height)
        with Image.open(io.BytesIO(png)) as image:  # decodes: a whole PNG, not just its header
            image.load()
            assert image.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))  # not blank
        assert f"]({name})" in markdown
    assert "![training curves](curves.png)" in markdown
    assert (run / "results.md").read_text() == markdown
    assert not list(run.glob("*.tmp-*"))  # temporary names renamed away
    assert json.loads((run / "metrics.json").read_text())["history"][0]["codebook/coarse_counts"] == [5, 3, 0, 2]


def test_no_code_usage_plot_without_codebook_stats(tmp_path: Path) -> None:
    run = tmp_path / "plain"
    markdown = write_results(_summary(str(run), counts=False), load_config(None, ["--run.name=plain"]))
    assert sorted(p.name for p in run.glob("*.png")) == sorted([plots.CURVES, plots.AT_K])
    assert "code_usage" not in markdown and "![codebook usage]" not in markdown
    assert plots.code_usage_png({"history": [{"epoch": 1, "loss": 0.3}]}) is None
    assert plots.run_plots({"history": [], "best_test": {}}) == {}


def test_code_usage_is_drawn_at_the_best_epoch() -> None:
    summary = _summary("unused")
    summary["history"][3]["codebook/coarse_counts"] = [9, 9, 9, 9]
    assert plots.code_usage_entry(summary)["codebook/coarse_counts"] == [9, 9, 9, 9]
    summary["best_epoch"] = 99  # not in the history: the latest entry with counts
    assert plots.code_usage_entry(summary)["epoch"] == 6


def test_at_k_parses_and_sorts_cutoffs() -> None:
    assert plots.at_k({"recall@50": 0.3, "recall@5": 0.1, "ndcg@5": 0.9, "recall@x": 1.0, "num_users": 3},
                      "recall") == ([5, 50], [0.1, 0.3])


def test_write_is_atomic_through_fsspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// stands for an object store: the final name appears only by the rename, whole."""
    fs = fsspec.filesystem("memory")
    url = "memory://plots-test/run/curves.png"
    moves = []
    real_mv = type(fs).mv

    def spy_mv(self, src, dst, *args, **kwargs):
        assert not self.exists(dst) and self.cat_file(src) == b"\x89PNG data"  # complete before the rename
        moves.append((src, dst))
        return real_mv(self, src, dst, *args, **kwargs)

    monkeypatch.setattr(type(fs), "mv", spy_mv)
    plots.write_bytes_atomically(url, b"\x89PNG data")
    assert len(moves) == 1 and ".tmp-" in moves[0][0] and moves[0][1].endswith("/run/curves.png")
    assert fs.cat_file("/plots-test/run/curves.png") == b"\x89PNG data"
    assert fs.ls("/plots-test/run", detail=False) == ["/plots-test/run/curves.png"]
    fs.rm("/plots-test", recursive=True)


def test_comparison_plot_is_a_png() -> None:
    png = plots.comparison_png({"a": _summary("a"), "b": _summary("b", counts=False)})
    assert _size(png)[0] >= 400
