"""Checkpoint commit records, fallback past corrupt checkpoints, and recovery from a killed worker.

The first tests need no Ray: they build checkpoint directories by hand and check which one
`latest_complete` picks. The Ray tests are three 2-worker fits on the tiny dataset:

- an uninterrupted 3-epoch run;
- the same run with `run.fail_at_step` killing rank 1 (os._exit) in the middle of epoch 3 and
  `run.max_failures=1`: Ray restarts the group from the epoch-2 checkpoint and the run finishes
  with the same figures. Resumption is exact in this trainer (same batches, negatives, RNG and
  optimizer state; test_main.py), so the tolerance is float round-off only;
- the first run continued to 4 epochs after truncating a rank file of its latest checkpoint:
  a warning, the corrupt checkpoint skipped, and training resumed from the newest complete one.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs
import pytest

from trainer import checkpoint
from trainer.checkpoint import MANIFEST, commit, latest_complete, local_entries


# ---- no Ray: commit records and the choice of checkpoint ------------------------------------------

def _write_checkpoint(run: Path, epoch: int, payload: bytes, committed: bool = True) -> Path:
    path = run / checkpoint.checkpoint_dir_name(epoch)
    path.mkdir(parents=True)
    (path / "rank0.pt").write_bytes(payload)
    (path / "rank1.pt").write_bytes(payload[::-1])
    (path / "train_state.json").write_text(json.dumps({"epoch": epoch}))
    if committed:
        files = {rel: {**e, "rank": 0} for rel, e in local_entries(path).items()}
        commit(pafs.LocalFileSystem(), str(path), {"format": 1, "epoch": epoch, "files": files})
    return path


def _latest(path: Path) -> SimpleNamespace:  # what ray.train.get_checkpoint() gives: .path, .filesystem
    return SimpleNamespace(path=str(path), filesystem=pafs.LocalFileSystem())


def test_latest_complete_skips_corrupt_and_uncommitted_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    one, two, three = (_write_checkpoint(run, e, bytes([e]) * 1000) for e in (1, 2, 3))
    four = _write_checkpoint(run, 4, b"\x04" * 1000, committed=False)  # died before its manifest
    assert sorted(json.loads((one / MANIFEST).read_text())["files"]) == ["rank0.pt", "rank1.pt", "train_state.json"]

    with pytest.warns(RuntimeWarning, match="no manifest.json"):
        with latest_complete(_latest(four), rank=0) as found:
            assert found.name == three.name
            assert (Path(found.directory) / "rank0.pt").read_bytes() == bytes([3]) * 1000
            assert not (Path(found.directory) / "rank1.pt").exists()  # another rank's shards: not fetched
            assert found.record(3)["skipped"][0]["checkpoint"] == four.name

    with open(three / "rank0.pt", "r+b") as f:  # half-written: truncated
        f.truncate(100)
    with open(two / "rank1.pt", "r+b") as f:  # same size, one byte flipped: only rank 1 hashes it
        f.write(b"\xff")
    with pytest.warns(RuntimeWarning) as caught:
        with latest_complete(_latest(four), rank=0) as found:
            assert found.name == two.name  # rank 0 alone cannot see rank1.pt's flipped byte
            assert [s["checkpoint"] for s in found.skipped] == [four.name, three.name]
            assert "100 bytes" in found.skipped[1]["reason"]
    assert len(caught) == 2
    with latest_complete(_latest(four), rank=1) as found:  # (only rank 0 warns)
        assert found.name == one.name  # rank 1 hashes its own file of checkpoint 2 and rejects it
        assert "sha256" in found.skipped[2]["reason"]

    (one / MANIFEST).unlink()
    with pytest.raises(RuntimeError, match="no complete checkpoint"):
        with latest_complete(_latest(four), rank=1):  # rank 1: nothing left (2 corrupt for it, 1 uncommitted)
            pass
    with latest_complete(None, rank=0) as found:
        assert found is None


# ---- Ray: a killed worker, a corrupt latest checkpoint -----------------------------------------

def _cfg(data: str, runs: Path, name: str, **overrides):
    from trainer.config import load_config

    args = [f"--data.url={data}", f"--run.storage_path={runs}", f"--run.name={name}", "--train.epochs=3",
            "--train.batch_size=256", "--train.learning_rate=0.01", "--train.eval_every=1", "--train.patience=10",
            "--logging.progress=false", "--model.num_layers=1", "--scaling.num_workers=2",
            "--scaling.cpus_per_worker=0.5"]
    args += [f"--{k}={v}" for k, v in overrides.items()]
    return load_config(None, args)


def _steps_per_epoch(data: str, batch_size: int, world_size: int) -> int:
    from data_loaders.format import Split
    from data_loaders.graph import interaction_csr
    from data_loaders.sampler import BPRSampler
    from data_loaders.stream import open_dataset

    train = interaction_csr(open_dataset(data), Split.TRAIN)
    return BPRSampler(train, batch_size=batch_size, world_size=world_size).steps_per_epoch()


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))


@pytest.mark.ray
@pytest.mark.timeout(500)
def test_killed_worker_recovers_and_corrupt_checkpoint_is_skipped(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    from trainer.main import fit

    straight = fit(_cfg(tiny_synthetic, tmp_path, "straight"))
    assert straight["epoch"] == 3 and straight["resumes"] == []
    for ckpt in _checkpoints(tmp_path / "straight"):  # every stored checkpoint is committed
        manifest = json.loads((ckpt / MANIFEST).read_text())
        assert {"rank0.pt", "rank1.pt", "train_state.json"} <= set(manifest["files"])

    # (a) rank 1 dies in the middle of epoch 3; Ray restarts the group from the epoch-2 checkpoint.
    steps = _steps_per_epoch(tiny_synthetic, 256, 2)
    fail_at = 2 * steps + steps // 2
    killed = fit(_cfg(tiny_synthetic, tmp_path, "killed", **{"run.max_failures": 1, "run.fail_at_step": fail_at}))
    assert (tmp_path / "killed" / f".fail_at_step-{fail_at}").exists()  # it did die
    assert [r["epoch"] for r in killed["resumes"]] == [2] and killed["resumes"][0]["skipped"] == []
    assert [h["epoch"] for h in killed["history"]] == [1, 2, 3]
    for a, b in zip(straight["history"], killed["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert killed["best_valid"]["recall@20"] == pytest.approx(straight["best_valid"]["recall@20"], abs=1e-9)
    assert killed["best_test"]["recall@20"] == pytest.approx(straight["best_test"]["recall@20"], abs=1e-9)

    # (b) the latest checkpoint of the finished run is truncated; continuing the run skips it.
    run_dir = tmp_path / "straight"
    latest = _checkpoints(run_dir)[-1]
    assert latest.name.startswith("checkpoint_epoch-000003")
    with open(latest / "rank1.pt", "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    older = [p for p in _checkpoints(run_dir) if p != latest]
    expected_epoch = max(json.loads((p / "train_state.json").read_text())["epoch"] for p in older)
    more = fit(_cfg(tiny_synthetic, tmp_path, "straight", **{"train.epochs": 4}))
    resume = more["resumes"][-1]
    assert resume["epoch"] == expected_epoch
    assert [s["checkpoint"] for s in resume["skipped"]] == [latest.name]
    assert "rank1.pt" in resume["skipped"][0]["reason"]
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3, 4]
    for a, b in zip(straight["history"], more["history"][:3]):  # epoch 3 re-run: the same numbers
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert not more["best_checkpoint"].endswith(latest.name)  # never the corrupt one
