"""End to end through Ray Train: 1 and 2 workers, results written, resume from a checkpoint.

Kept to five fits (each ~10-20 s on 2 cores). Tolerance of the 1- vs 2-worker comparison:
both runs see the same global batches in the same order (data_loaders/sampler.py), start from
the same seeded tables, and the 2-worker gradient of each table row is scaled to equal the
1-worker one; what differs is the order of floating-point sums (all-to-all, all-reduce), which
drifts by ~1e-6 per step. Over a few epochs that cannot move Recall@20 by more than a couple of
users' hits, so 0.02 absolute (about 8 of ~400 users) is a generous but meaningful bound: a
wrong gradient scale (x2) or a sampler that gives ranks overlapping data changes it far more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_loaders.format import Split
from data_loaders.graph import interaction_csr
from data_loaders.stream import open_dataset
from trainer.config import load_config
from trainer.main import fit
from trainer.results import write_results

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]


def _cfg(data: str, runs: Path, name: str, **overrides):
    args = [f"--data.url={data}", f"--run.storage_path={runs}", f"--run.name={name}", "--train.epochs=4",
            "--train.batch_size=256", "--train.learning_rate=0.01", "--train.eval_every=1", "--train.patience=10",
            "--logging.progress=false", "--model.num_layers=2"]
    args += [f"--{k}={v}" for k, v in overrides.items()]
    return load_config(None, args)


def test_one_and_two_workers_agree_and_write_results(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    cfg1 = _cfg(tiny_synthetic, tmp_path, "w1")
    one = fit(cfg1)
    table = write_results(one, cfg1)
    two = fit(_cfg(tiny_synthetic, tmp_path, "w2", **{"scaling.num_workers": 2, "scaling.cpus_per_worker": 0.5}))
    assert "table_wise" in two["plan"]
    r1, r2 = one["best_valid"]["recall@20"], two["best_valid"]["recall@20"]
    assert r1 > 0.05, "LightGCN should learn something in 4 epochs"
    assert abs(r1 - r2) <= 0.02, (r1, r2)
    assert abs(one["history"][0]["loss"] - two["history"][0]["loss"]) < 1e-3
    metrics = json.loads((tmp_path / "w1" / "metrics.json").read_text())
    assert metrics["best_test"]["recall@20"] == one["best_test"]["recall@20"]
    assert "| recall |" in table and (tmp_path / "w1" / "results.md").read_text() == table
    # The simulator's unbiased_test split is evaluated with test, over every user who has items in it.
    users = int((interaction_csr(open_dataset(tiny_synthetic), Split.UNBIASED_TEST).degrees() > 0).sum())
    unbiased = metrics["best_unbiased_test"]
    assert unbiased["recall@20"] == one["best_unbiased_test"]["recall@20"] > 0 and unbiased["num_users"] == users > 350
    assert abs(unbiased["recall@20"] - two["best_unbiased_test"]["recall@20"]) <= 0.02
    assert f"## Unbiased test ({users} users" in table
    # unbiased_valid is evaluated and logged at every evaluation, but the default selects on valid.
    assert all("unbiased_valid/recall@20" in h for h in one["history"])
    assert one["best_score"] == one["best_valid"]["recall@20"]
    assert one["best_unbiased_valid"] == next(
        {k.split("/", 1)[1]: v for k, v in h.items() if k.startswith("unbiased_valid/")}
        for h in one["history"] if h["epoch"] == one["best_epoch"])
    assert "## Unbiased valid (" in table


def test_selection_on_unbiased_valid(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    """eval.select_split: unbiased_valid picks the epoch by the uniform-exposure validation split."""
    cfg = _cfg(tiny_synthetic, tmp_path, "uv", **{"eval.select_split": "unbiased_valid", "train.epochs": 5})
    out = fit(cfg)
    table = write_results(out, cfg)
    assert "Best unbiased_valid recall@20" in table
    scores = [h["unbiased_valid/recall@20"] for h in out["history"]]
    assert [h["valid_score"] for h in out["history"]] == scores
    assert out["best_epoch"] == 1 + scores.index(max(scores))  # the first epoch of a tie
    assert out["best_score"] == max(scores) == out["best_unbiased_valid"]["recall@20"] > 0
    best = out["history"][out["best_epoch"] - 1]
    assert out["best_valid"]["recall@20"] == best["valid/recall@20"]  # the other splits at that epoch
    metrics = json.loads((tmp_path / "uv" / "metrics.json").read_text())
    assert metrics["best_unbiased_valid"]["recall@20"] == out["best_score"]


def test_restart_continues_from_checkpoint(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    straight = fit(_cfg(tiny_synthetic, tmp_path, "straight"))
    first = fit(_cfg(tiny_synthetic, tmp_path, "resumed", **{"train.epochs": 2}))
    assert first["epoch"] == 2
    second = fit(_cfg(tiny_synthetic, tmp_path, "resumed"))  # same name: resumes at epoch 3
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3, 4]
    assert second["history"][:2] == first["history"]  # epochs 1-2 came from the checkpoint, not re-run
    # Same batches, negatives (sampler RNG restored) and optimizer state: the same trajectory.
    for a, b in zip(straight["history"], second["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert straight["best_valid"]["recall@20"] == pytest.approx(second["best_valid"]["recall@20"], abs=1e-9)


@pytest.mark.parametrize("graph_mode", ["full", "sampled"])
def test_causal_model_trains_end_to_end(ray_session, tiny_synthetic, tmp_path: Path, graph_mode: str) -> None:
    """The causal model through the same trainer: dense modules, codebook, subgraph refresh; the
    sampled mode with each rank's own neighbourhoods, profiles and codebook statistics."""
    cfg = _cfg(tiny_synthetic, tmp_path, f"causal-{graph_mode}", **{
        "model.name": "causal", "train.epochs": 3, "model.causal.backdoor.coarse_codes": 4,
        "model.causal.backdoor.fine_codes": 8, "model.causal.frontdoor.warmup_epochs": 1,
        "model.causal.frontdoor.refresh_every": 1, "model.causal.exposure.mode": "degree",
        "model.causal.backbone.graph_mode": graph_mode, "scaling.num_workers": 2, "scaling.cpus_per_worker": 0.5,
        # The full-graph run also carries the user/item views (a second IdTables, sharded with the
        # others) and candidate pools of negatives (train.negative_candidates) through both ranks.
        "model.causal.views.enabled": graph_mode == "full",
        "train.negative_candidates": 4 if graph_mode == "full" else 1})
    out = fit(cfg)
    assert out["epoch"] == 3 and out["best_valid"]["recall@20"] > 0
    kept = [h["frontdoor/kept_fraction"] for h in out["history"] if "frontdoor/kept_fraction" in h]
    assert len(kept) == 2 and all(0 < k < 1 for k in kept)  # refreshed at epochs 2 and 3, after warm-up
    assert all(h["loss"] == h["loss"] for h in out["history"])  # no NaN
    # The codebook is a TorchRec table (backdoor.store: table) planned and sharded with the ID tables.
    assert "backdoor.codebook.ebc.codes_coarse: table_wise" in out["plan"], out["plan"]
    assert ("views.tables.ebc.user: table_wise" in out["plan"]) == (graph_mode == "full"), out["plan"]


def test_early_stop_waits_for_min_epochs(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    # Learning rate ~0: valid never improves after the first evaluation, so patience 1 stops at
    # epoch 2, unless min_epochs holds the run to 3.
    frozen = {"train.learning_rate": 1e-12, "train.patience": 1, "train.epochs": 5}
    assert fit(_cfg(tiny_synthetic, tmp_path, "stop", **frozen))["epoch"] == 2
    assert fit(_cfg(tiny_synthetic, tmp_path, "held", **frozen, **{"train.min_epochs": 3}))["epoch"] == 3
