"""Per-rank checkpoints of a sharded model: tables, optimizer, sampler RNG and run state.

Each rank writes `rank<r>.pt` with the *local* shards of its tables (TorchRec state dicts
hold ShardedTensors, which do not pickle across process groups) and its optimizer and
sampler state; rank 0 also writes `train_state.json`. Ray Train merges the ranks' files
into one checkpoint directory in the run's storage. Restoring copies the saved shards into
the live ones in place, so the world size and sharding plan must be the ones saved (checked,
with a clear error otherwise).

Commit and recovery (`report`, `latest_complete`): every file of a checkpoint is listed, with its
size and sha256, in `manifest.json`, which rank 0 writes into the stored checkpoint *after*
every rank's upload has finished: a checkpoint directory without a manifest, with a file
missing, or with a file whose size or hash differs is incomplete. On resume the ranks walk the
run's checkpoint directories newest first (Ray's latest, then the older ones Ray kept) and load
the first complete one, warning about each one skipped. What is in a checkpoint is listed in
docs/DISTRIBUTED.md ("Checkpoints and failure recovery").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.distributed._shard.sharded_tensor import ShardedTensor

STATE_FILE = "train_state.json"
MANIFEST = "manifest.json"  # the commit record: written last, lists every file with size + sha256
_RANK_FILE = re.compile(r"^rank(\d+)\.pt$")
_DIR_EPOCH = re.compile(r"^checkpoint_epoch-(\d+)_")


@dataclass
class TrainState:
    """Everything about progress that a resumed run needs, beyond tensors."""

    epoch: int = 0                      # epochs completed
    best_score: float = float("-inf")   # best eval.select_metric on eval.select_split so far
    best_epoch: int = -1
    bad_evals: int = 0                  # evaluations since the last improvement
    learning_rate: float = 0.0          # the rate now in use (train.lr_schedule); 0 = train.learning_rate
    best_valid: dict = field(default_factory=dict)
    best_test: dict = field(default_factory=dict)
    best_test_valid_masked: dict = field(default_factory=dict)
    best_unbiased_test: dict = field(default_factory=dict)  # UNBIASED_TEST at the best epoch (simulator data)
    best_unbiased_valid: dict = field(default_factory=dict)  # UNBIASED_VALID at the best epoch (simulator data)
    world_size: int = 1
    plan: str = ""
    history: list = field(default_factory=list)  # one dict of scalar metrics per epoch
    resumes: list = field(default_factory=list)  # one dict per resume: epoch, checkpoint, skipped ones


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
         sampler_state: dict, state: TrainState, weight_average: dict | None = None) -> None:
    """Write this rank's part of a checkpoint into `directory` (temporary name, then rename).

    `weight_average`: the state of trainer/weight_average.py when `train.weight_average_decay` is
    on (this rank's averaged shards): resumed with the run, and what trainer/restore.py loads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": _local(model.state_dict()),
        "optimizers": {name: _local(opt.state_dict()) for name, opt in optimizers.items()},
        "sampler": sampler_state,
        "rng": {"torch": torch.get_rng_state()},
        "world_size": state.world_size,
        "plan": state.plan,
        "weight_average": weight_average,
    }
    tmp = directory / f".rank{rank}.pt.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, directory / f"rank{rank}.pt")
    if rank == 0:
        tmp_state = directory / f".{STATE_FILE}.tmp"
        tmp_state.write_text(json.dumps(asdict(state), indent=1))
        os.replace(tmp_state, directory / STATE_FILE)


def load(directory: str | os.PathLike, *, rank: int, model: torch.nn.Module, optimizers: dict[str, Any],
         world_size: int, plan: str, weight_average: Any = None) -> tuple[TrainState, dict]:
    """Restore this rank's part in place; returns the run state and the sampler state.

    `weight_average` (a trainer.weight_average.WeightAverage or None) gets the saved average; a
    checkpoint written without one starts it from the restored weights, with a warning."""
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
    if set(payload["optimizers"]) != set(optimizers):
        raise ValueError(
            f"checkpoint {directory} holds optimizer states {sorted(payload['optimizers'])}; this run has "
            f"{sorted(optimizers)}. Resume with the same train.dense_engine and train.embedding_kernel.")
    live = model.state_dict()
    # The model first: an optimizer holding its own copy of the weights (DeepSpeed's ZeRO master
    # partitions, trainer/dense_engine.py) then restores that copy from its saved state.
    _copy_into(live, payload["model"], "model")
    for name, opt in optimizers.items():
        opt_state = opt.state_dict()
        if any(isinstance(v, ShardedTensor) for v in _leaves(opt_state)):
            # TorchRec's fused/keyed optimizers: state exists from construction, sharded.
            _copy_into(opt_state, payload["optimizers"][name], name)
        else:
            # Plain torch optimizers create their state lazily: hand the saved one back.
            opt.load_state_dict(payload["optimizers"][name])
    if weight_average is not None:
        saved = payload.get("weight_average")
        if saved is None:
            _warn(f"checkpoint {directory} holds no weight average (written with train.weight_average_decay "
                  "= 0): the average starts from its weights")
            weight_average.reset()
        else:
            weight_average.load_state_dict(saved, source=f"checkpoint {directory}")
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


