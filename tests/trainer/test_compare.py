"""`python -m trainer.compare`: paired tests over users.

Tiny run directories are made in-process without Ray by test_explain's helper (trainer/loop.py's
steps, trainer/checkpoint.save); their metrics.json then gets the figures trainer/loop.py's
evaluator would record, computed from the trained (sharded) model's own final embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from data_loaders.format import Split
from data_loaders.graph import interaction_csr
from data_loaders.stream import open_dataset
from test_explain import _world_of_one  # tests/trainer is on sys.path (pytest's rootdir-less import)
from trainer import compare
from trainer.compare import CompareError, load_per_user, main, paired_bootstrap, paired_stats, paired_t
from trainer.evaluate import evaluate

REPO = Path(__file__).resolve().parents[2]


def _record(run_dir: str) -> None:
    """Add best_valid / best_test / best_test_valid_masked to metrics.json as trainer/loop.py's
    Evaluator computes them (from the trained model's embeddings saved in expected.pt)."""
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text())
    exp = torch.load(Path(run_dir) / "expected.pt")
    dataset = open_dataset(metrics["config"]["data"]["url"])
    splits = {s: interaction_csr(dataset, s) for s in (Split.TRAIN, Split.VALID, Split.TEST)}
    ks = tuple(metrics["config"]["eval"]["ks"])

    def ev(target: Split, mask_valid: bool = False) -> dict:
        exclude = [splits[Split.TRAIN]] + ([splits[Split.VALID]] if mask_valid else [])
        return evaluate(exp["user"], exp["item"], splits[target], exclude, ks=ks, reduce=False).metrics

    metrics.update(best_valid=ev(Split.VALID), best_test=ev(Split.TEST), best_test_valid_masked=ev(Split.TEST, True))
    path.write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def runs(tiny_synthetic, tmp_path_factory) -> dict[str, str]:
    """lightgcn seeds 0 and 1, bpr seed 0: one epoch each on the tiny simulator dataset."""
    root = tmp_path_factory.mktemp("cmp-runs")
    out = {}
    for name, model, seed in [("lgcn_s0", "lightgcn", 0), ("lgcn_s1", "lightgcn", 1), ("bpr_s0", "bpr", 0)]:
        run = _world_of_one([f"--data.url={tiny_synthetic}", f"--model.name={model}", "--model.embedding_dim=16",
                             f"--run.seed={seed}", f"--run.name={name}"], root / name, epochs=1)
        _record(run)
        out[name] = run
    return out


def _copy(run: str, dest: Path) -> str:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("per_user_*"))
    return str(dest)


# ---- per-user values and their consistency with metrics.json ---------------------------------------

@pytest.mark.parametrize(("split", "mask_valid", "key"), [("test", False, "best_test"), ("valid", False, "best_valid"),
                                                          ("test", True, "best_test_valid_masked")])
def test_per_user_mean_equals_the_recorded_metric(runs, split: str, mask_valid: bool, key: str) -> None:
    metrics = ("recall@10", "recall@20", "ndcg@20", "precision@20", "hit@50")
    pu = load_per_user(runs["lgcn_s0"], split, metrics, mask_valid=mask_valid)
    recorded = json.loads((Path(runs["lgcn_s0"]) / "metrics.json").read_text())[key]
    assert len(pu.users) == recorded["num_users"] > 0 and np.all(np.diff(pu.users) > 0)
    for m in metrics:
        assert pu.values[m].shape == pu.users.shape
        assert abs(pu.values[m].mean() - recorded[m]) <= 1e-6, m
    check = compare.consistency(pu)
    assert check["ok"] and check["max_abs_diff"] <= 1e-6 and set(check["metrics"]) == set(metrics)
    assert recorded["recall@20"] > 0  # a model that ranks something: the check is not 0 == 0


