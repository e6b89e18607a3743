"""The environment every test that starts Ray runs under (in-process or in a subprocess).

One place for it: the trainer, tune and cluster fixtures all need the same settings, and a copy
that drifts (say, wandb left online in one of them) fails only on a machine without a network.
The tests directory is on sys.path (pytest's rootdir conftest), so conftests import it by name.
"""

from __future__ import annotations

QUICK_RAY_ENV: dict[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",          # no usage report (no network on CI machines)
    "WANDB_MODE": "offline",                 # runs with logging.wandb: true never reach the network
    # Faster worker-group health checks: a 2-worker fit() drops from ~15 s to ~10 s.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "0.5",
}
