"""Submit a command to a Ray cluster as a job, with this repository as its working directory.

    python cluster/submit.py [--address http://127.0.0.1:8265] [--logs-to URL] -- python trainer/main.py --config ...

A thin wrapper over `ray job submit --working-dir <repo> -- ...`. It adds what the bare command
leaves to the user: the upload excludes the virtualenv, datasets, run outputs and .git (Ray
already skips what .gitignore lists; this does not depend on that file), it waits for the job
and returns its exit status, and with `--logs-to` it copies the job's log to
`<URL>/<submission id>.log` (any fsspec URL), next to the run's results in storage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUDES = [".git", ".venv", "data", "runs", "logs", "wandb", ".pytest_cache", "*.egg-info", "__pycache__"]


def _ray_cli() -> str:
    # The `ray` beside this interpreter (the project's .venv), whatever PATH says.
    beside = os.path.join(os.path.dirname(sys.executable), "ray")
    return beside if os.path.exists(beside) else "ray"


def submit(entrypoint: list[str], address: str, logs_to: str | None = None) -> int:
    """Run `entrypoint` on the cluster at `address` (the dashboard URL); returns the job's exit status."""
    submission_id = f"cimrec-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    command = [_ray_cli(), "job", "submit", "--address", address, "--submission-id", submission_id,
               "--working-dir", REPO, "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--", *entrypoint]
    status = subprocess.run(command).returncode  # streams the job's output until it ends
    if logs_to:
        import fsspec

        logs = subprocess.run([_ray_cli(), "job", "logs", "--address", address, submission_id],
                              capture_output=True, text=True, check=True).stdout
        url = f"{logs_to.rstrip('/')}/{submission_id}.log"
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(os.path.dirname(path), exist_ok=True)
        with fs.open(path, "w") as f:
            f.write(logs)
        print(f"[cimrec] job log: {url}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                        help="the cluster's dashboard URL (default: $RAY_API_SERVER_ADDRESS or http://127.0.0.1:8265)")
    parser.add_argument("--logs-to", help="fsspec URL (directory) to copy the job's log to when it ends")
    parser.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- command to run, e.g. python trainer/main.py ...")
    args = parser.parse_args(argv)
    entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not entrypoint:
        parser.error("give the command to run after --")
    return submit(entrypoint, args.address, args.logs_to)


if __name__ == "__main__":
    sys.exit(main())
