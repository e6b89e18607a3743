"""trainer/causal_checks.py and trainer/sim_report.py: the simulator checks of the causal model.

NMI against hand-computed values; `is_noise` mapped from file order onto the front-door's edge
order; the chance baseline of per-user random pruning; end to end on a tiny causal run directory
built in-process (test_explain's `_world_of_one`, no Ray) on the tiny simulator dataset; the
table and verdicts of sim_report on hand-made metrics.json files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from data_loaders.format import Split
from data_loaders.graph import CSR
from models.frontdoor import pruning_metrics
from test_explain import CAUSAL, _world_of_one  # tests/trainer is on sys.path (pytest's rootdir imports)
from trainer import sim_report
from trainer.causal_checks import (RESULT_FILE, causal_checks, chance_per_user, contingency, main,
                                   noise_in_edge_order, normalized_mutual_info, render)
from trainer.restore import RestoreError, restore_run


# ---- NMI ---------------------------------------------------------------------------------------

def test_nmi_identical_and_permuted_labelings_are_one() -> None:
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    assert normalized_mutual_info(a, a) == pytest.approx(1.0)
    assert normalized_mutual_info(a, np.array([5, 5, 9, 9, 1, 1, 1])) == pytest.approx(1.0)  # renamed labels
    assert normalized_mutual_info([0, 0, 0], [3, 3, 3]) == 1.0  # both constant
    assert normalized_mutual_info([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0  # one constant


def test_nmi_independent_labelings_are_zero() -> None:
    a = np.tile([0, 0, 1, 1], 5)
    b = np.tile([0, 1, 0, 1], 5)  # every (a, b) pair equally often: exactly independent
    assert normalized_mutual_info(a, b) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    assert normalized_mutual_info(rng.integers(0, 8, 20000), rng.integers(0, 8, 20000)) < 0.01


def test_nmi_hand_case_and_symmetry_and_permutation_invariance() -> None:
    a, b = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    # contingency [[2, 0], [1, 1]] of n = 4
    mi = 0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.25))
    h_a, h_b = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = mi / ((h_a + h_b) / 2)
    assert expected == pytest.approx(0.3437, abs=1e-4)  # scikit-learn's normalized_mutual_info_score
    assert normalized_mutual_info(a, b) == pytest.approx(expected, abs=1e-12)
    assert normalized_mutual_info(b, a) == pytest.approx(expected, abs=1e-12)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 300), rng.integers(0, 3, 300)
    y = np.where(rng.random(300) < 0.6, x % 3, y)  # dependent
    perm = rng.permutation(300)
    relabel = np.array([4, 2, 0, 3, 1])
    base = normalized_mutual_info(x, y)
    assert 0.1 < base < 1
    assert normalized_mutual_info(x[perm], y[perm]) == pytest.approx(base, abs=1e-12)  # item order
    assert normalized_mutual_info(relabel[x], y) == pytest.approx(base, abs=1e-12)     # code names
    assert contingency(x, y).sum() == 300


# ---- is_noise in edge order --------------------------------------------------------------------

def test_noise_follows_the_edges_not_the_file_order() -> None:
    rng = np.random.default_rng(2)
    num_users, num_items = 30, 20
    pairs = rng.permutation(num_users * num_items)[:200]  # distinct (user, item) pairs, file order random
    users, items = pairs // num_items, pairs % num_items
    noise = rng.random(200) < 0.3
    train = CSR.from_pairs(users, items, num_users, num_items)
    edge_user, edge_item = train.row_ids(), train.indices  # the front-door's edge order (models/causal.py)
    got = noise_in_edge_order(users, items, noise, edge_user, edge_item, num_items)
    expected = {(int(u), int(i)): bool(n) for u, i, n in zip(users, items, noise)}
    assert got.tolist() == [expected[(int(u), int(i))] for u, i in zip(edge_user, edge_item)]
    assert not np.array_equal(got, noise)  # the orders really differ: file order would be wrong
    assert np.array_equal(got, CSR.from_pairs(users, items, num_users, num_items, data=noise).data)
    with pytest.raises(ValueError, match="no interaction row"):
        noise_in_edge_order(users[1:], items[1:], noise[1:], edge_user, edge_item, num_items)


def test_chance_per_user_is_the_expected_precision_of_random_pruning() -> None:
    # user 0: 4 edges, 1 noise, 2 pruned; user 1: 2 edges, 2 noise, 1 pruned
    edge_user = np.array([0, 0, 0, 0, 1, 1])
    noise = np.array([1, 0, 0, 0, 1, 1], bool)
    pruned = np.array([0, 1, 1, 0, 1, 0], bool)
    hits = 2 * 1 / 4 + 1 * 2 / 2
    got = chance_per_user(edge_user, pruned, noise, 2)
    assert got == {"precision": pytest.approx(hits / 3), "recall": pytest.approx(hits / 3)}
    rng = np.random.default_rng(3)  # Monte Carlo: the same pruned count per user, at random
    draws = []
    for _ in range(3000):
        p = np.zeros(6, bool)
        p[rng.choice(4, 2, replace=False)] = True
        p[4 + rng.choice(2, 1)] = True
        draws.append((p & noise).sum() / 3)
    assert np.mean(draws) == pytest.approx(got["precision"], abs=0.02)


# ---- end to end on a tiny run ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_causal_run(tiny_synthetic, tmp_path_factory) -> str:
    return _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL], tmp_path_factory.mktemp("runs") / "sim_full_s0")


def test_checks_on_a_tiny_causal_run(tiny_causal_run, tmp_path: Path, capsys) -> None:
    run = restore_run(tiny_causal_run)
    rep = causal_checks(run)
    codes, prune = rep["codes"], rep["pruning"]
    assert codes["num_items"] == run.dataset.manifest.num_items
    for key in ("nmi_coarse", "nmi_fine", "nmi_pair"):
        assert 0.0 <= codes[key] <= 1.0
    assert codes["truth_coarse_values"] == 8 and codes["truth_fine_values"] == 32  # the simulator's defaults
    # The same figures by an independent route: truth by item id, codes of all items, noise via CSR data.
    truth = run.dataset.load_truth("items").to_pydict()
    label = np.zeros(len(truth["item_id"]), np.int64)
    label[truth["item_id"]] = truth["confounder"]
    coarse = run.model.backdoor.assign(run.model.represent().confounder)[0].numpy()
    assert codes["nmi_coarse"] == pytest.approx(normalized_mutual_info(coarse, label), abs=1e-12)
    rows = run.dataset.load_interactions(splits=[Split.TRAIN], columns=("user_id", "item_id", "is_noise"))
    train = run.splits[Split.TRAIN]
    noise = CSR.from_pairs(rows["user_id"], rows["item_id"], train.num_rows, train.num_cols, data=rows["is_noise"]).data
    kept = run.model.frontdoor.kept
    assert not bool(kept.all()) and prune["last_refresh_epoch"] == 2
    direct = pruning_metrics(kept, torch.from_numpy(noise.astype(bool)))
    for key in ("pruned_fraction", "precision", "recall"):
        assert prune[key] == pytest.approx(direct[key], abs=1e-12)
    assert prune["edges"] == train.nnz and prune["noise_edges"] == int(noise.sum())
    assert prune["chance"] == {"precision": pytest.approx(noise.mean()), "recall": pytest.approx(prune["pruned_fraction"])}
    assert 0 < prune["chance_per_user"]["precision"] < 1
    assert "NMI coarse codes vs confounder" in render(rep)

    out = tmp_path / "checks.json"
    assert main(["--run", tiny_causal_run, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| pruning precision (pruned ⇒ noise) / chance / chance per user |" in printed
    saved = json.loads(out.read_text())
    assert saved["codes"]["nmi_coarse"] == pytest.approx(codes["nmi_coarse"]) and saved["pruning"]["edges"] == train.nnz


def test_checks_refuse_a_model_that_is_not_causal() -> None:
    run = SimpleNamespace(model=torch.nn.Linear(1, 1), run_dir="runs/x", cfg=SimpleNamespace(
        model=SimpleNamespace(name="lightgcn")))
    with pytest.raises(RestoreError, match="model.name=causal"):
        causal_checks(run)


# ---- sim_report --------------------------------------------------------------------------------

def _fake_run(root: Path, name: str, model: str, seed: int, unbiased: float, test: float,
              checks: dict | None = None, unbiased_valid: float | None = None) -> str:
    run = root / name
    run.mkdir()
    config = {"model": {"name": model}, "data": {"url": str(root / "no-such-data")}, "run": {"seed": seed}}
    metrics = {"best_unbiased_test": {"recall@20": unbiased}, "best_test": {"recall@20": test},
               "best_valid": {"recall@20": test + 0.05 * seed}}
    if unbiased_valid is not None:  # selected on the simulator's unbiased_valid split
        config["eval"] = {"select_split": "unbiased_valid"}
        metrics["best_unbiased_valid"] = {"recall@20": unbiased_valid}
    (run / "metrics.json").write_text(json.dumps({"config": config, **metrics}))
    if checks is not None:
        (run / RESULT_FILE).write_text(json.dumps(checks))
    return str(run)


def test_sim_report_table_and_verdicts(tmp_path: Path, capsys) -> None:
    runs = []
    for seed, (u, nmi, prec) in enumerate([(0.30, 0.7, 0.3), (0.32, 0.6, 0.4), (0.34, 0.5, 0.2)]):
        checks = {"codes": {"nmi_coarse": nmi, "nmi_pair": 0.4},
                  "pruning": {"pruned_fraction": 0.2, "precision": prec, "recall": 0.6, "noise_fraction": 0.1}}
        runs.append(_fake_run(tmp_path, f"sim_full_s{seed}", "causal", seed, u, 0.4, checks, unbiased_valid=u - 0.01))
    for seed, u in enumerate([0.28, 0.29, 0.30]):
        runs.append(_fake_run(tmp_path, f"sim_noadjust_s{seed}", "causal", seed, u, 0.41))
        runs.append(_fake_run(tmp_path, f"sim_lightgcn_s{seed}", "lightgcn", seed, u + 0.02, 0.42))
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nkept text\n")
    assert sim_report.main([*runs, "--full", "sim_full", "--ablated", "sim_noadjust", "--baseline", "sim_lightgcn",
                            "--also", "sim_lightgcn", "--markdown-section", "simulator-checks", "--write", str(doc), "--heading", "Sim checks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert "0.3200 ± 0.0200" in lines["sim_full"] and "0.6000 ± 0.1000" in lines["sim_full"]  # unbiased, NMI
    assert "| unbiased_valid | 0.3200 ± 0.0200 | 0.3100 ± 0.0200 | 0.4500 ± 0.0500 | 0.4000 ± 0.0000 |" in lines["sim_full"]
    # Selected on valid, no unbiased_valid figures, no causal_checks.json: those columns empty.
    assert "| valid |" in lines["sim_noadjust"] and lines["sim_noadjust"].count("—") == 7
    verdict = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| (")}
    gain = 0.32 / 0.29 - 1  # +10.3%
    assert f"{gain:+.1%}" in verdict["(a) unbiased_test R@20 gain of sim_full over sim_noadjust"]
    assert verdict["(a) unbiased_test R@20 gain of sim_full over sim_noadjust"].endswith("| yes |")
    assert verdict["(a) unbiased_test R@20 gain of sim_full over sim_lightgcn"].endswith("| yes |")  # 0.32 > 0.31
    assert f"| unbiased_test R@20 gain of sim_full over sim_lightgcn (no target) | {0.32 / 0.31 - 1:+.1%} | — | — |" in out
    assert verdict["(b) NMI of the coarse codes with the true confounder"].endswith("| yes |")
    assert verdict["(c) pruning precision (pruned ⇒ noise) vs chance (noise fraction)"].endswith("| yes |")
    text = doc.read_text()
    assert text.startswith("# Results\n\nkept text\n\n## Sim checks\n\n<!-- begin simulator-checks -->\n")
    doc.write_text(text.replace("## Sim checks", "## Renamed by hand") + "\nlater text\n")
    assert sim_report.main([*runs, "--markdown-section", "simulator-checks", "--write", str(doc), "--heading", "X"]) == 0
    again = doc.read_text()  # regenerated in place: heading kept, nothing duplicated, text after kept
    assert again.count("<!-- begin simulator-checks -->") == 1 and "## Renamed by hand" in again
    assert "## X" not in again and again.rstrip().endswith("later text") and "| check |" not in again
    assert "| sim_full | causal | 0, 1, 2 |" in text

    rows = sim_report.verdicts(sim_report.collect(runs), "sim_full", "sim_noadjust", None, min_gain=0.2)
    assert not rows[0]["passed"]
    with pytest.raises(SystemExit, match="no runs of group"):
        sim_report.verdicts(sim_report.collect(runs), "sim_typo", None, None)


def test_sim_report_refuses_a_group_selected_two_ways(tmp_path: Path) -> None:
    runs = [_fake_run(tmp_path, "sim_full_s0", "causal", 0, 0.3, 0.4, unbiased_valid=0.3),
            _fake_run(tmp_path, "sim_full_s1", "causal", 1, 0.3, 0.4)]
    with pytest.raises(SystemExit, match="eval.select_split"):
        sim_report.collect(runs)
