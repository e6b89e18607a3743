"""wandb tracking: offline by default, files written under the run directory, rank 0 only."""

from pathlib import Path

import pytest

from trainer.config import load_config
from trainer.tracking import Tracker


@pytest.mark.timeout(120)
def test_offline_wandb_run_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(None, ["--logging.wandb=true", f"--run.storage_path={tmp_path}", "--run.name=tracked"])
    assert cfg.logging.wandb_mode == "offline"
    tracker = Tracker(cfg, rank=0)
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker.log({"epoch": 1, "loss": 0.5, "valid/recall@20": 0.1, "note": "strings are skipped",
                 "codebook/coarse_counts": [3, 1]})
    tracker.finish({"best_test": {"recall@20": 0.2, "recall@10": 0.1, "ndcg@20": 0.05}, "best_epoch": 1,
                    "history": [{"epoch": 1, "loss": 0.5, "valid/recall@20": 0.1, "codebook/coarse_counts": [3, 1]}]})
    runs = list((tmp_path / "tracked" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    # the plots of trainer/plots.py as images, and the config
    images = {p.name.split("_")[0] for p in (runs[0] / "files" / "media" / "images" / "plots").glob("*.png")}
    assert images == {"curves", "metrics", "code"}, images
    records = next(runs[0].glob("*.wandb")).read_bytes()  # offline: the config is a record in the run file
    assert b'"learning_rate"' in records and b'"wandb_project"' in records


def test_other_ranks_and_disabled_do_nothing(tmp_path: Path) -> None:
    cfg = load_config(None, ["--logging.wandb=true", f"--run.storage_path={tmp_path}"])
    Tracker(cfg, rank=1).log({"epoch": 1, "loss": 0.1})
    Tracker(load_config(None, [f"--run.storage_path={tmp_path}"]), rank=0).log({"epoch": 1})
    assert not any(tmp_path.rglob("*.wandb"))
