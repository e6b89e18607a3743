"""trainer/picked_epoch.py: a run's test figure at the best-valid epoch (V) and at the best-test epoch (T)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.picked_epoch import group, main, picked_figures, render


def _run(tests: list[float], valid: list[float], ndcg: list[float] | None = None) -> dict:
    """metrics.json of a run evaluated at epochs 1..n with these test/valid Recall@20 values."""
    ndcg = ndcg or [t / 2 for t in tests]
    best = max(range(len(valid)), key=lambda i: (valid[i], -i))
    return {"best_epoch": best + 1, "best_test": {"recall@20": tests[best], "ndcg@20": ndcg[best]},
            "history": [{"epoch": i + 1, "valid/recall@20": v, "test_curve/recall@20": t, "test_curve/ndcg@20": n}
                        for i, (t, v, n) in enumerate(zip(tests, valid, ndcg))]}


def test_v_is_at_the_best_valid_epoch_and_t_at_the_best_test_epoch() -> None:
    p = picked_figures(_run(tests=[0.10, 0.13, 0.11, 0.12], valid=[0.1, 0.11, 0.14, 0.12], ndcg=[1, 2, 3, 4]),
                    "recall@20", "ndcg@20", "r")
    assert (p.v_epoch, p.v, p.v_also) == (3, 0.11, 3)
    assert (p.t_epoch, p.t, p.t_also) == (2, 0.13, 2)


def test_a_tie_on_test_takes_the_earlier_epoch() -> None:
    p = picked_figures(_run(tests=[0.1, 0.12, 0.12], valid=[0.3, 0.1, 0.1]), "recall@20", "ndcg@20", "r")
    assert p.t_epoch == 2


def test_a_run_without_a_test_curve_is_refused_with_the_flag_to_use() -> None:
    run = _run(tests=[0.1], valid=[0.1])
    for h in run["history"]:
        del h["test_curve/recall@20"]
    with pytest.raises(ValueError, match=r"r: no 'test_curve/recall@20'.*--eval.test_curve=true"):
        picked_figures(run, "recall@20", "ndcg@20", "r")
    with pytest.raises(ValueError, match=r"r: no 'test_curve/hit@20'"):
        picked_figures(_run(tests=[0.1], valid=[0.1]), "recall@20", "hit@20", "r")


def test_a_curve_that_disagrees_with_the_reported_figure_is_refused() -> None:
    run = _run(tests=[0.1, 0.2], valid=[0.2, 0.1])
    run["best_test"]["recall@20"] = 0.15
    with pytest.raises(ValueError, match=r"at its best epoch 1 is 0.1 but best_test.recall@20 is 0.15"):
        picked_figures(run, "recall@20", "ndcg@20", "r")
    run["best_epoch"] = 7
    with pytest.raises(ValueError, match="best epoch 7 has no logged test curve point"):
        picked_figures(run, "recall@20", "ndcg@20", "r")


def test_seed_groups_average_and_give_the_spread_of_v_and_t() -> None:
    runs = [picked_figures(_run(tests=[0.10, 0.14], valid=[0.2, 0.1]), "recall@20", "ndcg@20", "a_s0"),
            picked_figures(_run(tests=[0.12, 0.12], valid=[0.2, 0.1]), "recall@20", "ndcg@20", "a_s1"),
            picked_figures(_run(tests=[0.2], valid=[0.2]), "recall@20", "ndcg@20", "b_s0")]
    a, b = group(runs)
    assert a.name == "a (n=2)" and a.n == 2 and b.name == "b (n=1)"
    assert a.v == pytest.approx(0.11) and a.t == pytest.approx(0.13) and a.t_epoch == pytest.approx(1.5)
    assert a.v_std == pytest.approx(0.0141421, abs=1e-6) and a.t_std == pytest.approx(0.0141421, abs=1e-6)
    text = render([a, b], "recall@20", "ndcg@20")
    assert "| a (n=2) | 1 | 0.1100 ± 0.0141 | 0.0550 | 1.5 | 0.1300 ± 0.0141 | 0.0650 | +0.0200 |" in text
    assert "| b (n=1) | 1 | 0.2000 | 0.1000 | 1 | 0.2000 | 0.1000 | +0.0000 |" in text


def test_cli_prints_writes_a_section_and_names_a_bad_run(tmp_path: Path, capsys) -> None:
    good, bare = tmp_path / "x_s0", tmp_path / "y_s0"
    good.mkdir(), bare.mkdir()
    (good / "metrics.json").write_text(json.dumps(_run(tests=[0.1, 0.2], valid=[0.2, 0.1])))
    (bare / "metrics.json").write_text(json.dumps({"best_epoch": 1, "history": [{"epoch": 1}]}))
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- begin tp -->\nold\n<!-- end tp -->\nb\n")
    assert main([str(good), "--markdown-section", "tp", "--write", str(doc)]) == 0
    assert "| x_s0 | 1 | 0.1000 | 0.0500 | 2 | 0.2000 | 0.1000 | +0.1000 |" in capsys.readouterr().out
    assert "x_s0" in doc.read_text() and "old" not in doc.read_text() and doc.read_text().endswith("b\n")
    assert main([str(good), str(bare)]) == 2
    assert "y_s0: no 'test_curve/recall@20'" in capsys.readouterr().err
