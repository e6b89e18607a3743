"""Smoke tests of the catalog-scale benchmark scripts at tiny sizes (they never touch docs/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("eval_speed", "scale", "profile_step", "mmrec_epoch", "spmm", "epoch_time")


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str) -> None:
    assert "usage:" in _run(f"benchmarks/{script}.py", "--help")


def test_eval_speed_tiny() -> None:
    out = _run("benchmarks/eval_speed.py", "--items", "500,2000", "--users", "300", "--baby", "", "--threads", "1",
               "--knn-items", "300,600", "--no-record")
    assert "| 500 random | 300 |" in out and "| 2,000 random | 300 |" in out
    assert "| 600 |" in out and "per modality at 1M items" in out


def test_profile_step_tiny(tiny_synthetic: str, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"data": {"url": tiny_synthetic}, "model": {"name": "lightgcn"},
                                      "train": {"batch_size": 64}}))
    out = _run("benchmarks/profile_step.py", "--config", str(config), "--steps", "1", "--warmup", "1",
               "--top", "3", "--no-record")
    assert "**lightgcn**" in out and "| op | self CPU ms / step |" in out

    # Which ops rank first depends on the machine's load (a busy host once put the optimizer and the
    # table lookup above every aten op in a top 3), so list enough rows that some aten op is among them.
    by_shape = _run("benchmarks/profile_step.py", "--config", str(config), "--steps", "1", "--warmup", "1",
                    "--top", "50", "--by-shape", "--no-record")
    assert "--by-shape`" in by_shape and "| aten::" in by_shape and "[[" in by_shape  # input shapes listed


def test_spmm_tiny(tiny_synthetic: str) -> None:
    out = _run("benchmarks/spmm.py", "--data", tiny_synthetic, "--repeats", "2", "--threads", "1", "--no-record")
    assert "| SparseOperator (embedding_bag) |" in out and "| torch CSR (`csr @ x`) |" in out


@pytest.mark.ray
def test_scale_tiny(ray_session, tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks import scale

    scale.main(["--sizes", "300,600", "--steps", "2", "--eval-users", "50", "--modalities", "image:4,text:4",
                "--data-dir", str(tmp_path / "data"), "--no-record"])
    out = capsys.readouterr().out
    assert "| 300 | 300 |" in out and "| 600 | 600 |" in out  # generation rows
    assert "2 of" in out and "x the linear prediction from 300" in out
    # A second run reuses the datasets instead of generating them again; the causal model's sampled mode.
    scale.main(["--model", "causal", "--optimizer", "adagrad", "--sizes", "300", "--steps", "1", "--eval-users", "20",
                "--modalities", "image:4,text:4", "--data-dir", str(tmp_path / "data"), "--no-record"])
    out = capsys.readouterr().out
    assert "reused (figures of its generation)" in out and "## Cost curve: sampled causal model" in out


def test_scale_section_names_keep_runs_over_other_sizes_apart() -> None:
    from benchmarks.scale import DEFAULT_SIZES, section_name

    assert section_name("fused", 200, DEFAULT_SIZES) == "scale-fused-200steps"
    assert section_name("fused", 0, "1000000") == "scale-fused-epoch-1m"
    assert section_name("dense", 0, "10000,100000") == "scale-dense-epoch-10k-100k"
    assert section_name("fused", 0, "1500") == "scale-fused-epoch-1500"
    assert section_name("fused", 200, DEFAULT_SIZES, "causal") == "scale-causal-fused-200steps"
