"""Rebuild a finished run's model in one process, on CPU, without Ray or torch.distributed.

`restore_run(RUN_DIR)` reads `metrics.json` (the full config and `best_checkpoint`), opens the
dataset at the config's `data.url`, builds the model with trainer/build.py exactly as trainer/loop.py
does (unsharded: a plain TorchRec EmbeddingBagCollection needs no process group) and loads the best
checkpoint's weights into it. Used by `python -m trainer.explain` and its tests.

What a checkpoint holds (trainer/checkpoint.py): one `rank<r>.pt` per rank with that rank's
`model.state_dict()`, where every sharded table is a *list of its local shard tensors* and every
other entry (dense parameters and buffers, replicated on all ranks) a plain tensor. The shards'
offsets are NOT stored, so the full tables are reassembled from the sharding type recorded in
the checkpoint's plan line and the rank order:

- table-wise: the one rank holding a shard holds the whole table;
- column-wise: one column block per rank, in rank order (the hand-written plan places block r on
  rank r; TorchRec blocks are equal and multiples of 4 wide);
- row-wise: one row block per rank, in rank order (TorchRec's row-wise plan does the same);
- data-parallel: a plain replicated tensor (rank 0's is taken).

The assembled shape is checked against the freshly built model's, so a layout that breaks these
assumptions (e.g. a GPU planner's table-row-wise plan with several shards per rank in another
order) fails with an error naming the table rather than loading wrong rows.

Per-epoch state that is not a parameter comes back through the state dict because it is held in
persistent buffers: the front-door's kept mask, edge weights, edge scores and last refresh epoch,
the codebooks' EMA counts and sums, `initialized` and prior counts, and the front-door's own
centroids. The code vectors themselves are either buffers or (`backdoor.store: table`) a TorchRec
table sharded with the ID tables, reassembled like them. `start_epoch` is deliberately NOT called: the checkpoint is written after the best
epoch's steps and evaluation, so its buffers are exactly what that evaluation used, while a
`start_epoch` call would refresh the prior (and maybe the subgraph) as the *next* epoch does.
Data (item features, adjacency, training edges) is rebuilt from the dataset.

A run with `train.weight_average_decay` evaluated with averaged weights; its checkpoints hold the
average next to the live weights, and the average is what is loaded (the figures the run
reported come back), unless `load_checkpoint_state(..., live_weights=True)`.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import fsspec
import torch
from torch import nn

from data_loaders.format import Split
from data_loaders.graph import CSR, interaction_csr
from data_loaders.stream import Dataset, open_dataset
from data_loaders.format import DatasetError
from trainer.build import build_from_config  # also imported from here (trainer.restore.build_from_config)
from trainer.checkpoint import STATE_FILE, TrainState
from trainer.config import Config, ConfigError

PLAN_LINE = re.compile(r"^(?P<table>\S+): (?P<sharding>\w+) \((?P<kernel>\w+)\) on ")


class RestoreError(ValueError):
    """A run directory, checkpoint or dataset that cannot be turned back into its model."""


@dataclass
class RestoredRun:
    run_dir: str
    cfg: Config
    metrics: dict[str, Any]     # metrics.json as written by trainer/results.py
    checkpoint: str             # the checkpoint directory loaded
    state: TrainState           # its train_state.json (state.epoch = the epoch it was written after)
    model: nn.Module            # in eval mode, on CPU
    dataset: Dataset
    splits: dict[Split, CSR]    # TRAIN, VALID, TEST


def read_metrics(run_dir: str) -> dict[str, Any]:
    fs, root = fsspec.core.url_to_fs(run_dir)
    if not fs.isdir(root):
        raise RestoreError(f"run directory {run_dir} not found")
    path = posixpath.join(root, "metrics.json")
    if not fs.exists(path):
        raise RestoreError(f"{run_dir}/metrics.json not found: trainer/main.py writes it when a run finishes")
    with fs.open(path, "r") as f:
        metrics = json.load(f)
    if "config" not in metrics:
        raise RestoreError(f"{run_dir}/metrics.json has no 'config' field")
    return metrics


def find_checkpoint(run_dir: str, metrics: dict[str, Any]) -> str:
    """The best checkpoint: metrics.json's `best_checkpoint`, looked up in `run_dir` first (the
    recorded path is absolute and goes stale when a run directory is moved), else the checkpoint
    whose train_state.json says it was written after the best epoch."""
    fs, root = fsspec.core.url_to_fs(run_dir)
    recorded = metrics.get("best_checkpoint")
    candidates = [posixpath.join(root, posixpath.basename(str(recorded).rstrip("/"))), str(recorded)] if recorded else []
    for path in candidates:
        if fs.exists(posixpath.join(path, STATE_FILE)):
            return path
    found = checkpoints_by_epoch(run_dir)
    if not found:
        raise RestoreError(f"no checkpoint in {run_dir}: metrics.json best_checkpoint={recorded!r} and no "
                           f"checkpoint_*/{STATE_FILE} in the directory")
    best_epoch = metrics.get("best_epoch")
    if best_epoch in found:
        return found[best_epoch]
    raise RestoreError(f"no checkpoint of the best epoch {best_epoch} in {run_dir} (found {len(found)}: "
                       f"{sorted(posixpath.basename(p) for p in found.values())}; metrics.json best_checkpoint={recorded!r})")


def checkpoints_by_epoch(run_dir: str) -> dict[Any, str]:
    """{epoch in its train_state.json: path} of every complete checkpoint directory of `run_dir`."""
    fs, root = fsspec.core.url_to_fs(run_dir)
    found: dict[Any, str] = {}
    for path in sorted(fs.ls(root, detail=False)):
        if posixpath.basename(path).startswith("checkpoint_") and fs.exists(posixpath.join(path, STATE_FILE)):
            with fs.open(posixpath.join(path, STATE_FILE), "r") as f:
                found.setdefault(json.load(f).get("epoch"), path)  # the first (sorted) of a repeated epoch
    return found


def plan_types(plan: str) -> dict[str, str]:
    """Sharding type per table key prefix, from the plan line: {"tables.ebc.user": "table_wise", ...}."""
    types = {}
    for line in plan.split("; "):
        match = PLAN_LINE.match(line.strip())
        if match:
            types[match["table"]] = match["sharding"]
    return types


def _table_type(key: str, types: dict[str, str]) -> str | None:
    """The plan's sharding type of state-dict key `key`, e.g. "tables.ebc.embedding_bags.user.weight".

    A collection shared by two parents has several module paths (CausalRec holds the tables as
    `tables` and `backbone.tables`): the plan names one, the state dict also the other, so paths
    match when one ends with the other.
    """
    match = re.fullmatch(r"(?P<path>.+)\.embedding_bags\.(?P<name>[^.]+)\.weight", key)
    if not match:
        return None
    for table, sharding in types.items():
        path, _, name = table.rpartition(".")
        if name == match["name"] and (path == match["path"] or path.endswith("." + match["path"])
                                      or match["path"].endswith("." + path)):
            return sharding
    return None


def assemble(per_rank: list[dict[str, Any]], expected: dict[str, torch.Tensor], plan: str,
             where: str) -> dict[str, torch.Tensor]:
    """One full state dict from the ranks' saved model states (see the module docstring)."""
    keys = set(expected)
    for r, saved in enumerate(per_rank):
        if set(saved) != keys:
            diff = sorted(set(saved) ^ keys)[:5]
            raise RestoreError(f"{where}: rank{r}.pt's model keys differ from the model the config builds: {diff}")
    types = plan_types(plan)
    out = {}
    for key, live in expected.items():
        values = [saved[key] for saved in per_rank]
        if not isinstance(values[0], list):  # replicated (dense parameter, buffer, data-parallel table)
            out[key] = values[0]
            continue
        shards = [t for v in values for t in v]  # rank order
        sharding = _table_type(key, types)
        if len(shards) == 1:  # table-wise (or any plan on one rank)
            full = shards[0]
        elif sharding in ("column_wise", "table_column_wise"):
            full = torch.cat(shards, dim=1)
        elif sharding in ("row_wise", "table_row_wise"):
            full = torch.cat(shards, dim=0)
        else:
            raise RestoreError(f"{where}: '{key}' has {len(shards)} shards {[tuple(s.shape) for s in shards]} "
                               f"under plan {sharding!r}; cannot reassemble without offsets")
        if full.shape != live.shape:
            raise RestoreError(f"{where}: '{key}' reassembled ({sharding}) to shape {tuple(full.shape)}, the "
                               f"model has {tuple(live.shape)}; the dataset or config differs from the run's")
        out[key] = full
    return out


