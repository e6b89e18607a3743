"""Per-rank checkpoints of a sharded model: tables, optimizer, sampler RNG and run state.

Each rank writes `rank<r>.pt` with the *local* shards of its tables (TorchRec state dicts
hold ShardedTensors, which do not pickle across process groups) and its optimizer and
sampler state; rank 0 also writes `train_state.json`. Ray Train merges the ranks' files
into one checkpoint directory in the run's storage. Restoring copies the saved shards into
the live ones in place, so the world size and sharding plan must be the ones saved (checked,
with a clear error otherwise).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.distributed._shard.sharded_tensor import ShardedTensor

STATE_FILE = "train_state.json"


@dataclass
class TrainState:
    """Everything about progress that a resumed run needs, beyond tensors."""

    epoch: int = 0                      # epochs completed
    best_score: float = float("-inf")   # best valid select-metric so far
    best_epoch: int = -1
    bad_evals: int = 0                  # evaluations since the last improvement
    best_valid: dict = field(default_factory=dict)
    best_test: dict = field(default_factory=dict)
    best_test_valid_masked: dict = field(default_factory=dict)
    world_size: int = 1
    plan: str = ""
    history: list = field(default_factory=list)  # one dict of scalar metrics per epoch


def _local(value: Any) -> Any:
    """A state-dict value as plain local tensors (ShardedTensor -> its local shards)."""
    if isinstance(value, ShardedTensor):
        return [shard.tensor.detach().cpu().clone() for shard in value.local_shards()]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _local(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_local(v) for v in value)
    return value


def _copy_into(live: Any, saved: Any, key: str) -> Any:
    """Copy saved values into live tensors in place; returns the value to keep for non-tensors."""
    if isinstance(live, ShardedTensor):
        shards = live.local_shards()
        if len(shards) != len(saved):
            raise ValueError(f"checkpoint: '{key}' has {len(saved)} local shards saved, {len(shards)} live")
        for shard, tensor in zip(shards, saved):
            if shard.tensor.shape != tensor.shape:
                raise ValueError(f"checkpoint: '{key}' shard shape {tuple(tensor.shape)} saved, {tuple(shard.tensor.shape)} live")
            shard.tensor.copy_(tensor)
        return live
    if isinstance(live, torch.Tensor):
        if live.shape != saved.shape:
            raise ValueError(f"checkpoint: '{key}' shape {tuple(saved.shape)} saved, {tuple(live.shape)} live")
        live.copy_(saved)
        return live
    if isinstance(live, dict):
        missing = set(live) ^ set(saved)
        if missing:
            raise ValueError(f"checkpoint: keys differ under '{key}': {sorted(map(str, missing))[:5]}")
        return {k: _copy_into(live[k], saved[k], f"{key}.{k}") for k in live}
    return saved


def save(directory: str | os.PathLike, *, rank: int, model: torch.nn.Module, optimizers: dict[str, Any],
         sampler_state: dict, state: TrainState) -> None:
    """Write this rank's part of a checkpoint into `directory` (temporary name, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": _local(model.state_dict()),
        "optimizers": {name: _local(opt.state_dict()) for name, opt in optimizers.items()},
        "sampler": sampler_state,
        "rng": {"torch": torch.get_rng_state()},
        "world_size": state.world_size,
        "plan": state.plan,
    }
    tmp = directory / f".rank{rank}.pt.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, directory / f"rank{rank}.pt")
    if rank == 0:
        tmp_state = directory / f".{STATE_FILE}.tmp"
        tmp_state.write_text(json.dumps(asdict(state), indent=1))
        os.replace(tmp_state, directory / STATE_FILE)


def load(directory: str | os.PathLike, *, rank: int, model: torch.nn.Module, optimizers: dict[str, Any],
         world_size: int, plan: str) -> tuple[TrainState, dict]:
    """Restore this rank's part in place; returns the run state and the sampler state."""
    directory = Path(directory)
    path = directory / f"rank{rank}.pt"
    if not path.exists() or not (directory / STATE_FILE).exists():
        raise FileNotFoundError(f"checkpoint {directory} is incomplete: missing {path.name} or {STATE_FILE}")
    payload = torch.load(path, weights_only=False)
    if payload["world_size"] != world_size or payload["plan"] != plan:
        raise ValueError(
            f"checkpoint {directory} was written by {payload['world_size']} workers with plan "
            f"{payload['plan']!r}; this run has {world_size} workers with plan {plan!r}. "
            "Resume with the same scaling.num_workers and train.sharding.")
    live = model.state_dict()
    _copy_into(live, payload["model"], "model")
    for name, opt in optimizers.items():
        opt_state = opt.state_dict()
        if any(isinstance(v, ShardedTensor) for v in _leaves(opt_state)):
            # TorchRec's fused/keyed optimizers: state exists from construction, sharded.
            _copy_into(opt_state, payload["optimizers"][name], name)
        else:
            # Plain torch optimizers create their state lazily: hand the saved one back.
            opt.load_state_dict(payload["optimizers"][name])
    torch.set_rng_state(payload["rng"]["torch"])
    state = TrainState(**json.loads((directory / STATE_FILE).read_text()))
    return state, payload["sampler"]


def _leaves(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value
