"""`python -m trainer.seed_pairs`: two settings matched by seed, and the seeds a margin needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.seed_pairs import main, pair, seeds_needed


def _run(root: Path, name: str, seed: int, valid: float, test: float = 0.1) -> str:
    run = root / f"{name}_s{seed}"
    run.mkdir(parents=True)
    metrics = {"config": {"run": {"seed": seed}}, "best_valid": {"recall@20": valid}, "best_test": {"recall@20": test}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return str(run)


def test_pairs_are_matched_by_seed_not_by_argument_order(tmp_path: Path) -> None:
    a = [_run(tmp_path, "x", s, v) for s, v in [(2, 0.30), (1, 0.20)]]
    b = [_run(tmp_path, "y", s, v) for s, v in [(1, 0.25), (2, 0.10)]]
    p = pair(a, b, "valid", "recall@20")
    assert p.seeds == [1, 2] and (p.name_a, p.name_b) == ("x", "y")
    assert p.diffs.tolist() == pytest.approx([-0.05, 0.20])


def test_seeds_needed_is_the_normal_approximation() -> None:
    # ((1.6449 + 0.8416) * 0.003 / 0.002)^2 = 13.9 -> 14; twice the sd, four times the seeds
    assert seeds_needed(0.003, 0.002) == 14
    assert seeds_needed(0.006, 0.002) == 56
    assert seeds_needed(0.0, 0.002) == 0


def test_report_reads_the_chosen_split_and_writes_a_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = [_run(tmp_path, "x", s, v, test=0.5) for s, v in [(0, 0.1150), (1, 0.1260), (2, 0.1220)]]
    b = [_run(tmp_path, "y", s, v, test=0.4) for s, v in [(0, 0.1160), (1, 0.1250), (2, 0.1200)]]
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- begin pairs -->\nold\n<!-- end pairs -->\nafter\n")
    assert main(["--a", *a, "--b", *b, "--markdown-section", "pairs", "--write", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 0.1220 | 0.1200 | +0.0020 |" in out and "| 0 | 0.1150 | 0.1160 | -0.0010 |" in out
    assert "mean A - B **+0.0007**" in out and "higher on 2 of 3" in out
    assert "old" not in doc.read_text() and doc.read_text().startswith("before\n") and "+0.0020" in doc.read_text()
    assert main(["--a", *a, "--b", *b, "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "| 0 | 0.5000 | 0.4000 | +0.1000 |" in out
    assert "p = n/a (the same difference on every seed)" in out and "about **2 seeds**" in out


def test_bad_input_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = [_run(tmp_path, "x", s, 0.1) for s in (0, 1)]
    b = [_run(tmp_path, "y", s, 0.1) for s in (0, 2)]
    assert main(["--a", *a, "--b", *b]) == 2
    assert "only in A [1], only in B [2]" in capsys.readouterr().err
    twice = _run(tmp_path / "again", "x", 0, 0.1)
    assert main(["--a", a[0], twice, "--b", *b]) == 2
    assert "seed 0 appears twice on one side" in capsys.readouterr().err
    assert main(["--a", *a, "--b", *a, "--metric", "ndcg@20"]) == 2
    assert "no best_valid.ndcg@20" in capsys.readouterr().err
    assert main(["--a", a[0], "--b", a[0]]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--a", *a, "--b", *a, "--margin", "0"])
    bare = tmp_path / "bare_s0"
    bare.mkdir()
    (bare / "metrics.json").write_text(json.dumps({"best_valid": {"recall@20": 0.1}}))
    assert main(["--a", str(bare), a[1], "--b", *a]) == 2
    assert "bare_s0/metrics.json: no config.run.seed" in capsys.readouterr().err