# ---- commit record (manifest) and recovery --------------------------------------------------------

def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather(obj: Any) -> list:
    """obj of every rank, in rank order (any backend; [obj] without a process group)."""
    if not _distributed():
        return [obj]
    import torch.distributed as dist

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any) -> Any:
    """Rank 0's obj on every rank."""
    if not _distributed():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier() -> None:
    if _distributed():
        import torch.distributed as dist

        dist.barrier()


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    print(f"[cimrec] WARNING: {message}", file=sys.stderr, flush=True)


def _sha256_file(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def local_entries(directory: str | os.PathLike) -> dict[str, dict]:
    """{relative path: {bytes, sha256}} of every file under a local checkpoint directory."""
    directory = Path(directory)
    entries = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            sha, size = _sha256_file(path)
            entries[path.relative_to(directory).as_posix()] = {"bytes": size, "sha256": sha}
    return entries


def _merge(per_rank: list[dict[str, dict]]) -> dict[str, dict]:
    files: dict[str, dict] = {}
    for r, entries in enumerate(per_rank):
        for rel, entry in entries.items():
            if rel in files and files[rel]["sha256"] != entry["sha256"]:
                raise RuntimeError(f"checkpoint: ranks {files[rel]['rank']} and {r} both wrote {rel} with different "
                                   "contents; Ray would keep one of them at random")
            files.setdefault(rel, {**entry, "rank": r})
    return files


def checkpoint_dir_name(epoch: int) -> str:
    """`checkpoint_epoch-000012_2026-01-31_12-00-00.123456`: sorts by epoch, then by time."""
    return f"checkpoint_epoch-{epoch:06d}_{datetime.now().strftime('%Y-%m-%d_%H-%M-%S.%f')}"


def report(metrics: dict[str, Any], directory: str | os.PathLike, *, rank: int, epoch: int) -> str | None:
    """Hand the ranks' local checkpoint `directory` to Ray (`ray.train.report`), then commit it.

    Every rank hashes its files; after every rank's upload has finished (a barrier after the
    report), rank 0 writes `manifest.json` into the stored checkpoint. Called by every rank
    with its own directory; returns the checkpoint's directory name (None if Ray skipped it).
    """
    import ray.train

    files = _merge(_gather(local_entries(directory)))
    name = _broadcast(checkpoint_dir_name(epoch))
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)),
                     checkpoint_dir_name=name)
    stored = ray.train.get_checkpoint()  # the persisted checkpoint just reported
    _barrier()  # every rank's files are in storage now
    if stored is None or posixpath.basename(stored.path.rstrip("/")) != name:
        if rank == 0:
            _warn(f"Ray did not store checkpoint {name} (a worker failed during the report?); not committed")
        return None
    if rank == 0:
        manifest = {"format": 1, "epoch": epoch, "created_at": datetime.now().isoformat(timespec="seconds"),
                    "files": files}
        commit(stored.filesystem, stored.path.rstrip("/"), manifest)
    return name


def commit(fs, path: str, manifest: dict) -> None:
    """Write `manifest.json` into the stored checkpoint at `path` (a pyarrow filesystem):
    under a temporary name, then moved into place."""
    from data_loaders.storage import retry

    data = json.dumps(manifest, indent=1).encode()
    tmp, final = f"{path}/.{MANIFEST}.tmp", f"{path}/{MANIFEST}"

    def write() -> None:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, final)
    retry(write, url=path, what=f"writing {MANIFEST}")


