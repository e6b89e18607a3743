"""Shard a model's TorchRec ID tables with DistributedModelParallel (one path for any world size).

`shard_model` plans, shards and returns the wrapped model with the optimizers that step it.
What was measured on 2 gloo CPU ranks with TorchRec 1.8 (tests/trainer/test_sharding.py):

- table-, column-, row-wise and data-parallel tables all train; every rank looks up its own ids.
- The planner proposes the *dense* kernel only for data-parallel tables (and rejects a dense
  table-wise plan), although TorchRec's dense kernel trains table/column/row-wise shards
  correctly. So dense plans are written by hand here; the planner is used for `auto` + fused.
- The planner never proposes row-wise on CPU; row-wise is hand-written too. Its backward
  all-gathers equal-sized gradients, so every rank must look up the same number of ids per
  call (full-graph lookups do; per-rank batches must then be equal).
- FBGEMM's fused optimizers on CPU: SGD, Adagrad, row-wise Adagrad work (SGD and Adagrad match
  torch's to float precision); Adam and LAMB raise; weight decay is silently ignored in every
  weight-decay mode. Both are rejected here with a ValueError instead.
- Gradient scale: TorchRec divides table gradients by the world size in its collectives
  (`GRADIENT_DIVISION`) and DDP averages data-parallel ones, so table gradients are means over
  ranks like every DDP gradient. W ranks on B/W samples step exactly like 1 rank on B.
- The dense kernel makes autograd warn that fbgemm's dense lookup has no autograd kernel
  registered ("may lead to silently incorrect behavior"); its gradients are nonetheless the
  exact ones (compared with unsharded torch to 1e-7 in the tests).
- A module built on a real device is re-initialised by sharding (TorchRec calls each shard's
  `init_fn`), so the full tables are captured first, broadcast from rank 0 and copied into the
  shards: every world size and plan starts from the same weights.
- The model's other (dense) parameters are DDP's by default (DMP wraps the model in DDP, tables
  excluded) and stepped by the "dense" torch optimizer. With `dense_data_parallel=False` DMP's DDP
  leaves them out too and no optimizer here steps them: an external engine owns them
  (trainer/dense_engine.py, DeepSpeed), so their gradients are reduced exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
import torch.distributed as dist
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from fbgemm_gpu.tbe.config.optimizer_config import WeightDecayMode
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.comm import get_local_size
from torchrec.distributed.comm_ops import get_gradient_division
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DefaultDataParallelWrapper
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.types import KernelConfig, TopologyFactory, TrainerConfig
from torchrec.distributed.sharding_plan import (ParameterShardingGenerator, column_wise,
                                                construct_module_sharding_plan, data_parallel, row_wise,
                                                table_wise)
from torchrec.distributed.types import ShardingEnv, ShardingPlan, ShardingType
from torchrec.optim.optimizers import in_backward_optimizer_filter


class Sharding(str, Enum):
    AUTO = "auto"                  # planner (fused) / table-wise (dense); table-wise on CPU with 2+ ranks
    TABLE_WISE = "table_wise"      # each table whole on one rank, tables spread over ranks
    COLUMN_WISE = "column_wise"    # every table split into equal column blocks, one per rank
    ROW_WISE = "row_wise"          # every table split into row blocks, one per rank
    DATA_PARALLEL = "data_parallel"  # every table replicated, gradients all-reduced (dense kernel only)


class Kernel(str, Enum):
    FUSED = "fused"  # FBGEMM applies the optimizer inside backward
    DENSE = "dense"  # plain tables, stepped by a torch optimizer (the MMRec-equivalent path)


_FUSED_OPTIMIZERS = {
    "sgd": EmbOptimType.EXACT_SGD,
    "adagrad": EmbOptimType.EXACT_ADAGRAD,
    "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    "adam": EmbOptimType.ADAM,
    "lamb": EmbOptimType.LAMB,
}
_FUSED_GPU_ONLY = {"adam", "lamb"}  # FBGEMM asserts "not supported in CPU mode"
_DENSE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
_TORCH_ADAGRAD_EPS = 1e-10  # torch.optim.Adagrad's default; FBGEMM's is 1e-8


@dataclass
class ShardedModel:
    """What `shard_model` returns.

    `optimizers` maps a name to an optimizer to `zero_grad()` / `step()` every iteration and to
    checkpoint: "fused" is DMP's fused optimizer (its step only applies the current learning
    rate; the update happened in backward), "dense" a torch optimizer over every parameter not
    updated in backward (all tables with kernel="dense"; with `dense_data_parallel=False` only
    those tables, and named "tables"). `plan_summary` is one line per table, identical on every rank.
    `dense_parameters` are the model's non-table parameters by name (the same objects as in
    `model.module`), `dense_data_parallel` whether DMP's DDP reduces their gradients.
    """

    model: DistributedModelParallel
    optimizers: dict[str, torch.optim.Optimizer]
    plan: ShardingPlan
    plan_summary: str
    dense_parameters: dict[str, nn.Parameter] = field(default_factory=dict)
    dense_data_parallel: bool = True


def shard_model(model: nn.Module, *, device: torch.device, pg: dist.ProcessGroup | None = None,
                sharding: Sharding | str = Sharding.AUTO, kernel: Kernel | str = Kernel.FUSED,
                optimizer: str = "adagrad", lr: float, weight_decay: float = 0.0,
                world_size: int, dense_data_parallel: bool = True, dense_weight_decay: float = 0.0,
                dense_lr: float | None = None) -> ShardedModel:
    """Shard every EmbeddingBagCollection in `model` over `pg` (default: the world group).

    Collective: every rank of `pg` calls it with the same arguments. Bad options raise a
    ValueError before any communication, identically on every rank. `dense_data_parallel=False`
    leaves the non-table parameters to an external engine: no DDP, no optimizer here.
    `dense_weight_decay` is added to `weight_decay` for the non-table parameters this optimizer steps;
    `dense_lr` (None: `lr`) is their rate, kept as the group's `lr_scale` = dense_lr / lr so that a
    schedule's `Stepper.set_learning_rate` moves both rates by the same factor.
    """
    device = torch.device(device)
    sharding, kernel = _parse(Sharding, sharding, "sharding"), _parse(Kernel, kernel, "kernel")
    collections = [(path, m) for path, m in model.named_modules() if isinstance(m, EmbeddingBagCollection)]
    if not collections:
        raise ValueError("shard_model: the model has no TorchRec EmbeddingBagCollection to shard")
    fused_params = _check_options(collections, device, sharding, kernel, optimizer, lr, weight_decay, world_size)
    scale = dense_lr_scale(lr, dense_lr)  # before any communication, as the other checks
    table_params = {id(p) for _, ebc in collections for p in ebc.parameters()}
    dense_parameters = {name: p for name, p in model.named_parameters() if id(p) not in table_params}
    dense_names = list(dense_parameters)
    if dense_names and optimizer not in _DENSE_OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r} has no torch equivalent for the model's non-table parameters "
                         f"{dense_names[:3]}; use one of {sorted(_DENSE_OPTIMIZERS)}")
    pg = pg if pg is not None else dist.group.WORLD
    if pg is None or pg.size() != world_size:
        raise ValueError(f"shard_model: world_size={world_size} but the process group has "
                         f"{'no' if pg is None else pg.size()} ranks (initialise torch.distributed first)")
    if not get_gradient_division():
        raise RuntimeError("TorchRec gradient division is off: table gradients would be summed over ranks, "
                           "not averaged like DDP's (torchrec.distributed.comm_ops.set_gradient_division)")

    full_weights = _broadcast_full_weights(collections, pg)
    sharder = EmbeddingBagCollectionSharder(fused_params=fused_params)
    if sharding is Sharding.AUTO and kernel is Kernel.FUSED:
        plan = _planner_plan(model, sharder, collections, device, pg, world_size)
    else:
        plan = ShardingPlan({path: construct_module_sharding_plan(
            ebc, _hand_written(ebc, sharding, kernel, world_size), sharder=sharder,
            local_size=get_local_size(world_size), world_size=world_size, device_type=device.type)
            for path, ebc in collections})

    # Without dense data parallelism DDP wraps only data-parallel tables (none: no DDP at all). One
    # rank has nothing to reduce: DDP would only copy every dense gradient into its buckets and
    # back (and run a one-rank all-reduce) at every step, so there the wrapper ignores them too.
    reduce_dense = dense_data_parallel and world_size > 1
    wrapper = None if reduce_dense else DefaultDataParallelWrapper(params_to_ignore=dense_names)
    dmp = DistributedModelParallel(model, env=ShardingEnv.from_process_group(pg), device=device, plan=plan,
                                   sharders=[sharder], data_parallel_wrapper=wrapper)
    for path, weights in full_weights.items():
        # A sharded collection splices full tensors into its local shards on load.
        dmp.module.get_submodule(path).load_state_dict(weights)

    optimizers: dict[str, torch.optim.Optimizer] = {}
    if kernel is Kernel.FUSED:
        optimizers["fused"] = dmp.fused_optimizer
    dense_ids = {id(p) for p in dense_parameters.values()}
    rest = {name: p for name, p in in_backward_optimizer_filter(dmp.named_parameters())
            if dense_data_parallel or id(p) not in dense_ids}
    if rest:
        # A plain torch optimizer, not TorchRec's KeyedOptimizerWrapper: the latter can only load
        # a checkpoint after `init_state()`, a zero-gradient step that moves Adam's step count
        # (and, with weight decay, the weights) before training starts.
        # "tables" when an external engine steps the dense parameters: only dense-kernel tables here.
        name = "dense" if dense_data_parallel else "tables"
        # fused: one kernel over all parameters instead of a Python loop of small ops per parameter;
        # the same update as the unfused optimizer (tests/trainer/test_sharding.py compares them).
        groups: list[dict[str, Any]] = [{"params": list(rest.values())}]
        # A second group only when needed: a run's optimizer state keeps its layout.
        if dense_weight_decay or scale != 1.0:
            groups = [{"params": [p for p in rest.values() if id(p) not in dense_ids]},
                      {"params": [p for p in rest.values() if id(p) in dense_ids],
                       "weight_decay": weight_decay + dense_weight_decay, "lr": lr * scale, "lr_scale": scale}]
            groups = [g for g in groups if g["params"]]
        optimizers[name] = _DENSE_OPTIMIZERS[optimizer](groups, lr=lr, weight_decay=weight_decay, fused=True)
    return ShardedModel(model=dmp, optimizers=optimizers, plan=plan, plan_summary="; ".join(describe_plan(plan)),
                        dense_parameters=dense_parameters, dense_data_parallel=dense_data_parallel)


def dense_lr_scale(lr: float, dense_lr: float | None) -> float:
    """The dense parameters' rate as a multiple of the tables' (`train.dense_learning_rate`; None or 0: 1)."""
    if not dense_lr:
        return 1.0
    if lr <= 0:
        raise ValueError(f"a dense learning rate ({dense_lr}) needs a positive table learning rate, got {lr}")
    return dense_lr / lr


def describe_plan(plan: ShardingPlan) -> list[str]:
    """One line per table, e.g. "tables.ebc.user: table_wise (fused) on rank 0"."""
    lines = []
    for path, module_plan in sorted(plan.plan.items()):
        for table, ps in sorted(module_plan.items()):
            ranks = sorted(set(ps.ranks or []))
            where = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks}"
            lines.append(f"{path + '.' if path else ''}{table}: {ps.sharding_type} ({ps.compute_kernel}) on {where}")
    return lines


def _parse(enum: type[Enum], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{what} must be one of {[e.value for e in enum]}, got {value!r}") from None


def _check_options(collections: list[tuple[str, EmbeddingBagCollection]], device: torch.device,
                   sharding: Sharding, kernel: Kernel, optimizer: str, lr: float, weight_decay: float,
                   world_size: int) -> dict[str, Any] | None:
    """Reject unsupported combinations; returns the sharder's fused params (None for dense)."""
    if sharding is Sharding.COLUMN_WISE and world_size > 1:
        # TorchRec's column blocks are multiples of 4 wide; other widths silently give fewer
        # shards than ranks (e.g. dim 4 on 2 ranks: one shard on rank 0).
        for path, ebc in collections:
            for cfg in ebc.embedding_bag_configs():
                if cfg.embedding_dim % (4 * world_size):
                    raise ValueError(f"column_wise: {path}.{cfg.name} has dim {cfg.embedding_dim}, not divisible "
                                     f"by 4 x {world_size} ranks (TorchRec column blocks are multiples of 4)")
    if kernel is Kernel.DENSE:
        if optimizer not in _DENSE_OPTIMIZERS:
            raise ValueError(f"kernel='dense' steps tables with a torch optimizer: optimizer must be one of "
                             f"{sorted(_DENSE_OPTIMIZERS)}, got {optimizer!r}")
        return None
    if sharding is Sharding.DATA_PARALLEL:
        raise ValueError("sharding='data_parallel' runs only TorchRec's dense kernel: use kernel='dense'")
    if optimizer not in _FUSED_OPTIMIZERS:
        raise ValueError(f"kernel='fused': optimizer must be one of {sorted(_FUSED_OPTIMIZERS)}, got {optimizer!r}")
    if device.type == "cpu" and optimizer in _FUSED_GPU_ONLY:
        raise ValueError(f"kernel='fused' with optimizer={optimizer!r} is not supported on CPU by FBGEMM; "
                         f"use optimizer 'sgd', 'adagrad' or 'rowwise_adagrad', or kernel='dense'")
    if device.type == "cpu" and weight_decay:
        raise ValueError("kernel='fused' ignores weight_decay on CPU (FBGEMM CPU kernels); use "
                         "model.reg_weight or kernel='dense'")
    params: dict[str, Any] = {"optimizer": _FUSED_OPTIMIZERS[optimizer], "learning_rate": lr}
    if "adagrad" in optimizer:
        params["eps"] = _TORCH_ADAGRAD_EPS  # same numbers as the dense torch.optim.Adagrad path
    if weight_decay:  # GPU only (rejected above on CPU); not verified on this CPU-only machine
        params.update(weight_decay=weight_decay, weight_decay_mode=WeightDecayMode.L2)
    return params