def with_weight_average(model_state: dict[str, Any], shadow: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """A rank's saved state dict with its averaged weights in place of the live ones
    (`train.weight_average_decay`: the run selected and reported with those)."""
    out = dict(model_state)
    for name, tensor in shadow.items():
        if name not in out:
            raise RestoreError(f"{where}: the weight average holds '{name}', the saved model does not")
        if isinstance(out[name], list):  # a sharded table: this rank's shards (one per rank in our plans)
            if len(out[name]) != 1:
                raise RestoreError(f"{where}: '{name}' has {len(out[name])} local shards; the weight average "
                                   "holds one")
            out[name] = [tensor]
        else:
            out[name] = tensor
    return out


def load_checkpoint_state(checkpoint: str, expected: dict[str, torch.Tensor],
                          live_weights: bool = False) -> tuple[dict[str, torch.Tensor], TrainState]:
    """The full (reassembled) state dict of `checkpoint` and its run state: the weights its
    evaluation used, i.e. the weight average when the run kept one, unless `live_weights`."""
    fs, root = fsspec.core.url_to_fs(checkpoint)
    with fs.open(posixpath.join(root, STATE_FILE), "r") as f:
        state = TrainState(**json.load(f))
    per_rank = []
    for r in range(state.world_size):
        path = posixpath.join(root, f"rank{r}.pt")
        if not fs.exists(path):
            raise RestoreError(f"checkpoint {checkpoint} was written by {state.world_size} workers but rank{r}.pt "
                               "is missing")
        with fs.open(path, "rb") as f:
            payload = torch.load(f, map_location="cpu", weights_only=False)
        average = payload.get("weight_average")  # absent from checkpoints older than the option
        model_state = payload["model"]  # optimizer and sampler state dropped at once
        if average is not None and not live_weights:
            model_state = with_weight_average(model_state, average["shadow"], f"{checkpoint}/rank{r}.pt")
        per_rank.append(model_state)
    return assemble(per_rank, expected, state.plan, checkpoint), state


def checkpoint_of_epoch(run_dir: str, epoch: int) -> str:
    """The checkpoint of `run_dir` written after epoch `epoch` (Ray keeps only some: the error lists them)."""
    found = checkpoints_by_epoch(run_dir)
    if epoch not in found:
        raise RestoreError(f"no checkpoint of epoch {epoch} in {run_dir}; the run kept epochs "
                           f"{sorted(e for e in found if isinstance(e, int))}")
    return found[epoch]


def restore_run(run_dir: str, data_url: str | None = None, epoch: int | None = None) -> RestoredRun:
    """Model of `run_dir`'s best checkpoint (or the one after `epoch`) on CPU, in eval mode;
    `data_url` overrides the config's."""
    run_dir = run_dir.rstrip("/")
    metrics = read_metrics(run_dir)
    try:
        cfg = Config.from_dict(metrics["config"], source=f"{run_dir}/metrics.json")
    except ConfigError as err:  # e.g. a run of an older version whose config keys were renamed since
        raise RestoreError(f"{err} (the run's config does not load with this version of the code)") from None
    checkpoint = find_checkpoint(run_dir, metrics) if epoch is None else checkpoint_of_epoch(run_dir, epoch)
    url = data_url or cfg.data.url
    try:
        dataset = open_dataset(url, storage_options=cfg.data.storage_options or None)
    except (DatasetError, FileNotFoundError) as err:
        raise RestoreError(f"cannot open the run's dataset at data.url={url!r}: {err} (pass --data URL if it moved)") from None
    splits = {s: interaction_csr(dataset, s) for s in (Split.TRAIN, Split.VALID, Split.TEST)}
    model = build_from_config(cfg, dataset, splits)
    state_dict, state = load_checkpoint_state(checkpoint, model.state_dict())
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise RestoreError(f"checkpoint {checkpoint} does not fit the model built from {url}: {err}") from None
    model.eval()
    return RestoredRun(run_dir, cfg, metrics, checkpoint, state, model, dataset, splits)