def _read_bytes(fs, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def check_listing(fs, path: str) -> tuple[dict | None, str]:
    """(manifest, "") if `path` has a manifest and every listed file with its size, else (None, why)."""
    import pyarrow.fs as pafs

    from data_loaders.storage import retry

    path = path.rstrip("/")
    try:
        manifest = json.loads(retry(lambda: _read_bytes(fs, f"{path}/{MANIFEST}"), url=path, what=f"reading {MANIFEST}"))
        files = manifest["files"]
    except FileNotFoundError:
        return None, f"no {MANIFEST} (never committed: written by a run that stopped before finishing it)"
    except (ValueError, KeyError, TypeError) as err:
        return None, f"{MANIFEST} is unreadable ({err})"
    infos = retry(lambda: fs.get_file_info(pafs.FileSelector(path, recursive=True)), url=path, what="listing")
    sizes = {info.path[len(path) + 1:]: info.size for info in infos if info.type == pafs.FileType.File}
    for rel, entry in files.items():
        if rel not in sizes:
            return None, f"{rel} is missing"
        if sizes[rel] != entry["bytes"]:
            return None, f"{rel} has {sizes[rel]} bytes, the manifest says {entry['bytes']} (truncated?)"
    return manifest, ""


def _fetch(fs, path: str, rank: int, local: Path) -> str:
    """Copy what `rank` needs of the checkpoint at `path` into `local`, checking every listed
    file's size and the sha256 of each file copied; returns "" or why the checkpoint is unusable.

    Other ranks' `rank<q>.pt` files are neither copied nor hashed here: their ranks check them.
    """
    from data_loaders.storage import retry

    manifest, why = check_listing(fs, path)
    if manifest is None:
        return why
    for rel, entry in manifest["files"].items():
        match = _RANK_FILE.match(rel)
        if match and int(match.group(1)) != rank:
            continue
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)

        def copy() -> str:
            sha = hashlib.sha256()
            with fs.open_input_stream(f"{path}/{rel}") as src, open(target, "wb") as dst:
                while chunk := src.read(4 << 20):
                    sha.update(chunk)
                    dst.write(chunk)
            return sha.hexdigest()
        if retry(copy, url=path, what=f"reading {rel}") != entry["sha256"]:
            return f"{rel} does not match its sha256 in the manifest (corrupt)"
    return ""


def _candidates(fs, latest: str) -> list[str]:
    """The run's checkpoint directories, newest first: by the epoch in the name, then the name."""
    import pyarrow.fs as pafs

    latest = latest.rstrip("/")
    parent = posixpath.dirname(latest)
    infos = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    paths = {info.path.rstrip("/") for info in infos
             if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")}
    paths.add(latest)

    def key(p: str) -> tuple[int, str]:
        base = posixpath.basename(p)
        match = _DIR_EPOCH.match(base)
        return (int(match.group(1)) if match else -1, base)
    return sorted(paths, key=key, reverse=True)


@dataclass
class Found:
    """The checkpoint a run resumes from: a local copy of what this rank needs of it."""

    directory: str
    name: str
    path: str                        # in the run's storage
    skipped: list = field(default_factory=list)  # [{checkpoint, reason}] newer ones found unusable

    def record(self, epoch: int) -> dict:
        return {"epoch": epoch, "checkpoint": self.name, "skipped": self.skipped}


@contextlib.contextmanager
def latest_complete(latest: Any, *, rank: int) -> Iterator[Found | None]:
    """The newest complete checkpoint of the run that `latest` (`ray.train.get_checkpoint()`,
    with `.path` and a pyarrow `.filesystem`) belongs to, fetched to a local directory for the
    body of the `with`; None when there is no checkpoint.

    Every rank takes part (collectives): rank 0 lists the run's checkpoint directories, each rank
    checks the candidate (manifest, sizes, its own files' hashes), and the first candidate that
    every rank accepts is used. Each one skipped is warned about. No complete one at all is an
    error rather than a silent restart from scratch.
    """
    if latest is None:
        yield None
        return
    fs = latest.filesystem
    candidates = _broadcast(_candidates(fs, latest.path) if rank == 0 or not _distributed() else None)
    skipped: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cimrec-restore-") as tmp:
        for i, path in enumerate(candidates):
            local = Path(tmp) / str(i)
            local.mkdir()
            verdicts = _gather(_fetch(fs, path, rank, local))
            if not any(verdicts):
                yield Found(str(local), posixpath.basename(path), path, skipped)
                return
            reasons = "; ".join(f"rank {r}: {why}" for r, why in enumerate(verdicts) if why)
            skipped.append({"checkpoint": posixpath.basename(path), "reason": reasons})
            if rank == 0:
                _warn(f"checkpoint {path} is incomplete or corrupt ({reasons}); skipping it in favour of an older one")
    raise RuntimeError(f"no complete checkpoint in {posixpath.dirname(latest.path.rstrip('/'))}: "
                       + "; ".join(f"{s['checkpoint']}: {s['reason']}" for s in skipped)
                       + ". Start the run under a new run.name (or delete its directory) to train from scratch.")


def best_checkpoint(candidates: list[tuple[Any, dict]], best_epoch: int) -> Any | None:
    """From Ray's `(checkpoint, metrics)` list: the committed checkpoint of the best epoch (the
    newest if that epoch was written twice, e.g. re-run after a fallback), else the best score."""
    if not candidates:
        return None
    of_epoch = sorted((c for c, m in candidates if m.get("epoch") == best_epoch),
                      key=lambda c: posixpath.basename(c.path.rstrip("/")), reverse=True)
    for ckpt in of_epoch:
        if check_listing(ckpt.filesystem, ckpt.path)[0] is not None:
            return ckpt
    if of_epoch:
        return of_epoch[0]
    return max(candidates, key=lambda cm: cm[1].get("checkpoint_score", cm[1].get("valid_score", float("-inf"))))[0]
