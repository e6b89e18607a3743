"""A whole run on object storage: data read from s3://, checkpoints and results written to s3://.

Against the moto S3 server on 127.0.0.1 (tests/conftest.py): the dataset is prepared to s3://
with the public CLI, two workers train from it (each reading its share of the row groups
straight from the bucket), Ray Train stores its checkpoints in `s3://<bucket>/runs/<name>/`
through the fsspec filesystem with the endpoint, metrics.json and results.md land next to them,
and a second fit under the same name resumes from the checkpoint in the bucket.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import s3fs

from trainer.checkpoint import MANIFEST
from trainer.config import load_config
from trainer.main import fit
from trainer.results import write_results

REPO = Path(__file__).resolve().parents[2]

def test_unreachable_store_is_a_clear_error_before_ray_starts(capsys) -> None:
    """`python trainer/main.py` with a dead endpoint: exit code 2 and the URL named, in seconds."""
    import socket
    import time

    from trainer.main import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = json.dumps({"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}})
    started = time.monotonic()
    code = main(["--data.url=s3://nowhere/data", f"--data.storage_options={options}",
                 "--run.storage_path=s3://nowhere/runs", "--logging.progress=false"])
    assert code == 2 and time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert err.startswith("error: s3://nowhere/data: reading manifest.json failed after") and "endpoint" in err


@pytest.mark.ray
@pytest.mark.timeout(500)
def test_train_from_and_to_s3(ray_session, s3_server) -> None:
    _, options = s3_server
    fs = s3fs.S3FileSystem(**options)
    bucket = f"run-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    data = f"s3://{bucket}/data/tiny"
    subprocess.run([sys.executable, "-m", "data_loaders.prepare", "--from", "synthetic", "--users", "400",
                    "--items", "200", "--seed", "0", "--to", data, "--storage-options", json.dumps(options)],
                   check=True, cwd=REPO)

    def cfg(epochs: int):
        c = load_config(None, [f"--data.url={data}", f"--run.storage_path=s3://{bucket}/runs", "--run.name=s3run",
                               f"--train.epochs={epochs}", "--train.batch_size=256", "--train.learning_rate=0.01",
                               "--logging.progress=false", "--model.num_layers=1", "--scaling.num_workers=2",
                               "--scaling.cpus_per_worker=0.5"])
        c.data.storage_options = options
        return c

    first_cfg = cfg(2)
    first = fit(first_cfg)
    write_results(first, first_cfg)
    assert first["epoch"] == 2 and first["best_valid"]["recall@20"] > 0
    run = f"{bucket}/runs/s3run"
    fs.invalidate_cache()
    checkpoints = sorted(e["name"] for e in fs.ls(run, detail=True)
                         if e["type"] == "directory" and e["name"].rsplit("/", 1)[-1].startswith("checkpoint_"))
    assert checkpoints, fs.ls(run)
    manifest = json.loads(fs.cat_file(f"{checkpoints[-1]}/{MANIFEST}"))
    assert {"rank0.pt", "rank1.pt", "train_state.json"} <= set(manifest["files"])
    assert fs.size(f"{checkpoints[-1]}/rank1.pt") == manifest["files"]["rank1.pt"]["bytes"]
    metrics = json.loads(fs.cat_file(f"{run}/metrics.json"))
    assert metrics["best_test"]["recall@20"] == first["best_test"]["recall@20"]
    assert metrics["best_checkpoint"].rstrip("/").rsplit("/", 1)[-1] in {c.rsplit("/", 1)[-1] for c in checkpoints}
    assert "| recall |" in fs.cat_file(f"{run}/results.md").decode()

    second = fit(cfg(3))  # same name: resumes from the checkpoint in the bucket
    assert [r["epoch"] for r in second["resumes"]] == [2]
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3]
    assert second["history"][:2] == first["history"]
