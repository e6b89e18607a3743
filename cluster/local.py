"""A local multi-process Ray cluster on 127.0.0.1: a head node plus worker nodes.

    python cluster/local.py start [--head-cpus 1] [--workers 1] [--worker-cpus 1] [--dashboard-port 8265]
    python cluster/local.py stop

The same Ray processes a real cluster runs (GCS, raylets, dashboard with its job server), so
`ray job submit --address http://127.0.0.1:8265 ...` works against it exactly as against a
cloud cluster started from ray_config.yaml. Every listener is on loopback:
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps Ray from replacing 127.0.0.1 by the machine's LAN
address (a node binds loopback only when its node IP is 127.0.0.1, all interfaces otherwise).

The head is `ray start --head --block`. Worker nodes are started through the same
`ray._private.node.Node` call that `ray start` makes, because `ray start` refuses to add a
worker node with that setting (it is meant for one-node clusters). Each node runs in the
foreground of its own process session, recorded in `<temp-dir>/cimrec-cluster.json`: `stop`
signals exactly those processes (never `ray stop`, which kills every Ray on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

STATE_FILE = "cimrec-cluster.json"
# Ray's Unix sockets live under the temp dir, and socket paths are limited to 107 bytes.
DEFAULT_TEMP_DIR = "/tmp/cimrec-ray"
READY = "worker-{}.ready"


class AlreadyRunning(RuntimeError):
    """A cluster's state file is already in the temp dir (stop it first, or use another --temp-dir)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Ray code that looks for "the local cluster" (Train's placement-group cleaner, the job
    # supervisor, `ray.init(address="auto")`) reads `$RAY_TMPDIR/ray/ray_current_cluster`;
    # /tmp/ray may name any other Ray on the machine. Point it at this cluster's head.
    env["RAY_TMPDIR"] = str(root)
    # Jobs' entrypoints run `python ...` with the cluster's PATH: make that this interpreter
    # (the project's .venv), where cimrec and its dependencies are installed.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # Ray turns token auth on for `ray start` whenever ~/.ray/auth_token exists (any earlier
    # `ray.init()` writes one), and the job CLI sends the token only with RAY_AUTH_MODE=token:
    # pin the mode so nodes and clients agree. Off here, on a loopback-only development cluster.
    env["RAY_AUTH_MODE"] = "disabled"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Two Prometheus exporters otherwise take fixed ports (44217, 44227): a second cluster on
    # the machine would collide with the first.
    env["AUTOSCALER_METRIC_PORT"] = str(_free_port())
    env["DASHBOARD_METRIC_PORT"] = str(_free_port())
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # the drain on SIGTERM serves Ray Serve; `stop` means stop
    return env


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "ab") as out:
        # A new session per node: its process group holds that node's processes and no others.
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def _wait(what: str, ready, procs: list[subprocess.Popen], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"local cluster: {what} did not come up "
                               f"({'exited' if dead else f'after {timeout:.0f} s'}); log {log}:\n{tail}")
        time.sleep(0.5)