def test_valid_items_are_not_masked_for_the_primary_test_figure(runs) -> None:
    """The tiny dataset has users with both valid and test items: the two test variants differ."""
    plain = load_per_user(runs["lgcn_s0"], "test", ("recall@50",))
    masked = load_per_user(runs["lgcn_s0"], "test", ("recall@50",), mask_valid=True)
    assert np.array_equal(plain.users, masked.users)
    assert not np.array_equal(plain.values["recall@50"], masked.values["recall@50"])
    assert Path(runs["lgcn_s0"], "per_user_test.npz").exists()
    assert Path(runs["lgcn_s0"], "per_user_test_valid_masked.npz").exists()


# ---- statistics ---------------------------------------------------------------------------------------

def test_paired_t_matches_scipy_on_known_vectors() -> None:
    rng = np.random.default_rng(7)
    a1, a2 = rng.random(500), rng.random(500)
    b = rng.random(500) * 0.9
    out = paired_stats([a1, a2], [b], resamples=2000, seed=3)
    a = (a1 + a2) / 2  # each user's value averaged over A's seeds
    ref = stats.ttest_rel(a, b)
    assert out["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert out["p_t_two_sided"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert out["p_t_greater"] == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-9)
    assert out["diff"] == pytest.approx(float((a - b).mean()))
    assert out["mean_a"] == pytest.approx(a.mean()) and out["mean_b"] == pytest.approx(b.mean())
    assert out["seed_means_a"] == pytest.approx([a1.mean(), a2.mean()])
    assert out["seed_mean_a"] == pytest.approx(a.mean())
    assert out["seed_std_a"] == pytest.approx(np.std([a1.mean(), a2.mean()], ddof=1))
    assert np.isnan(out["seed_std_b"])  # one seed: no spread
    # Hand-made example with a known answer: d = (1, 2, 3, 4) -> t = 2.5 / (sd / 2) with sd = 1.29.
    t, p, p1 = paired_t(np.array([1.0, 2, 3, 4]), np.zeros(4))
    assert t == pytest.approx(2.5 / (np.std([1, 2, 3, 4], ddof=1) / 2))
    assert p == pytest.approx(2 * stats.t.sf(t, 3)) and p1 == pytest.approx(stats.t.sf(t, 3))


def test_bootstrap_ci_contains_the_true_difference() -> None:
    """Users whose A and B hits are Bernoulli(0.30) / Bernoulli(0.25), correlated: true difference 0.05."""
    rng = np.random.default_rng(2024)
    n = 4000
    u = rng.random(n)
    a = (u < 0.30).astype(float)
    b = (u < 0.25).astype(float)
    flip = rng.random(n) < 0.2  # some independent noise on B, same marginal 0.25
    b[flip] = (rng.random(flip.sum()) < 0.25).astype(float)
    (low, high), p_two, p_greater = paired_bootstrap(a - b, resamples=10_000, seed=0)
    assert low < 0.05 < high
    se = (a - b).std(ddof=1) / np.sqrt(n)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)  # ~ normal approximation
    assert p_two < 1e-3 and p_greater < 1e-3
    assert paired_bootstrap(a - b, resamples=10_000, seed=0) == ((low, high), p_two, p_greater)  # seeded
    # No difference at all: both p-values are 1 and the CI is a point.
    assert paired_bootstrap(np.zeros(50), resamples=100, seed=0) == ((0.0, 0.0), 1.0, 1.0)


def test_degenerate_differences_are_handled_without_nan() -> None:
    x = np.arange(30.0)
    assert paired_t(x, x) == (0.0, 1.0, 0.5)
    t, p, p1 = paired_t(x + 1, x)  # a constant difference: t = +inf
    assert t == np.inf and p == 0.0 and p1 == 0.0


# ---- the CLI on real (tiny) runs ---------------------------------------------------------------------

