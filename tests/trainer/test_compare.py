"""`python -m trainer.compare` (paired tests over users), `trainer.report --group-seeds`, and the
experiments/ scripts (syntax, skip logic and job pool, with a fake trainer: nothing is trained).

Tiny run directories are made in-process without Ray by test_explain's helper (trainer/loop.py's
steps, trainer/checkpoint.save); their metrics.json then gets the figures trainer/loop.py's
evaluator would record, computed from the trained (sharded) model's own final embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
from trainer.config import Config
from trainer.evaluate import evaluate
from trainer.report import grouped_table, seed_group
from trainer.report import main as report_main

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (REPO / "experiments").glob("*.sh"))


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


# ---- trainer.report --group-seeds --------------------------------------------------------------------

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
    assert report_main(["--group-seeds", *runs, "--published", str(REPO / "docs/published.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "| x | lightgcn | tiktok | 0, 1, 2 |" in printed and "| *published* | MMSSL (WWW'23) | tiktok |" in printed
    widths = {line.count("|") for line in printed.splitlines() if line.startswith("| ")}
    assert len(widths) == 1  # published rows have the runs' columns
    mixed = _fake_run(tmp_path, "x_s3", 3, 0.4, model="bpr")
    with pytest.raises(SystemExit, match="seed group x mixes models"):
        grouped_table([*runs, mixed])


# ---- experiments/*.sh --------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_script_syntax(script: str) -> None:
    path = REPO / "experiments" / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    if script != "lib.sh":
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text


FAKE_TRAINER = """#!/usr/bin/env bash
# Stands in for the Python: `trainer/main.py --config C --run.name=N --run.storage_path=R ...`
for a in "$@"; do case $a in --run.name=*) n=${a#*=};; --run.storage_path=*) r=${a#*=};; esac; done
echo "$*" >> "$r/calls.txt"
[[ $n == *vbpr_s1 ]] && { echo boom; exit 3; }
mkdir -p "$r/$n" && echo '{}' > "$r/$n/metrics.json"
"""


def _script(name: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_TRAINER)
    fake.chmod(0o755)
    full = {**os.environ, "PY": str(fake), "RUNS": str(tmp_path / "runs"), "LOGS": str(tmp_path / "logs"), **env}
    return subprocess.run(["bash", str(REPO / "experiments" / name)], env=full, capture_output=True, text=True,
                          timeout=60)


def test_seeds_script_skips_finished_runs_and_reports_failures(tmp_path: Path) -> None:
    (tmp_path / "runs" / "tiktok_lightgcn_s0").mkdir(parents=True)
    (tmp_path / "runs" / "tiktok_lightgcn_s0" / "metrics.json").write_text("{}")
    done = _script("tiktok_seeds.sh", tmp_path, JOBS="2")
    assert done.returncode == 1 and "failed runs: tiktok_vbpr_s1" in done.stderr
    calls = (tmp_path / "runs" / "calls.txt").read_text().splitlines()
    assert len(calls) == 11 and not any("tiktok_lightgcn_s0" in c for c in calls)
    assert ("trainer/main.py --config configs/tiktok_causal.yaml --run.name=tiktok_causal_s2 "
            f"--run.storage_path={tmp_path / 'runs'} --run.seed=2") in calls
    assert "boom" in (tmp_path / "logs" / "tiktok_vbpr_s1.log").read_text()
    again = _script("tiktok_seeds.sh", tmp_path)  # only the failed run is started again (and fails again)
    assert (tmp_path / "runs" / "calls.txt").read_text().splitlines()[11:] == [c for c in calls if "vbpr_s1" in c]
    assert again.returncode == 1


def test_ablation_script_variants_and_reuse_of_the_full_run(tmp_path: Path) -> None:
    (tmp_path / "runs" / "tiktok_causal_s0").mkdir(parents=True)
    (tmp_path / "runs" / "tiktok_causal_s0" / "metrics.json").write_text("{}")
    dry = _script("tiktok_ablation.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert "link  tiktok_causal_full_s0 -> tiktok_causal_s0" in lines[0]
    commands = [line for line in lines if "trainer/main.py" in line]
    assert len(commands) == 17  # 6 variants x 3 seeds, full s0 linked
    assert any(c.endswith("--run.name=tiktok_causal_no_topology_s2 " f"--run.storage_path={tmp_path / 'runs'} "
                          "--run.seed=2 --model.causal.frontdoor.topology_reconstruction=false") for c in commands)
    assert any(c.endswith("--run.seed=1") and "tiktok_causal_full_s1" in c for c in commands)
    assert not (tmp_path / "runs" / "tiktok_causal_full_s0").exists()  # dry run: nothing done
    real = _script("tiktok_ablation.sh", tmp_path, SEEDS="0", VARIANTS="full flat_codebook")
    assert real.returncode == 0, real.stderr
    assert os.readlink(tmp_path / "runs" / "tiktok_causal_full_s0") == "tiktok_causal_s0"
    assert (tmp_path / "runs" / "tiktok_causal_flat_codebook_s0" / "metrics.json").exists()
    bad = _script("tiktok_ablation.sh", tmp_path, VARIANTS="no_such")
    assert bad.returncode != 0 and "unknown variant 'no_such'" in bad.stderr


def test_tables_script_commands(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    names = [f"tiktok_{m}_s{s}" for m in ("lightgcn", "vbpr", "freedom", "causal") for s in range(3)]
    for name in names:
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text("{}")
    dry = _script("tiktok_tables.sh", tmp_path, DRY_RUN="1", DOC=str(tmp_path / "R.md"))
    assert dry.returncode == 1 and "skip section tiktok-ablation" in dry.stderr  # no ablation runs yet
    out = dry.stdout
    assert "-m trainer.report --group-seeds " + " ".join(str(runs / n) for n in names) in out
    paired = next(line for line in out.splitlines() if "-m trainer.compare" in line)
    assert f"--a {runs}/tiktok_causal_s0 {runs}/tiktok_causal_s1 {runs}/tiktok_causal_s2 --b {runs}/tiktok_lightgcn_s0" in paired
    assert paired.count("--b ") == 3 and "--metric recall@20 ndcg@20" in paired
    assert "--markdown-section tiktok-paired --write" in paired


def test_simulator_sweep_script_sweeps_then_confirms_both_sides_on_fresh_seeds(tmp_path: Path) -> None:
    data = tmp_path / "sim"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    dry = _script("simulator_sweep.sh", tmp_path, DRY_RUN="1", DATA=str(data))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    # Default: ranked and selected on the simulator's uniform-exposure validation split.
    assert ("tune/main.py --config configs/synthetic_causal.yaml --space tune/spaces/causal_simulator_unbiased.yaml"
            in lines[0]) and "--run.name=sim_causal_sweep_uv" in lines[0]
    confirm = [ln for ln in lines[1:] if "trainer/main.py" in ln]
    assert len(confirm) == 6 and all("--train.batch_size=4096 --eval.select_split=unbiased_valid" in ln for ln in confirm)
    assert sorted(ln.split("--run.name=")[1].split()[0] for ln in confirm) == [
        f"sim_uv_{side}_s{seed}" for side in ("current", "swept") for seed in (3, 4, 5)]
    # The first sweep's protocol (observational valid), as docs/RESULTS.md records it.
    first = _script("simulator_sweep.sh", tmp_path, DRY_RUN="1", DATA=str(data), SPACE="tune/spaces/causal_simulator.yaml",
                    SELECT="valid", SWEEP="sim_causal_sweep", PREFIX="sim").stdout.splitlines()
    assert "--space tune/spaces/causal_simulator.yaml" in first[0] and "--run.name=sim_causal_sweep" in first[0]
    assert sum("--run.name=sim_swept_s3" in ln and "--eval.select_split=valid" in ln for ln in first) == 1
    missing = _script("simulator_sweep.sh", tmp_path, DATA=str(tmp_path / "none"))
    assert missing.returncode == 2 and "no dataset" in missing.stderr


def test_exposure_confirm_script_trains_both_candidates_and_reuses_the_config_runs(tmp_path: Path) -> None:
    (tmp_path / "runs" / "tiktok_causal_b8192_s1").mkdir(parents=True)
    (tmp_path / "runs" / "tiktok_causal_b8192_s1" / "metrics.json").write_text("{}")
    done = _script("tiktok_exposure_confirm.sh", tmp_path, SEEDS="1")
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "runs" / "calls.txt").read_text().splitlines()
    assert len(calls) == 2 and "skip  tiktok_causal_b8192_s1" in done.stdout
    assert any("exposure.mode=item_bias" in c for c in calls)
    assert any("exposure.mode=degree --model.causal.exposure.gamma=0.25" in c for c in calls)


def test_simulator_checks_script_selects_every_variant_on_unbiased_valid(tmp_path: Path) -> None:
    data = tmp_path / "sim"
    dry = _script("simulator_checks.sh", tmp_path, DRY_RUN="1", DATA=str(data), SEEDS="0")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert "data_loaders.prepare --from synthetic" in lines[0] and "--unbiased-valid-per-user 10" in lines[0]
    runs = [ln for ln in lines if "trainer/main.py" in ln]
    assert len(runs) == 6 and all("--eval.select_split=unbiased_valid" in ln for ln in runs)  # LightGCN too
    assert any("--run.name=sim_lightgcn_s0" in ln for ln in runs)
    old = _script("simulator_checks.sh", tmp_path, DRY_RUN="1", DATA=str(data), SEEDS="0", SELECT="valid")
    assert all("--eval.select_split=valid" in ln for ln in old.stdout.splitlines() if "trainer/main.py" in ln)
    # A dataset made before the split existed is refused, not silently reused.
    data.mkdir()
    (data / "manifest.json").write_text('{"splits": {"train": 5, "unbiased_valid": 0}}')
    stale = _script("simulator_checks.sh", tmp_path, DRY_RUN="1", DATA=str(data), SEEDS="0", STEPS="prepare")
    assert stale.returncode == 2 and "has no unbiased_valid split" in stale.stderr
    (data / "manifest.json").write_text('{"splits": {"train": 5, "unbiased_valid": 30}}')
    ok = _script("simulator_checks.sh", tmp_path, DRY_RUN="1", DATA=str(data), SEEDS="0", STEPS="prepare")
    assert ok.returncode == 0 and "skip  dataset" in ok.stdout


def test_pruned_bpr_script_trains_the_config_and_both_candidates_on_unbiased_valid(tmp_path: Path) -> None:
    data = tmp_path / "sim"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    dry = _script("simulator_pruned_bpr_confirm.sh", tmp_path, DRY_RUN="1", DATA=str(data))
    assert dry.returncode == 0, dry.stderr
    runs = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    assert len(runs) == 9 and all("--eval.select_split=unbiased_valid" in ln for ln in runs)
    assert sorted(ln.split("--run.name=")[1].split()[0] for ln in runs) == sorted(
        f"sim_pbw_{w}_s{s}" for w in ("w100", "w025", "w000") for s in (3, 4, 5))
    assert sum("pruned_bpr_weight=0.25" in ln for ln in runs) == 3 and sum("pruned_bpr_weight=0 " in ln + " " for ln in runs) == 3
    assert not any("pruned_bpr_weight" in ln for ln in runs if "sim_pbw_w100" in ln)  # the config's own weight
    missing = _script("simulator_pruned_bpr_confirm.sh", tmp_path, DATA=str(tmp_path / "none"))
    assert missing.returncode == 2 and "no dataset" in missing.stderr


def test_tiktok_pruned_bpr_script_trains_both_sides_on_seeds_1_to_3(tmp_path: Path) -> None:
    dry = _script("tiktok_pruned_bpr_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    assert sorted(ln.split("--run.name=")[1].split()[0] for ln in runs) == sorted(
        f"tiktok_causal_{side}_s{s}" for side in ("pbw1", "pbw0") for s in (1, 2, 3))
    assert all("--config configs/tiktok_causal.yaml" in ln for ln in runs)
    assert [("pruned_bpr_weight=0" in ln) for ln in runs] == [("pbw0" in ln) for ln in runs]


def test_epochs_script_trains_the_config_and_two_longer_candidates_on_unbiased_valid(tmp_path: Path) -> None:
    data = tmp_path / "sim"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    dry = _script("simulator_epochs_confirm.sh", tmp_path, DRY_RUN="1", DATA=str(data))
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"sim_{arm}_s{s}" for arm in ("ep060", "ep120", "ep120_keep080") for s in (3, 4, 5))
    assert all("--eval.select_split=unbiased_valid" in ln for ln in runs.values())
    assert [("--train.epochs=120" in ln) for ln in runs.values()] == [("ep120" in name) for name in runs]
    assert [("keep_ratio=0.8" in ln) for ln in runs.values()] == [("keep080" in name) for name in runs]
    missing = _script("simulator_epochs_confirm.sh", tmp_path, DATA=str(tmp_path / "none"))
    assert missing.returncode == 2 and "no dataset" in missing.stderr


def test_keep_script_trains_two_smaller_keep_ratios_next_to_the_config(tmp_path: Path) -> None:
    data = tmp_path / "sim"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    dry = _script("simulator_keep_confirm.sh", tmp_path, DRY_RUN="1", DATA=str(data), SEEDS="3")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == ["sim_ep060_s3", "sim_keep050_s3", "sim_keep058_s3"]
    assert "keep_ratio" not in runs["sim_ep060_s3"]
    assert "keep_ratio=0.58" in runs["sim_keep058_s3"] and "keep_ratio=0.50" in runs["sim_keep050_s3"]
    assert all("--eval.select_split=unbiased_valid" in ln for ln in runs.values())
