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


def test_with_a_second_key_correlates_the_changes_of_the_two_curves() -> None:
    valid = [0.1, 0.3, 0.2, 0.5, 0.4]
    history = [{"epoch": e + 1, "v": v, "t": 2 * v + 1, "u": -v} for e, v in enumerate(valid)]
    history.append({"epoch": 9, "v": 0.0, "t": 5.0, "u": 5.0})  # outside the window: not read
    assert curve_jitter(history, "v", 1, 5, "r", paired="t").change_corr == pytest.approx(1.0)
    assert curve_jitter(history, "v", 1, 5, "r", paired="u").change_corr == pytest.approx(-1.0)
    unrelated = [{"epoch": e + 1, "v": v, "t": t} for e, (v, t) in enumerate(zip(valid, [0.0, 1.0, 0.0, 0.0, 1.0]))]
    # changes of v: +.2 -.1 +.3 -.1; of t: +1 -1 0 +1
    d_v, d_t = [0.2, -0.1, 0.3, -0.1], [1.0, -1.0, 0.0, 1.0]
    mv, mt = sum(d_v) / 4, sum(d_t) / 4
    cov = sum((a - mv) * (b - mt) for a, b in zip(d_v, d_t))
    expected = cov / (sum((a - mv) ** 2 for a in d_v) * sum((b - mt) ** 2 for b in d_t)) ** 0.5
    assert curve_jitter(unrelated, "v", 1, 5, "r", paired="t").change_corr == pytest.approx(expected)
    assert curve_jitter(history, "v", 1, 5, "r").change_corr is None


def test_with_a_key_missing_at_an_evaluation_names_the_epoch() -> None:
    history = [{"epoch": 1, "v": 0.1, "t": 0.1}, {"epoch": 2, "v": 0.2}, {"epoch": 3, "v": 0.1, "t": 0.3}]
    with pytest.raises(ValueError, match=r"r: no 't' at epoch 2, where v is logged.*eval.test_curve"):
        curve_jitter(history, "v", 1, 3, "r", paired="t")
    flat = [{"epoch": e, "v": 0.1 * e, "t": 0.5} for e in (1, 2, 3)]
    with pytest.raises(ValueError, match="too few or constant changes"):
        curve_jitter(flat, "v", 1, 3, "r", paired="t")


def test_cli_with_prints_the_correlation_column_and_its_seed_mean(tmp_path: Path, capsys) -> None:
    def run(name: str, valid: list[float], test: list[float]) -> str:
        (tmp_path / name).mkdir()
        history = [{"epoch": e + 1, "valid/recall@20": v, "test_curve/recall@20": t}
                   for e, (v, t) in enumerate(zip(valid, test))]
        (tmp_path / name / "metrics.json").write_text(json.dumps({"history": history}))
        return str(tmp_path / name)

    runs = [run("a_s0", [0.1, 0.2, 0.1, 0.3], [0.1, 0.2, 0.1, 0.3]), run("a_s1", [0.1, 0.2, 0.1, 0.3], [0.3, 0.2, 0.3, 0.1])]
    assert main([*runs, "--from-epoch", "1", "--to-epoch", "4", "--with", "test_curve/recall@20", "--group-seeds"]) == 0
    out = capsys.readouterr().out
    assert "| run | evaluations | mean abs change | largest change | best | corr of changes with test_curve/recall@20 |" in out
    assert "| a (n=2) | 4 | 0.1333 | 0.2000 | 0.3000 | 0.00 |" in out  # mean of +1 and -1