def test_run_against_itself_has_no_difference(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "self.json"
    assert main(["--a", runs["lgcn_s0"], "--b", runs["lgcn_s0"], "--metric", "recall@20", "ndcg@20",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for c in result["comparisons"]:
        assert c["diff"] == 0.0 and c["mean_a"] == c["mean_b"]
        assert c["p_t_two_sided"] == 1.0 and c["p_boot_two_sided"] == 1.0 and c["ci95"] == [0.0, 0.0]
        assert c["t"] == 0.0 and c["seed_std_a"] is None  # one seed: null in JSON, not NaN
    assert "| recall@20 | lgcn | lgcn | 0." in capsys.readouterr().out


def test_seeds_are_averaged_per_user_and_every_b_group_compared(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp.json"
    section = tmp_path / "doc.md"
    section.write_text("# Doc\n\n<!-- begin paired -->\nold\n<!-- end paired -->\n\ntail\n")
    assert main(["--a", runs["lgcn_s0"], runs["lgcn_s1"], "--b", runs["bpr_s0"], "--b", runs["lgcn_s1"],
                 "--metric", "recall@20", "ndcg@20", "--resamples", "500", "--json", str(out),
                 "--markdown-section", "paired", "--write", str(section)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [(c["b"], c["metric"]) for c in result["comparisons"]] == [  # labels: names without _s<seed>
        ("bpr", "recall@20"), ("bpr", "ndcg@20"), ("lgcn", "recall@20"), ("lgcn", "ndcg@20")]
    assert result["a"]["label"] == "lgcn" and all(r["check"]["ok"] for r in result["a"]["runs"])
    per = {n: load_per_user(runs[n], "test", ("recall@20",)) for n in ("lgcn_s0", "lgcn_s1", "bpr_s0")}
    a = (per["lgcn_s0"].values["recall@20"] + per["lgcn_s1"].values["recall@20"]) / 2
    b = per["bpr_s0"].values["recall@20"]
    c = result["comparisons"][0]
    assert c["mean_a"] == pytest.approx(a.mean()) and c["diff"] == pytest.approx((a - b).mean())
    assert c["p_t_two_sided"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert c["seed_means_a"] == pytest.approx([per["lgcn_s0"].values["recall@20"].mean(),
                                               per["lgcn_s1"].values["recall@20"].mean()])
    recorded = [json.loads(Path(runs[n], "metrics.json").read_text())["best_test"]["recall@20"]
                for n in ("lgcn_s0", "lgcn_s1")]
    assert c["seed_means_a"] == pytest.approx(recorded, abs=1e-6)
    assert c["ci95"][0] <= c["diff"] <= c["ci95"][1]
    assert "Consistency: every run's per-user mean reproduces its metrics.json `best_test`" in printed
    doc = section.read_text()
    assert "old" not in doc and "| recall@20 | lgcn | bpr |" in doc and doc.endswith("tail\n")


def test_runs_on_different_users_are_refused(runs, tiny_synthetic, tmp_path: Path, capsys) -> None:
    assert main(["--a", runs["lgcn_s0"], "--b", runs["lgcn_s0"], "--split", "valid", "--mask-valid"]) == 2
    assert "--mask-valid applies to the test split only" in capsys.readouterr().err
    pu = load_per_user(runs["lgcn_s0"], "test", ("recall@20",))
    other = compare.PerUser(**{**pu.__dict__, "users": pu.users[:-1], "run_dir": "x"})
    with pytest.raises(CompareError, match="different users"):
        compare.compare([pu], [[other]], ["recall@20"])
    assert main(["--a", runs["lgcn_s0"], "--b", runs["bpr_s0"], "--metric", "recall20"]) == 2
    assert "expected <family>@<K>" in capsys.readouterr().err


# ---- the cache ---------------------------------------------------------------------------------------

def test_cache_is_reused_and_invalidated_when_the_checkpoint_changes(runs, tmp_path: Path, monkeypatch) -> None:
    run = _copy(runs["lgcn_s0"], tmp_path / "lgcn_s0")
    first = load_per_user(run, "test", ("recall@20",))
    cache = Path(run, "per_user_test.npz")
    assert not first.cached and cache.exists()
    assert not [p for p in Path(run).iterdir() if ".tmp-" in p.name]  # written under a temp name, renamed

    def no_restore(*args, **kwargs):
        raise AssertionError("restore_run called although the cache is current")

    real_restore = compare.restore_run
    monkeypatch.setattr(compare, "restore_run", no_restore)
    again = load_per_user(run, "test", ("recall@20", "ndcg@10"))  # every K of eval.ks was cached
    assert again.cached and np.array_equal(again.values["recall@20"], first.values["recall@20"])
    assert again.checkpoint == first.checkpoint

    # The best checkpoint moves (e.g. the run was resumed and improved): the cache is stale.
    shutil.copytree(Path(run, "checkpoint_000001"), Path(run, "checkpoint_000002"))
    metrics = json.loads(Path(run, "metrics.json").read_text())
    metrics["best_checkpoint"] = "/elsewhere/checkpoint_000002"
    Path(run, "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(AssertionError, match="restore_run called"):
        load_per_user(run, "test", ("recall@20",))
    monkeypatch.setattr(compare, "restore_run", real_restore)
    moved = load_per_user(run, "test", ("recall@20",))
    assert not moved.cached and moved.checkpoint.endswith("checkpoint_000002")
    assert np.array_equal(moved.values["recall@20"], first.values["recall@20"])  # same weights copied
    assert load_per_user(run, "test", ("recall@20",)).cached
    # Same path, rewritten checkpoint (its train_state.json changed): stale too.
    state = Path(run, "checkpoint_000002", "train_state.json")
    state.write_text(state.read_text() + "\n")
    assert not load_per_user(run, "test", ("recall@20",)).cached
    # A metric outside the cached Ks is computed (and the cache rewritten with it).
    assert not load_per_user(run, "test", ("recall@7",)).cached
    assert load_per_user(run, "test", ("recall@7", "recall@20")).cached
    assert not load_per_user(run, "test", ("recall@20",), use_cache=False).cached


def test_a_cache_that_disagrees_with_metrics_json_fails_the_check(runs, tmp_path: Path, capsys) -> None:
    run = _copy(runs["lgcn_s0"], tmp_path / "lgcn_s0")
    load_per_user(run, "test", ("recall@20",))
    cache = Path(run, "per_user_test.npz")
    with np.load(cache) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["values"] = np.zeros_like(arrays["values"])  # as if computed from other weights
    np.savez(cache, **arrays)
    assert main(["--a", run, "--b", runs["bpr_s0"]]) == 2
    err = capsys.readouterr().err
    assert "MISMATCH" in err and "consistency check failed" in err and "--allow-mismatch" in err
    assert main(["--a", run, "--b", runs["bpr_s0"], "--allow-mismatch"]) == 0
    assert "**Consistency check FAILED** for lgcn_s0" in capsys.readouterr().out
    assert main(["--a", run, "--b", runs["bpr_s0"], "--no-cache"]) == 0  # recomputed: consistent again
    capsys.readouterr()
    metrics = json.loads(Path(run, "metrics.json").read_text())
    del metrics["best_test"]  # nothing to check against: refused too
    Path(run, "metrics.json").write_text(json.dumps(metrics))
    assert main(["--a", run, "--b", runs["bpr_s0"]]) == 2
    assert "metrics.json records none of ['recall@20'] for this split" in capsys.readouterr().err


def test_run_reached_through_a_symlink_shares_the_cache(runs, tmp_path: Path) -> None:
    run = _copy(runs["lgcn_s0"], tmp_path / "lgcn_s0")
    os.symlink("lgcn_s0", tmp_path / "full_s0")
    assert not load_per_user(run, "test", ("recall@20",)).cached
    assert load_per_user(str(tmp_path / "full_s0"), "test", ("recall@20",)).cached
