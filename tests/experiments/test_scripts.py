"""The experiments/ scripts: syntax, skip logic and job pool, and the runs each one would train (with a
fake trainer in place of the Python: nothing is trained)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (REPO / "experiments").glob("*.sh"))


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


def _fake_dataset(tmp_path: Path) -> Path:
    """A directory the simulator scripts accept as a made dataset (they only look for its manifest)."""
    data = tmp_path / "sim"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    return data


def _script(name: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_TRAINER)
    fake.chmod(0o755)
    full = {**os.environ, "PY": str(fake), "RUNS": str(tmp_path / "runs"), "LOGS": str(tmp_path / "logs"), **env}
    return subprocess.run(["bash", str(REPO / "experiments" / name)], env=full, capture_output=True, text=True,
                          timeout=60)


def _dry_run(name: str, tmp_path: Path, **env: str) -> tuple[list[str], list[str]]:
    """(the training commands a DRY_RUN of script `name` prints, their run names); the run must succeed."""
    dry = _script(name, tmp_path, DRY_RUN="1", **env)
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    return lines, [ln.split("--run.name=")[1].split()[0] for ln in lines]


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
    # A baseline whose wider setting won on valid is named by BASELINES; its runs must be finished too.
    wide = _script("tiktok_tables.sh", tmp_path, DRY_RUN="1", DOC=str(tmp_path / "R.md"),
                   BASELINES="lightgcn_dim128 vbpr freedom")
    assert "skip section tiktok-seeds: not finished" in wide.stderr and "tiktok_lightgcn_dim128_s0" in wide.stderr
    for s in range(3):
        (runs / f"tiktok_lightgcn_dim128_s{s}").mkdir()
        (runs / f"tiktok_lightgcn_dim128_s{s}" / "metrics.json").write_text("{}")
    wide = _script("tiktok_tables.sh", tmp_path, DRY_RUN="1", DOC=str(tmp_path / "R.md"),
                   BASELINES="lightgcn_dim128 vbpr freedom")
    paired = next(line for line in wide.stdout.splitlines() if "-m trainer.compare" in line)
    assert f"--b {runs}/tiktok_lightgcn_dim128_s0" in paired and "tiktok_lightgcn_s0" not in paired


def test_simulator_sweep_script_sweeps_then_confirms_both_sides_on_fresh_seeds(tmp_path: Path) -> None:
    data = _fake_dataset(tmp_path)
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
    data = _fake_dataset(tmp_path)
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
    data = _fake_dataset(tmp_path)
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
    data = _fake_dataset(tmp_path)
    dry = _script("simulator_keep_confirm.sh", tmp_path, DRY_RUN="1", DATA=str(data), SEEDS="3")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == ["sim_ep060_s3", "sim_keep050_s3", "sim_keep058_s3"]
    assert "keep_ratio" not in runs["sim_ep060_s3"]
    assert "keep_ratio=0.58" in runs["sim_keep058_s3"] and "keep_ratio=0.50" in runs["sim_keep050_s3"]
    assert all("--eval.select_split=unbiased_valid" in ln for ln in runs.values())


def test_capacity_probe_script_trains_one_seed_of_each_setting(tmp_path: Path) -> None:
    dry = _script("tiktok_capacity_probe.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"tiktok_causal{v}_s0" for v in ("", "_dim128", "_layers3", "_usercontent", "_fine256"))
    assert "--model.embedding_dim=128" in runs["tiktok_causal_dim128_s0"]
    assert "--model.num_layers=3" in runs["tiktok_causal_layers3_s0"]
    assert "--model.causal.user_content_in_score=true" in runs["tiktok_causal_usercontent_s0"]
    assert "--model.causal.backdoor.fine_codes=256" in runs["tiktok_causal_fine256_s0"]
    assert all("--run.seed=0" in ln and "--config configs/tiktok_causal.yaml" in ln for ln in runs.values())
    # only the config's own run carries no override beyond its seed
    assert runs["tiktok_causal_s0"].split("--run.seed=0")[1].strip() == ""


def test_capacity_confirm_script_trains_the_config_and_both_candidates_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_capacity_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_dim128", "_usercontent") for s in (7, 8, 9))
    for name, line in runs.items():
        assert f"--run.seed={name[-1]}" in line
        assert ("--model.embedding_dim=128" in line) == ("dim128" in name)
        assert ("--model.causal.user_content_in_score=true" in line) == ("usercontent" in name)


def test_capacity_probe2_script_trains_one_seed_of_each_setting(tmp_path: Path) -> None:
    dry = _script("tiktok_capacity_probe2.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    variants = {
        "_dim256": "--model.embedding_dim=256",
        "_layers3": "--model.num_layers=3",
        "_keeppruned": "--model.causal.frontdoor.pruned_bpr_weight=1.0",
        "_reg1e3": "--model.reg_weight=1e-3",
    }
    assert sorted(runs) == sorted(f"tiktok_causal{v}_s0" for v in ["", *variants])
    for variant, override in variants.items():
        # each run carries its own override and no other run's
        for name, line in runs.items():
            assert (override in line) == (name == f"tiktok_causal{variant}_s0")
    assert all("--run.seed=0" in ln and "--config configs/tiktok_causal.yaml" in ln for ln in runs.values())


def test_capacity_confirm2_script_trains_the_config_and_both_candidates_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_capacity_confirm2.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_keeppruned", "_keeppruned_dim256")
                                  for s in (7, 8, 9))
    for name, line in runs.items():
        assert f"--run.seed={name[-1]}" in line
        assert ("--model.causal.frontdoor.pruned_bpr_weight=1.0" in line) == ("keeppruned" in name)
        assert ("--model.embedding_dim=256" in line) == ("dim256" in name)


def test_softmax_probe_script_trains_each_temperature_and_the_confirmation_subset(tmp_path: Path) -> None:
    dry = _script("tiktok_softmax_probe.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    temps = {"t1": "1.0", "t02": "0.2", "t005": "0.05"}
    assert sorted(runs) == sorted(["tiktok_causal_s0", *(f"tiktok_causal_softmax_{t}_s0" for t in temps)])
    assert "--model.loss" not in runs["tiktok_causal_s0"]
    for t, value in temps.items():
        line = runs[f"tiktok_causal_softmax_{t}_s0"]
        assert "--model.loss=softmax" in line and f"--model.softmax_temperature={value}" in line
    confirm = _script("tiktok_softmax_probe.sh", tmp_path, DRY_RUN="1", SEEDS="7 8 9", VARIANTS="softmax_t02")
    names = sorted(ln.split("--run.name=")[1].split()[0] for ln in confirm.stdout.splitlines() if "main.py" in ln)
    assert names == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_softmax_t02") for s in (7, 8, 9))
    for bad in ("softmax_t3", "softmax_t02_lr5"):
        typo = _script("tiktok_softmax_probe.sh", tmp_path, DRY_RUN="1", VARIANTS=bad)
        assert typo.returncode != 0 and f"unknown variant '{bad}'" in typo.stderr
    second = _script("tiktok_softmax_probe.sh", tmp_path, DRY_RUN="1",
                     VARIANTS="softmax_t02_lr3e4 softmax_t02_lr1e4 softmax_t005_lr3e4 softmax_t005_lr1e4")
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in second.stdout.splitlines() if "main.py" in ln}
    for t, value in (("t02", "0.2"), ("t005", "0.05")):
        for lr, lr_value in (("lr3e4", "3e-4"), ("lr1e4", "1e-4")):
            line = runs[f"tiktok_causal_softmax_{t}_{lr}_s0"]
            assert f"--model.softmax_temperature={value} --train.learning_rate={lr_value}" in line
            assert "--model.loss=softmax" in line


def test_baseline_dim_script_trains_every_baseline_128_wide_on_the_table_seeds(tmp_path: Path) -> None:
    dry = _script("tiktok_baseline_dim.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"tiktok_{m}_dim128_s{s}" for m in ("lightgcn", "freedom", "vbpr") for s in (0, 1, 2))
    for name, line in runs.items():
        model = name.split("_")[1]
        assert f"--config configs/tiktok_{model}.yaml" in line and "--model.embedding_dim=128" in line


def test_sweep128_confirm_script_trains_the_config_and_the_best_trial_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_sweep128_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_sweep128") for s in (7, 8, 9))
    for name, line in runs.items():
        assert f"--run.seed={name[-1]}" in line
        swept = "sweep128" in name
        assert ("--model.causal.backdoor.coarse_codes=32" in line) == swept
        assert ("--train.learning_rate=0.004759796075269917" in line) == swept
        assert line.count("--model.") + line.count("--train.") == (7 + 1 if swept else 0)


def test_frontdoor_confirm_script_trains_the_config_and_both_variants_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_frontdoor_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_no_frontdoor", "_no_topology")
                                  for s in (7, 8, 9))
    for name, line in runs.items():
        assert f"--run.seed={name[-1]}" in line
        assert ("--model.causal.frontdoor.enabled=false" in line) == ("no_frontdoor" in name)
        assert ("--model.causal.frontdoor.topology_reconstruction=false" in line) == ("no_topology" in name)
    second = _script("tiktok_frontdoor_confirm.sh", tmp_path, DRY_RUN="1", VARIANTS="no_cross")
    lines = {ln.split("--run.name=")[1].split()[0]: ln for ln in second.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(lines) == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_no_cross") for s in (7, 8, 9))
    assert all(("--model.causal.frontdoor.cross_sample=false" in ln) == ("no_cross" in n) for n, ln in lines.items())
    bad = _script("tiktok_frontdoor_confirm.sh", tmp_path, DRY_RUN="1", VARIANTS="no_crosss")
    assert bad.returncode != 0 and "unknown variant 'no_crosss'" in bad.stderr


def test_views_probe_script_trains_both_variants_and_the_confirmation_subset(tmp_path: Path) -> None:
    dry = _script("tiktok_views_probe.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(runs) == ["tiktok_causal_s0", "tiktok_causal_views_s0", "tiktok_causal_views_top10_s0"]
    for name, line in runs.items():
        assert ("--model.causal.views.enabled=true" in line) == ("views" in name)
        assert ("--model.causal.views.user_top_k=10" in line) == ("top10" in name)
    confirm = _script("tiktok_views_probe.sh", tmp_path, DRY_RUN="1", SEEDS="7 8 9", VARIANTS="views_top10")
    names = sorted(ln.split("--run.name=")[1].split()[0] for ln in confirm.stdout.splitlines() if "trainer/main.py" in ln)
    assert names == sorted(f"tiktok_causal{v}_s{s}" for v in ("", "_views_top10") for s in (7, 8, 9))
    second = _script("tiktok_views_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="views_gated views_gated_l1")
    lines = {ln.split("--run.name=")[1].split()[0]: ln for ln in second.stdout.splitlines() if "trainer/main.py" in ln}
    assert sorted(lines) == ["tiktok_causal_s0", "tiktok_causal_views_gated_l1_s0", "tiktok_causal_views_gated_s0"]
    assert "--model.causal.views.gated=true" in lines["tiktok_causal_views_gated_s0"]
    assert "--model.causal.views.user_layers=1 --model.causal.views.item_layers=1" in lines["tiktok_causal_views_gated_l1_s0"]
    bad = _script("tiktok_views_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="views_top99")
    assert bad.returncode != 0 and "unknown variant 'views_top99'" in bad.stderr


def test_jitter_probe_script_trains_each_diagnostic_variant_on_seed_0(tmp_path: Path) -> None:
    dry = _script("tiktok_jitter_probe.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    runs = {ln.split("--run.name=")[1].split()[0]: ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln}
    flags = {"no_restart": "--model.causal.backdoor.dead_code_threshold=0",
             "slow_codes": "--model.causal.backdoor.ema_decay=0.99", "ema_prior": "--model.causal.backdoor.prior=ema"}
    assert sorted(runs) == sorted(["tiktok_causal_s0", *(f"tiktok_causal_{v}_s0" for v in flags)])
    for variant, flag in flags.items():
        assert all((flag in line) == (variant in name) for name, line in runs.items())
    bad = _script("tiktok_jitter_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="fast_codes")
    assert bad.returncode != 0 and "unknown variant 'fast_codes'" in bad.stderr
    # The confirmation on fresh seeds (docs/RESULTS.md "TikTok: no code restarts on fresh seeds").
    confirm = _script("tiktok_jitter_probe.sh", tmp_path, DRY_RUN="1", SEEDS="7 8 9", VARIANTS="no_restart")
    assert confirm.returncode == 0, confirm.stderr
    lines = [ln for ln in confirm.stdout.splitlines() if "trainer/main.py" in ln]
    assert [ln.split("--run.name=")[1].split()[0] for ln in lines] == [
        f"tiktok_causal{v}_s{s}" for s in (7, 8, 9) for v in ("", "_no_restart")]
    assert all(("dead_code_threshold=0" in ln) == ("no_restart" in ln) for ln in lines)


def test_lr_probe_script_trains_both_plateau_variants_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_lr_probe.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    assert [ln.split("--run.name=")[1].split()[0] for ln in lines] == [
        f"tiktok_causal{v}_s{s}" for s in (7, 8, 9) for v in ("", "_plateau_p5", "_plateau_p10")]
    for line in lines:
        name = line.split("--run.name=")[1].split()[0]
        assert ("--train.lr_schedule=plateau" in line) == ("plateau" in name)
        assert ("--train.lr_decay_start_epoch=30" in line) == ("plateau" in name)
        assert ("--train.lr_decay_patience=5 " in line + " ") == ("_p5_" in name)
        assert ("--train.lr_decay_patience=10" in line) == ("_p10_" in name)
    bad = _script("tiktok_lr_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="cosine")
    assert bad.returncode != 0 and "unknown variant 'cosine'" in bad.stderr


def test_usercontent_confirm_script_adds_the_user_content_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_usercontent_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    assert [ln.split("--run.name=")[1].split()[0] for ln in lines] == [
        f"tiktok_causal{v}_s{s}" for s in (7, 8, 9) for v in ("", "_usercontent")]
    names = [ln.split("--run.name=")[1].split()[0] for ln in lines]
    assert all(("--model.causal.user_content_in_score=true" in ln) == ("usercontent" in name)
               for ln, name in zip(lines, names))
    assert all("--config configs/tiktok_causal.yaml" in ln for ln in lines)


def test_width_reg_confirm_script_trains_both_variants_on_seeds_7_to_9(tmp_path: Path) -> None:
    dry = _script("tiktok_width_reg_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    names = [ln.split("--run.name=")[1].split()[0] for ln in lines]
    assert names == [f"tiktok_causal{v}_s{s}" for s in (7, 8, 9) for v in ("", "_dim256", "_reg1e5")]
    for line, name in zip(lines, names):
        assert ("--model.embedding_dim=256" in line) == ("dim256" in name)
        assert ("--model.reg_weight=1e-5" in line) == ("reg1e5" in name)
    bad = _script("tiktok_width_reg_confirm.sh", tmp_path, DRY_RUN="1", VARIANTS="dim512")
    assert bad.returncode != 0 and "unknown variant 'dim512'" in bad.stderr


def test_late_decay_confirm_script_trains_both_variants_on_seeds_13_to_15(tmp_path: Path) -> None:
    dry = _script("tiktok_late_decay_confirm.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    names = [ln.split("--run.name=")[1].split()[0] for ln in lines]
    assert names == [f"tiktok_causal{v}_s{s}" for s in (13, 14, 15) for v in ("", "_reg1e4", "_decay60")]
    for line, name in zip(lines, names):
        assert ("--model.reg_weight=1e-4" in line) == ("reg1e4" in name)
        assert ("--train.lr_schedule=plateau" in line) == ("decay60" in name)
        assert ("--train.lr_decay_start_epoch=60" in line) == ("decay60" in name)
        assert ("--train.lr_decay_patience=5" in line) == ("decay60" in name)
    bad = _script("tiktok_late_decay_confirm.sh", tmp_path, DRY_RUN="1", VARIANTS="cosine")
    assert bad.returncode != 0 and "unknown variant 'cosine'" in bad.stderr


def test_edge_dropout_probe_script_sets_the_kept_share(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_edge_dropout_probe.sh", tmp_path)
    assert names == ["tiktok_causal_s0", "tiktok_causal_drop10_s0", "tiktok_causal_drop30_s0"]
    for line, keep in zip(lines, (None, "0.9", "0.7")):
        assert ("edge_keep" in line) == (keep is not None)
        assert keep is None or f"--model.causal.backbone.edge_keep={keep} " in line + " "
    bad = _script("tiktok_edge_dropout_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="drop50")
    assert bad.returncode != 0 and "unknown variant 'drop50'" in bad.stderr


def test_lightgcn_edge_dropout_script_trains_the_128_wide_baseline_with_dropout(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_lightgcn_edge_dropout.sh", tmp_path)
    assert names == [f"tiktok_lightgcn_dim128_drop30_s{s}" for s in (0, 1, 2)]
    for line in lines:
        args = line.split()
        assert "configs/tiktok_lightgcn.yaml" in args and "--model.embedding_dim=128" in args
        assert "--model.lightgcn.edge_keep=0.7" in args


def test_simgcl_probe_script_sets_the_weight(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_simgcl_probe.sh", tmp_path)
    assert names == ["tiktok_causal_s0", "tiktok_causal_sgl01_s0", "tiktok_causal_sgl05_s0"]
    for line, w in zip(lines, (None, "0.1", "0.5")):
        assert ("id_contrast" in line) == (w is not None)
        assert w is None or f"--model.causal.id_contrast.loss_weight={w} " in line + " "
    lines = _dry_run("tiktok_simgcl_probe.sh", tmp_path, VARIANTS="sgl002 sgl002_eps001")[0][1:]
    assert all("--model.causal.id_contrast.loss_weight=0.02 " in ln + " " for ln in lines)
    assert ["--model.causal.id_contrast.eps=0.01" in ln for ln in lines] == [False, True]
    lines = _dry_run("tiktok_simgcl_probe.sh", tmp_path, VARIANTS="idonly idonly_sgl01")[0][1:]
    for ln in lines:
        assert all(f"--model.causal.{m}.enabled=false" in ln for m in ("diffusion", "backdoor", "frontdoor", "contrast"))
        assert "--model.causal.content_in_score=false" in ln
    assert ["id_contrast.loss_weight=0.1" in ln for ln in lines] == [False, True]
    lines = _dry_run("tiktok_simgcl_probe.sh", tmp_path, VARIANTS="idonly_b2048 idonly_sgl05_b2048")[0][1:]
    assert all("--train.batch_size=2048" in ln and "--train.learning_rate=1e-3" in ln for ln in lines)
    assert ["id_contrast.loss_weight=0.5" in ln for ln in lines] == [False, True]
    line = _dry_run("tiktok_simgcl_probe.sh", tmp_path, VARIANTS="idonly_sgl01_eps0")[0][1]
    assert "--model.causal.content_in_score=false" in line
    assert line.endswith("--model.causal.id_contrast.loss_weight=0.1 --model.causal.id_contrast.eps=0")
    bad = _script("tiktok_simgcl_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="sgl2")
    assert bad.returncode != 0 and "unknown variant 'sgl2'" in bad.stderr


def test_negatives_probe_script_sets_k(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_negatives_probe.sh", tmp_path)
    assert names == ["tiktok_causal_s0", "tiktok_causal_neg4_s0", "tiktok_causal_neg8_s0"]
    for line, k in zip(lines, (None, 4, 8)):
        assert ("--train.negatives=" in line) == (k is not None)
        assert k is None or f"--train.negatives={k} " in line + " "
    # An empty VARIANTS trains the configuration alone (e.g. fresh seeds' reference runs).
    assert _dry_run("tiktok_negatives_probe.sh", tmp_path, VARIANTS="")[0] == lines[:1]
    bad = _script("tiktok_negatives_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="neg3")
    assert bad.returncode != 0 and "unknown variant 'neg3'" in bad.stderr


def test_refit_probe_script_schedules_the_kmeans_refits(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_refit_probe.sh", tmp_path)
    assert names == [f"tiktok_causal{v}_s0" for v in ("", "_refit5", "_refit10", "_refit_once")]
    b = "--model.causal.backdoor."
    for line, name in zip(lines, names):
        args = line.split() + [""]
        assert (f"{b}refit_start=10" in args) == ("refit" in name)
        assert (f"{b}refit_every=5" in args) == ("refit5" in name)
        assert (f"{b}refit_every=10" in args) == ("refit10" in name)
        assert (f"{b}refit_every=100000" in args) == ("once" in name)
    bad = _script("tiktok_refit_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="refit3")
    assert bad.returncode != 0 and "unknown variant 'refit3'" in bad.stderr


def test_codebook_probe_script_limits_the_restarts_to_the_first_epochs(tmp_path: Path) -> None:
    dry = _script("tiktok_codebook_probe.sh", tmp_path, DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "trainer/main.py" in ln]
    names = [ln.split("--run.name=")[1].split()[0] for ln in lines]
    assert names == [f"tiktok_causal{v}_s0" for v in ("", "_restart20", "_restart40", "_restart30_slow")]
    b = "--model.causal.backdoor."
    for line, name in zip(lines, names):
        args = line.split() + [""]
        assert (f"{b}restart_epochs=20" in args) == ("restart20" in name)
        assert (f"{b}restart_epochs=40" in args) == ("restart40" in name)
        assert (f"{b}restart_epochs=30" in args) == ("restart30" in name)
        assert (f"{b}dead_code_threshold=0.1" in args) == (name.endswith(("restart20_s0", "restart40_s0")))
        assert (f"{b}dead_code_threshold=0.5" in args) == ("slow" in name)
        assert (f"{b}ema_decay=0.95" in args) == (name.endswith(("restart20_s0", "restart40_s0")))
    bad = _script("tiktok_codebook_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="restart99")
    assert bad.returncode != 0 and "unknown variant 'restart99'" in bad.stderr


# The later variants of experiments/tiktok_dns_probe.sh (sixth round on): the flags each one's
# command line ends with, i.e. what it adds to the configuration. One dry run checks them all.
DNS_PROBE_TAILS = {
    "dns16_warm5_fdcent": ["--train.negative_candidate_epochs=5", "--model.causal.frontdoor.dictionary=centroids"],
    "dns16_warm5_then2": ["--train.negative_candidates=16", "--train.negative_candidate_epochs=5",
                          "--train.negative_candidates_after=2"],
    "dns16_warm5_then4": ["--train.negative_candidates=16", "--train.negative_candidate_epochs=5",
                          "--train.negative_candidates_after=4"],
    "dns16_warm5_then2_pop020": ["--train.negative_candidates_after=2", "--eval.popularity_offset=-0.2"],
    "dns16_warm5_dim256": ["--model.embedding_dim=256"],
    "dns16_warm5_lr1e3": ["--train.learning_rate=1e-3"],
    "dns16_warm5_itemc": ["--model.causal.frontdoor.prune_rank=item_centred"],
    "dns16_warm5_keep90": ["--model.causal.frontdoor.keep_ratio=0.9"],
    "dns16_warm5_l3": ["--train.negative_candidate_epochs=5", "--model.num_layers=3"],
    "dns16_warm5_b4096": ["--train.batch_size=4096", "--train.learning_rate=1e-3"],
    "dns16_warm5_dwd1e3": ["--train.dense_weight_decay=1e-3"],
    "dns16_warm5_dwd1e2": ["--train.dense_weight_decay=1e-2"],
    "dns16_warm5_npop025": ["--train.negative_popularity_power=0.25"],
    "dns16_warm5_npop050": ["--train.negative_popularity_power=0.5"],
    "dns16_warm5_then_npop025": ["--train.negative_popularity_power=0.25", "--train.negative_popularity_from_epoch=5"],
    "dns16_warm5_then_npop050": ["--train.negative_popularity_power=0.5", "--train.negative_popularity_from_epoch=5"],
    "dns16_warm5_norm055": ["--model.causal.backbone.norm_power=0.55"],
    "dns16_warm5_norm060": ["--model.causal.backbone.norm_power=0.6"],
    "dns16_warm5_refit5": ["--model.causal.backdoor.refit_start=10", "--model.causal.backdoor.refit_every=5"],
    "dns16_warm5_then2_norm060": ["--train.negative_candidates_after=2", "--model.causal.backbone.norm_power=0.6"],
    "dns16_warm5_norm060_pop020": ["--model.causal.backbone.norm_power=0.6", "--eval.popularity_offset=-0.2"],
    "dns16_warm5_norm065_pop020": ["--model.causal.backbone.norm_power=0.65", "--eval.popularity_offset=-0.2"],
    "dns16_warm5_norm070_pop020": ["--model.causal.backbone.norm_power=0.7", "--eval.popularity_offset=-0.2"],
    "hid128": ["--model.causal.projection.hidden=128", "--model.causal.diffusion.hidden=128"],
    "hid256": ["--model.causal.projection.hidden=256", "--model.causal.diffusion.hidden=256"],
    "keep70": ["--model.causal.frontdoor.keep_ratio=0.7"],
    "keep60": ["--model.causal.frontdoor.keep_ratio=0.6"],
    "mask60": ["--model.causal.diffusion.self_mask_prob=0.6"],
    "diffw03": ["--model.causal.diffusion.loss_weight=0.3"],
    "noise10": ["--model.causal.diffusion.noise_scale=1.0"],
    "mask60_noise10": ["--model.causal.diffusion.self_mask_prob=0.6", "--model.causal.diffusion.noise_scale=1.0"],
    "noise30": ["--model.causal.diffusion.noise_scale=3.0"],
    "noise100": ["--model.causal.diffusion.noise_scale=10.0"],
    "lr2e3": ["--train.learning_rate=2e-3"],
    "then2": ["--train.negative_candidates_after=2"],
    "wa90": ["--train.weight_average_decay=0.9"],
    "wa97": ["--train.weight_average_decay=0.97"],
    "center": ["--model.causal.backdoor.center=true"],
    "center0": ["--model.causal.backdoor.center=true", "--model.causal.backdoor.center_decay=0"],
    "topo_bpr": ["--model.causal.frontdoor.topo_loss=bpr"],
    "cl_mediator": ["--model.causal.contrast.view=mediator"],
    "cl10": ["--model.causal.contrast.loss_weight=0.1"],
    "cl025": ["--model.causal.contrast.loss_weight=0.025"],
    "steps10": ["--model.causal.diffusion.steps=10"],
    "gate03": ["--model.causal.gate_init=0.3"],
    "ortho0": ["--model.causal.diffusion.ortho_weight=0"],
    "fdwarm5": ["--model.causal.frontdoor.warmup_epochs=5"],
    "fdwarm20": ["--model.causal.frontdoor.warmup_epochs=20"],
    "ortho10": ["--model.causal.diffusion.ortho_weight=0.1"],
    "diffw003": ["--model.causal.diffusion.loss_weight=0.03"],
    "pdrop10": ["--model.causal.projection.dropout=0.1"],
    "pdrop30": ["--model.causal.projection.dropout=0.3"],
    "cl_t04": ["--model.causal.contrast.temperature=0.4"],
    "dlr5e4": ["--train.dense_learning_rate=5e-4"],
    "dlr45e4": ["--train.dense_learning_rate=4.5e-3"],
    "tlr1e3": ["--train.learning_rate=1e-3", "--train.dense_learning_rate=1.5e-3"],
    "tlr2e3": ["--train.learning_rate=2e-3", "--train.dense_learning_rate=1.5e-3"],
    "detach_content": ["--model.causal.detach_content=true"],
    "init_n005": ["--model.init=normal", "--model.init_std=0.005"],
    "init_n0015": ["--model.init=normal", "--model.init_std=0.0015"],
    "init_n10": ["--model.init=normal", "--model.init_std=0.1"],
    "init_n03": ["--model.init=normal", "--model.init_std=0.03"],
    "cl_mediator_t1": ["--model.causal.contrast.view=mediator", "--model.causal.contrast.temperature=1.0",
                       "--model.causal.contrast.loss_weight=0.25"],
    "cl_mediator_w01": ["--model.causal.contrast.view=mediator", "--model.causal.contrast.loss_weight=0.01"],
    "fdl3": ["--model.causal.frontdoor.num_layers=3"],
    "refresh2": ["--model.causal.frontdoor.refresh_every=2"],
    "unweighted": ["--model.causal.frontdoor.weighted=false"],
}


def test_dns_probe_script_sets_the_candidate_pool_on_two_fresh_seeds(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_dns_probe.sh", tmp_path)
    assert names == [f"tiktok_causal{v}_s{s}" for s in (16, 17) for v in ("", "_dns4", "_dns16")]
    for line, m in zip(lines, (None, "4", "16") * 2):
        assert ("negative_candidates" in line) == (m is not None)
        assert m is None or f"--train.negative_candidates={m} " in line + " "
    lines = _dry_run("tiktok_dns_probe.sh", tmp_path, VARIANTS="dns16_warm5 dns16_warm10", SEEDS="16")[0][1:]
    assert all("--train.negative_candidates=16 " in ln + " " for ln in lines)
    assert ["--train.negative_candidate_epochs=5" in ln for ln in lines] == [True, False]
    assert ["--train.negative_candidate_epochs=10" in ln for ln in lines] == [False, True]
    lines = _dry_run("tiktok_dns_probe.sh", tmp_path, VARIANTS="dns16_warm3 dns64_warm5", SEEDS="16")[0][1:]
    assert lines[0].endswith("--train.negative_candidates=16 --train.negative_candidate_epochs=3")
    assert lines[1].endswith("--train.negative_candidates=64 --train.negative_candidate_epochs=5")
    lines = _dry_run("tiktok_dns_probe.sh", tmp_path, VARIANTS="dns16_warm5_drop30 dns16_warm5_reg1e3", SEEDS="16")[0][1:]
    assert all("--train.negative_candidates=16 --train.negative_candidate_epochs=5" in ln for ln in lines)
    assert ["--model.causal.backbone.edge_keep=0.7" in ln for ln in lines] == [True, False]
    assert ["--model.reg_weight=1e-3" in ln for ln in lines] == [False, True]
    lines = _dry_run("tiktok_dns_probe.sh", tmp_path, VARIANTS="dns16_warm5_nocross dns16_warm5_nofd", SEEDS="16")[0][1:]
    assert all("--train.negative_candidates=16 --train.negative_candidate_epochs=5" in ln for ln in lines)
    assert ["--model.causal.frontdoor.cross_sample=false" in ln for ln in lines] == [True, False]
    assert ["--model.causal.frontdoor.enabled=false" in ln for ln in lines] == [False, True]
    lines = _dry_run("tiktok_dns_probe.sh", tmp_path, VARIANTS=" ".join(DNS_PROBE_TAILS), SEEDS="16")[0][1:]
    assert len(lines) == len(DNS_PROBE_TAILS)
    for line, (variant, tail) in zip(lines, DNS_PROBE_TAILS.items()):
        assert line.split()[-len(tail):] == tail, variant
    bad = _script("tiktok_dns_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="dns2")
    assert bad.returncode != 0 and "unknown variant 'dns2'" in bad.stderr


def test_baseline_dns_script_offers_lightgcn_and_freedom_the_warm_start(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_baseline_dns.sh", tmp_path)
    assert names == [f"tiktok_{m}_dim128_dns_s{s}" for s in (0, 1, 2) for m in ("lightgcn", "freedom")]
    for line, name in zip(lines, names):
        args = line.split()
        assert f"configs/tiktok_{name.split('_')[1]}.yaml" in args and "--model.embedding_dim=128" in args
        assert "--train.negative_candidates=16" in args and "--train.negative_candidate_epochs=5" in args


def test_popularity_probe_script_ranks_with_the_offset_on_fresh_seeds(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_popularity_probe.sh", tmp_path)
    assert names == [f"tiktok_causal{v}_s{s}" for s in (22, 23, 24) for v in ("", "_pop020")]
    for line, name in zip(lines, names):
        assert "configs/tiktok_causal.yaml" in line.split()
        assert ("--eval.popularity_offset=-0.2" in line.split()) == ("pop020" in name)
    line = _dry_run("tiktok_popularity_probe.sh", tmp_path, VARIANTS="pop010", SEEDS="22")[0][1]
    assert line.endswith("--eval.popularity_offset=-0.1")
    bad = _script("tiktok_popularity_probe.sh", tmp_path, DRY_RUN="1", VARIANTS="pop999")
    assert bad.returncode != 0 and "unknown variant 'pop999'" in bad.stderr


def test_baseline_round8_script_offers_the_pools_and_the_offset(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_baseline_round8.sh", tmp_path)
    assert names == [n for s in (0, 1, 2) for n in (f"tiktok_lightgcn_dim128_dns2_s{s}",
                                                      f"tiktok_freedom_dim128_dns2_s{s}", f"tiktok_vbpr_dim128_pop_s{s}")]
    for line, name in zip(lines, names):
        args = line.split()
        assert f"configs/tiktok_{name.split('_')[1]}.yaml" in args and "--model.embedding_dim=128" in args
        pools = {"--train.negative_candidates=16", "--train.negative_candidate_epochs=5",
                 "--train.negative_candidates_after=2"}
        assert (pools <= set(args)) == ("dns2" in name)
        assert ("--eval.popularity_offset=0.2" in args) == ("vbpr" in name)



def test_baseline_round18_script_offers_the_normalisation_and_the_offset(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_baseline_round18.sh", tmp_path)
    assert names == [n for s in (0, 1, 2) for n in (f"tiktok_lightgcn_dim128_dns_norm060_s{s}",
                                                      f"tiktok_vbpr_dim128_pop_s{s}")]
    for line, name in zip(lines, names):
        args = line.split()
        assert f"configs/tiktok_{name.split('_')[1]}.yaml" in args and "--model.embedding_dim=128" in args
        assert ("--model.lightgcn.norm_power=0.6" in args) == ("lightgcn" in name)
        assert ("--train.negative_candidates=16" in args) == ("lightgcn" in name)
        assert ("--eval.popularity_offset=0.2" in args) == ("vbpr" in name)


def test_seed_spread_script_trains_the_configuration_and_lightgcn_on_fourteen_seeds(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_seed_spread.sh", tmp_path)
    seeds = range(16, 30)
    assert names == [n for s in seeds for n in (f"tiktok_causal_s{s}", f"tiktok_lightgcn_dim128_dns_norm060_s{s}")]
    for line, name in zip(lines, names):
        args = line.split()
        assert f"--run.seed={name.rsplit('_s', 1)[1]}" in args
        if "causal" in name:
            assert args[args.index("--config") + 1] == "configs/tiktok_causal.yaml" and "--model.embedding_dim=128" not in args
        else:
            assert args[args.index("--config") + 1] == "configs/tiktok_lightgcn.yaml"
            assert {"--model.embedding_dim=128", "--train.negative_candidates=16", "--train.negative_candidate_epochs=5",
                    "--model.lightgcn.norm_power=0.6"} <= set(args)


def test_test_picked_script_logs_the_test_curve_of_the_configuration_and_lightgcn(tmp_path: Path) -> None:
    lines, names = _dry_run("tiktok_test_picked.sh", tmp_path)
    seeds = (0, 1, 2, 16, 17, 18, 19, 20, 21)
    assert names == [n for s in seeds for n in (f"tiktok_causal_tc_s{s}", f"tiktok_lightgcn_dim128_dns_norm060_tc_s{s}")]
    for line, name in zip(lines, names):
        args = line.split()
        assert f"--run.seed={name.rsplit('_s', 1)[1]}" in args and "--eval.test_curve=true" in args
        if "causal" in name:  # the configuration as it is: no other override
            assert args[args.index("--config") + 1] == "configs/tiktok_causal.yaml"
            assert [a for a in args if a.startswith("--") and not a.startswith(("--config", "--run."))] == [
                "--eval.test_curve=true"]
        else:  # LightGCN's seeds-table setting, as in experiments/tiktok_seed_spread.sh
            assert args[args.index("--config") + 1] == "configs/tiktok_lightgcn.yaml"
            assert {"--model.embedding_dim=128", "--train.negative_candidates=16", "--train.negative_candidate_epochs=5",
                    "--model.lightgcn.norm_power=0.6"} <= set(args)