def _broadcast_full_weights(collections: list[tuple[str, EmbeddingBagCollection]],
                            pg: dist.ProcessGroup) -> dict[str, dict[str, torch.Tensor]]:
    """Rank 0's full tables, per collection path, on every rank."""
    weights = {}
    for path, ebc in collections:
        state = {key: value.detach().clone() for key, value in ebc.state_dict().items()}
        for tensor in state.values():
            dist.broadcast(tensor, group=pg, group_src=0)
        weights[path] = state
    return weights


def _planner_plan(model: nn.Module, sharder: EmbeddingBagCollectionSharder,
                  collections: list[tuple[str, EmbeddingBagCollection]], device: torch.device,
                  pg: dist.ProcessGroup, world_size: int) -> ShardingPlan:
    """TorchRec's planner with fused kernels; on CPU with 2+ ranks restricted to table-wise.

    Table-wise was the fastest layout measured on 2 CPU ranks (Baby-sized tables: ~830k
    lookups/s vs 750k column-wise and 330k data-parallel). Unconstrained, the planner also
    chose it for Baby- and TikTok-sized tables; the constraint keeps that from depending on its
    CPU cost model. `collective_plan` plans on rank 0 and broadcasts: every rank shards alike.
    """
    sharding_types = [ShardingType.TABLE_WISE.value] if device.type == "cpu" and world_size > 1 else None
    constraints = {cfg.name: ParameterConstraints(sharding_types=sharding_types, compute_kernels=[Kernel.FUSED.value])
                   for _, ebc in collections for cfg in ebc.embedding_bag_configs()}
    topology = TopologyFactory.create_topology(
        trainer_config=TrainerConfig(world_size=world_size, local_world_size=get_local_size(world_size)),
        kernel_config=KernelConfig(compute_device=device.type))
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    return planner.collective_plan(model, [sharder], pg)


def _hand_written(ebc: EmbeddingBagCollection, sharding: Sharding, kernel: Kernel,
                  world_size: int) -> dict[str, ParameterShardingGenerator]:
    """Per-table plan generators for an explicit sharding (AUTO here means table-wise)."""
    configs = ebc.embedding_bag_configs()
    if sharding is Sharding.DATA_PARALLEL:
        return {cfg.name: data_parallel() for cfg in configs}
    if sharding is Sharding.COLUMN_WISE:
        return {cfg.name: column_wise(ranks=list(range(world_size)), compute_kernel=kernel.value) for cfg in configs}
    if sharding is Sharding.ROW_WISE:
        return {cfg.name: row_wise(compute_kernel=kernel.value) for cfg in configs}
    # Table-wise: largest table first onto the least-loaded rank (by rows x dim).
    load = [0] * world_size
    plan = {}
    for cfg in sorted(configs, key=lambda c: -c.num_embeddings * c.embedding_dim):
        rank = load.index(min(load))
        load[rank] += cfg.num_embeddings * cfg.embedding_dim
        plan[cfg.name] = table_wise(rank=rank, compute_kernel=kernel.value)
    return plan
