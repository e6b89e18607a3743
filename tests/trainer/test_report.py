"""`python -m trainer.report`: one row per run from metrics.json, clear error for a non-run."""

import json
from pathlib import Path

import pytest

from trainer.config import Config
from trainer.report import comparison_table, main


def _run(tmp_path: Path, name: str, r20: float) -> str:
    run = tmp_path / name
    run.mkdir()
    metrics = {k: r20 for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")} | {"num_users": 7}
    (run / "metrics.json").write_text(json.dumps({
        "config": Config().to_dict(), "best_epoch": 3, "epoch": 9, "best_test": metrics,
        "best_test_valid_masked": metrics, "best_valid": metrics}))
    return str(run)


def test_one_row_per_run(tmp_path: Path) -> None:
    table = comparison_table([_run(tmp_path, "a", 0.125), _run(tmp_path, "b", 0.25)])
    rows = table.splitlines()
    assert len(rows) == 4 and rows[2].startswith("| a | lightgcn |") and "0.2500" in rows[3]
    assert "3 / 9" in rows[2]


def test_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="metrics.json not found"):
        main([str(tmp_path / "nope")])