def _dashboard_up(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/api/version", timeout=2).close()
    except urllib.error.HTTPError:
        return True  # it answers (401 without Ray's auth token, which `ray job` sends)
    except OSError:
        return False
    return True


def start(temp_dir: str, head_cpus: float, workers: int, worker_cpus: float, dashboard_port: int,
          timeout: float = 180.0) -> dict:
    """Start the head and worker nodes; returns the state written to `<temp_dir>/cimrec-cluster.json`."""
    root = Path(temp_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if (root / STATE_FILE).exists():
        raise AlreadyRunning(f"local cluster: {root / STATE_FILE} exists; run `python cluster/local.py stop"
                           f" --temp-dir {temp_dir}` first")
    env, log = _environment(root), root / "cimrec-cluster.log"
    address_file = root / "ray" / "ray_current_cluster"  # written by `ray start` once the head is up
    address_file.unlink(missing_ok=True)  # a stale one from an earlier cluster would be read as this one's
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    head = _spawn([ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--port=0",
                   f"--num-cpus={head_cpus:g}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                   "--dashboard-agent-listen-port=0", f"--ray-client-server-port={_free_port()}",
                   "--min-worker-port=0", "--max-worker-port=0", f"--temp-dir={root / 'ray'}",
                   "--disable-usage-stats"], log, env)
    procs = [head]
    state = {"pids": [head.pid], "dashboard": f"http://127.0.0.1:{dashboard_port}", "temp_dir": str(root)}
    # Recorded before anything can fail, so that `stop` can clean up a half-started cluster.
    (root / STATE_FILE).write_text(json.dumps(state))
    _wait("the head node", lambda: address_file.exists() and _dashboard_up(state["dashboard"]), procs, log, timeout)
    state["gcs_address"] = address_file.read_text().strip()
    for i in range(workers):
        procs.append(_spawn([sys.executable, os.path.abspath(__file__), "_worker", "--address", state["gcs_address"],
                             "--num-cpus", f"{worker_cpus:g}", "--temp-dir", str(root), "--index", str(i)], log, env))
        state["pids"].append(procs[-1].pid)
        (root / STATE_FILE).write_text(json.dumps(state))
    for i in range(workers):
        _wait(f"worker node {i}", (root / READY.format(i)).exists, procs, log, timeout)
    return state


def stop(temp_dir: str, grace: float = 40.0) -> None:
    """SIGTERM each node's process (each stops its own Ray processes), then SIGKILL leftovers."""
    path = Path(temp_dir) / STATE_FILE
    if not path.exists():
        print(f"local cluster: nothing to stop ({path} does not exist)")
        return
    pids = json.loads(path.read_text())["pids"]
    for pid in reversed(pids):  # workers first, the head last
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        _kill_group(pid)
    path.unlink()
    for leftover in [Path(temp_dir) / "ray" / "ray_current_cluster", *Path(temp_dir).glob(READY.format("*"))]:
        leftover.unlink(missing_ok=True)


def _kill_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL what is left of a node's process group (its session: only processes it started)
    until the group is empty, so that `stop` returns with every one of them gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child (the tests start and stop in one process); else probe.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _worker(address: str, num_cpus: float, temp_dir: str, index: int) -> None:
    """Run one worker node in the foreground until SIGTERM (what `ray start --block` does)."""
    import ray._private.node
    import ray._private.parameter

    # Its own temp dir: nodes sharing one would share `runtime_resources/`, and one node's
    # runtime-env agent would delete a job's working directory that another still runs in.
    params = ray._private.parameter.RayParams(
        node_ip_address="127.0.0.1", gcs_address=address, num_cpus=num_cpus,
        temp_dir=str(Path(temp_dir) / f"worker-{index}"),
        dashboard_agent_listen_port=0, min_worker_port=0, max_worker_port=0)
    # shutdown_at_exit: the node's processes are stopped when this process exits.
    ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    (Path(temp_dir) / READY.format(index)).touch()
    while True:
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("start", help="start a head and worker nodes on 127.0.0.1")
    up.add_argument("--head-cpus", type=float, default=1, help="CPUs the head node offers (explicit: Ray would claim every core)")
    up.add_argument("--workers", type=int, default=1, help="worker nodes")
    up.add_argument("--worker-cpus", type=float, default=1, help="CPUs each worker node offers")
    up.add_argument("--dashboard-port", type=int, default=8265, help="dashboard and job server port (on 127.0.0.1)")
    down = commands.add_parser("stop", help="stop the cluster started with the same --temp-dir")
    node = commands.add_parser("_worker", help=argparse.SUPPRESS)
    node.add_argument("--address", required=True)
    node.add_argument("--num-cpus", type=float, required=True)
    node.add_argument("--index", type=int, required=True)
    for sub in (up, down, node):
        sub.add_argument("--temp-dir", default=DEFAULT_TEMP_DIR,
                         help=f"the cluster's directory: head in ray/, worker nodes in worker-<i>/, logs, state (default {DEFAULT_TEMP_DIR})")
    args = parser.parse_args(argv)
    if args.command == "start":
        try:
            state = start(args.temp_dir, args.head_cpus, args.workers, args.worker_cpus, args.dashboard_port)
        except AlreadyRunning as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except RuntimeError as err:  # a node did not come up: stop what did
            print(f"error: {err}", file=sys.stderr)
            stop(args.temp_dir)
            return 1
        print(f"local Ray cluster: head + {args.workers} worker node(s) on 127.0.0.1; GCS {state['gcs_address']}; "
              f"jobs: {state['dashboard']}; logs: {args.temp_dir}; stop: python cluster/local.py stop --temp-dir {args.temp_dir}")
    elif args.command == "stop":
        stop(args.temp_dir)
    else:
        _worker(args.address, args.num_cpus, args.temp_dir, args.index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
