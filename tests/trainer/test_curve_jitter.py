"""`python -m trainer.curve_jitter`: epoch-to-epoch changes of a run's validation curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.curve_jitter import curve_jitter, main


def _run(root: Path, name: str, values: list[float], start: int = 1) -> str:
    run = root / name
    run.mkdir(parents=True)
    history = [{"epoch": start + n, "valid/recall@20": v, "loss": 1.0} for n, v in enumerate(values)]
    history.insert(1, {"epoch": start, "loss": 1.0})  # an entry without the metric is skipped
    (run / "metrics.json").write_text(json.dumps({"history": history}))
    return str(run)


def test_mean_and_largest_change_inside_the_window() -> None:
    history = [{"epoch": e, "m": v} for e, v in [(1, 0.9), (2, 0.1), (3, 0.2), (4, 0.5), (5, 0.4), (6, 0.0)]]
    j = curve_jitter(history, "m", 2, 5, "r")
    assert j.evaluations == 4
    assert j.mean_step == pytest.approx((0.1 + 0.3 + 0.1) / 3)
    assert j.max_step == pytest.approx(0.3)
    assert j.best == 0.9  # over the whole run, not the window


def test_too_short_a_window_or_a_missing_metric_is_an_error() -> None:
    history = [{"epoch": 1, "m": 0.1}, {"epoch": 2, "m": 0.2}]
    with pytest.raises(ValueError, match="fewer than 2 evaluations of m between epochs 2 and 9"):
        curve_jitter(history, "m", 2, 9, "r")
    with pytest.raises(ValueError, match="r: no 'x' in its history"):
        curve_jitter(history, "x", 1, 2, "r")


def test_cli_groups_seeds_and_writes_a_section(tmp_path: Path, capsys) -> None:
    runs = [_run(tmp_path, "a_s0", [0.1, 0.2, 0.1]), _run(tmp_path, "a_s1", [0.1, 0.1, 0.1]),
            _run(tmp_path, "b_s0", [0.3, 0.3, 0.4])]
    doc = tmp_path / "doc.md"
    doc.write_text("# doc\n")
    assert main([*runs, "--from-epoch", "1", "--to-epoch", "3", "--group-seeds",
                 "--markdown-section", "jit", "--write", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "| a (n=2) | 3 | 0.0500 | 0.0500 | 0.1500 |" in out  # means of (0.1, 0.1, 0.2) and (0, 0, 0.1)
    assert "| b (n=1) | 3 | 0.0500 | 0.1000 | 0.4000 |" in out
    assert "<!-- begin jit -->" in doc.read_text() and "| a (n=2) |" in doc.read_text()
    assert main([runs[0], "--from-epoch", "3", "--to-epoch", "3"]) == 2
    assert "fewer than 2 evaluations" in capsys.readouterr().err
