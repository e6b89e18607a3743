"""What reduces and steps the model's dense parameters: torch (DDP in DMP) or a DeepSpeed engine.

The ID tables are TorchRec's in both cases (trainer/sharding.py: sharded, stepped by FBGEMM's
fused optimizer in backward or by a torch optimizer). Every other parameter of the model (the
"dense" ones: modality projections, diffusion denoiser, adjustment, edge-scoring networks,
gates) is either

- `torch`: DDP inside DistributedModelParallel all-reduces their gradients and the "dense" torch
  optimizer of `shard_model` steps them together with dense-kernel tables (the default; at world
  size 1 there is nothing to reduce and no DDP), or
- `deepspeed`: `shard_model(dense_data_parallel=False)` leaves them out of DDP and out of its
  optimizers, and a DeepSpeed engine (`deepspeed.initialize`) owns them: ZeRO stage 0/1/2, a
  client torch optimizer (Adam, AdamW, Adagrad, SGD per `train.optimizer`), gradient clipping.
  So every dense gradient is reduced exactly once, by DeepSpeed; DDP then wraps only
  data-parallel tables (none: no DDP at all).

The loop drives either through one `Stepper`: `forward`, `zero_grad`, `backward`, `step`, and
`optimizers` (name -> object with `state_dict()` / `load_state_dict()`) for trainer/checkpoint.py.

How the engine sees the dense modules. DeepSpeed wants a module to wrap; the model's own
forward mixes sharded tables with dense modules, so the engine's module is `DenseModules`: the
model's largest table-free submodules (the same objects, not copies) plus any dense parameter
that sits directly on a module holding tables, and a forward that calls the whole
(DMP-wrapped) model. `stepper.forward(batch)` is therefore `engine(batch)` -> DMP forward: the
forward runs through DeepSpeed's hooks (its backward prologue, ZeRO's gradient bookkeeping),
the tables through TorchRec's collectives, all on the one process group Ray Train set up
(`deepspeed.init_distributed` adopts an existing torch.distributed group). `engine.backward`
runs autograd once: FBGEMM updates fused tables in it, ZeRO reduces (stage 2: reduce-scatters)
dense gradients; then the table optimizers step, then `engine.step()`.

Gradient scale: DeepSpeed averages dense gradients over ranks like DDP, and TorchRec divides
table gradients by the world size, so both engines take the same steps (to float precision;
tests/trainer/test_dense_engine.py compares them parameter by parameter).

ZeRO stage 3 is refused: it partitions the parameters themselves, and evaluation, the per-epoch
refreshes and checkpoints read them outside the engine's forward. fp16/bf16 are off (CPU).

On CPU DeepSpeed's `TorchBackend` compiles a shared-memory all-reduce op at init (about a minute
of g++ on 2 busy cores the first time; a C++ toolchain on every node). It serves only
`inference_all_reduce`, never training, so it is marked incompatible before
`init_distributed` and never built. Any op DeepSpeed still compiles goes to
`TORCH_EXTENSIONS_DIR`, by default `<venv>/torch_extensions` (built once per node and torch).
The client torch optimizer means DeepSpeed's fused / CPU Adam are never compiled either.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import torch
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.distributed.types import ShardedModule

from trainer.sharding import _DENSE_OPTIMIZERS, ShardedModel, dense_lr_scale

ENGINES = ("torch", "deepspeed")
ZERO_STAGES = (0, 1, 2)
_SHM_COMM_OP = "deepspeed_shm_comm"  # DeepSpeed's CPU shared-memory all-reduce (inference only)


class Stepper:
    """One training step's calls, whatever steps the dense parameters.

    `optimizers` maps a name to everything with state to checkpoint (`state_dict()` /
    `load_state_dict()`); `summary` is one line for the log.
    """

    optimizers: dict[str, Any]
    summary: str

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def zero_grad(self) -> None:
        raise NotImplementedError

    def backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def rate_groups(self) -> list[dict[str, Any]]:
        """The param groups of every optimizer that steps something, whose "lr" is the rate."""
        raise NotImplementedError

    def set_learning_rate(self, lr: float) -> None:
        """Every optimizer's rate to `lr` (times a group's `lr_scale`, if it has one) from the next step
        on (trainer/loop.py's plateau schedule).

        Call it between steps. The torch optimizers and DeepSpeed's client read their group's "lr"
        in step(). FBGEMM's fused tables take the rate of the *forward* that precedes their
        in-backward update, and TorchRec copies the group's "lr" into them only in the fused
        optimizer's zero_grad()/step(): hence the zero_grad() here (no gradient is pending
        between steps, so it changes nothing else).
        """
        for group in self.rate_groups():
            group["lr"] = lr * group.get("lr_scale", 1.0)  # the dense group's own multiple (train.dense_learning_rate)
        self.zero_grad()


class TorchStepper(Stepper):
    """DMP forward, `loss.backward()` (DDP reduces dense gradients), every optimizer steps."""

    def __init__(self, model: nn.Module, optimizers: dict[str, Any], dense_parameters: list[nn.Parameter],
                 gradient_clipping: float = 0.0) -> None:
        self.model, self.optimizers = model, optimizers
        self.dense_parameters, self.gradient_clipping = dense_parameters, gradient_clipping
        ddp = isinstance(getattr(model, "_dmp_wrapped_module", None), nn.parallel.DistributedDataParallel)
        self.summary = f"dense: torch ({'DDP' if ddp else 'one rank, no DDP'}), {_count(dense_parameters)}"

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(*inputs)

    def zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def rate_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers.values() for group in opt.param_groups]

    def step(self) -> None:
        if self.gradient_clipping > 0 and self.dense_parameters:
            # After DDP's all-reduce every rank holds the full averaged dense gradient: the local
            # norm is the global one, as DeepSpeed computes it over its partitions.
            torch.nn.utils.clip_grad_norm_(self.dense_parameters, self.gradient_clipping)
        for opt in self.optimizers.values():
            opt.step()


class DenseModules(nn.Module):
    """The DeepSpeed engine's module: the model's dense parts, sharing the model's objects.

    `parts` are the largest submodules without tables, `loose` the dense parameters registered
    directly on modules that also hold tables. `forward` runs the whole `model` (kept out of
    the module tree, so the engine never sees a table).
    """

    def __init__(self, model: nn.Module, dense_parameters: list[nn.Parameter]) -> None:
        super().__init__()
        dense_ids = {id(p) for p in dense_parameters}
        self.parts = nn.ModuleDict()
        self.loose = nn.ParameterList()
        self._collect(model, "", dense_ids)
        covered = {id(p) for p in self.parameters()}
        if covered != dense_ids:
            raise ValueError(f"DenseModules: {len(dense_ids - covered)} dense parameters not reachable outside the "
                             f"table modules, {len(covered - dense_ids)} table parameters reached; a parameter "
                             "shared between a table module and a dense module cannot be split between engines")
        object.__setattr__(self, "_model", model)  # not a submodule: its tables stay TorchRec's

    def _collect(self, module: nn.Module, path: str, dense_ids: set[int]) -> None:
        if isinstance(module, (EmbeddingBagCollection, ShardedModule)):
            return
        params = list(module.parameters())
        if params and all(id(p) in dense_ids for p in params) and not _holds_tables(module):
            self.parts[path.replace(".", "__") or "root"] = module
            return
        for name, p in module.named_parameters(recurse=False):
            if id(p) in dense_ids:
                self.loose.append(p)
        for name, child in module.named_children():
            self._collect(child, f"{path}.{name}" if path else name, dense_ids)

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        return self._model(*inputs, **kwargs)


class EngineState:
    """The engine's checkpointable state (per rank: ZeRO partitions are this rank's)."""

    def __init__(self, engine: Any, zero_stage: int, world_size: int) -> None:
        self.engine, self.zero_stage, self.world_size = engine, zero_stage, world_size

    def state_dict(self) -> dict[str, Any]:
        return {"zero_stage": self.zero_stage, "world_size": self.world_size,
                "optimizer": _plain_entries(self.engine.optimizer.state_dict()),
                "global_steps": self.engine.global_steps, "global_samples": self.engine.global_samples,
                "skipped_steps": self.engine.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore after the model's parameters (the partitions' master copies come from `state`)."""
        if state["zero_stage"] != self.zero_stage or state["world_size"] != self.world_size:
            raise ValueError(f"checkpoint: the DeepSpeed state was saved with ZeRO stage {state['zero_stage']} on "
                             f"{state['world_size']} workers; this run has stage {self.zero_stage} on "
                             f"{self.world_size}. Resume with the same train.zero_stage and scaling.num_workers.")
        if self.zero_stage == 0:
            self.engine.optimizer.load_state_dict(state["optimizer"])
        else:
            # ZeRO 1/2 read their own rank's entry of a per-rank list; fp32 master partitions are
            # restored from the saved ones (exact), not re-derived from the parameters.
            import deepspeed.comm as ds_dist

            per_rank: list[Any] = [None] * self.world_size
            per_rank[ds_dist.get_rank(group=self.engine.optimizer.dp_process_group)] = state["optimizer"]
            self.engine.optimizer.load_state_dict(per_rank, load_optimizer_states=True, load_from_fp32_weights=True)
        self.engine.global_steps = state["global_steps"]
        self.engine.global_samples = state["global_samples"]
        self.engine.skipped_steps = state["skipped_steps"]


class DeepSpeedStepper(Stepper):
    """`engine(batch)` (-> DMP forward), `engine.backward`, table optimizers step, `engine.step()`."""

    def __init__(self, engine: Any, table_optimizers: dict[str, Any], client: torch.optim.Optimizer,
                 zero_stage: int, world_size: int, summary: str) -> None:
        # ZeRO-1/2 steps the client optimizer over its flattened partitions, so the client's param
        # groups hold the rate DeepSpeed uses.
        self.engine, self.table_optimizers, self.client = engine, table_optimizers, client
        self.optimizers = {**table_optimizers, "deepspeed": EngineState(engine, zero_stage, world_size)}
        self.summary = summary

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.engine(*inputs)

    def zero_grad(self) -> None:
        for opt in self.table_optimizers.values():
            opt.zero_grad()
        self.engine.zero_grad()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        for opt in self.table_optimizers.values():
            opt.step()
        self.engine.step()

    def rate_groups(self) -> list[dict[str, Any]]:
        return [group for opt in [*self.table_optimizers.values(), self.client] for group in opt.param_groups]


def deepspeed_config(*, zero_stage: int, micro_batch_size: int, world_size: int,
                     gradient_clipping: float = 0.0) -> dict[str, Any]:
    """The DeepSpeed config dict: fp32, no gradient accumulation, ZeRO `zero_stage`, client optimizer.

    `micro_batch_size` is the per-rank batch of the loop (DeepSpeed only checks and logs it: the
    loop feeds the batches, gradient accumulation is 1).
    """
    if zero_stage not in ZERO_STAGES:
        raise ValueError(f"zero_stage must be one of {list(ZERO_STAGES)}, got {zero_stage!r} (stage 3 partitions the "
                         "parameters, which evaluation and checkpoints read outside the engine)")
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro_batch_size * world_size,
        "gradient_clipping": float(gradient_clipping),
        "zero_optimization": {"stage": zero_stage, "overlap_comm": False, "elastic_checkpoint": False},
        # The client optimizers are element-wise (Adam, AdamW, Adagrad, SGD), so ZeRO's flattened
        # partitions step exactly like per-parameter tensors; SGD is merely not on ZeRO's list.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "fp16": {"enabled": False},
        "bf16": {"enabled": False},
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }


def build_stepper(sharded: ShardedModel, *, engine: str = "torch", zero_stage: int = 1,
                  gradient_clipping: float = 0.0, optimizer: str, lr: float, weight_decay: float = 0.0,
                  micro_batch_size: int, device: torch.device, world_size: int,
                  dense_weight_decay: float = 0.0, dense_lr: float | None = None) -> Stepper:
    """The stepper for `sharded` (made by `shard_model(dense_data_parallel=(engine == "torch"))`).

    Collective for `engine="deepspeed"`: every rank calls it with the same arguments.
    """
    if engine not in ENGINES:
        raise ValueError(f"dense engine must be one of {list(ENGINES)}, got {engine!r}")
    if sharded.dense_data_parallel != (engine == "torch"):
        raise ValueError(f"dense engine {engine!r} needs shard_model(dense_data_parallel={engine == 'torch'})")
    dense = [p for p in sharded.dense_parameters.values() if p.requires_grad]
    if engine == "torch":
        return TorchStepper(sharded.model, sharded.optimizers, dense, gradient_clipping)
    if not dense:
        raise ValueError("dense engine 'deepspeed': the model has no dense (non-table) parameters; use 'torch'")
    if optimizer not in _DENSE_OPTIMIZERS:
        raise ValueError(f"dense engine 'deepspeed': optimizer must be one of {sorted(_DENSE_OPTIMIZERS)} "
                         f"(a client torch optimizer), got {optimizer!r}")
    config = deepspeed_config(zero_stage=zero_stage, micro_batch_size=micro_batch_size, world_size=world_size,
                              gradient_clipping=gradient_clipping)
    deepspeed = _import_deepspeed()
    dist_backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    if dist_backend is None:
        raise ValueError("dense engine 'deepspeed': initialise torch.distributed first (Ray Train does)")
    # Adopts the existing group (gloo on CPU, nccl on GPU): one process group for TorchRec and DeepSpeed.
    deepspeed.init_distributed(dist_backend=dist_backend, dist_init_required=False, verbose=False)
    module = DenseModules(sharded.model.module, dense)
    scale = dense_lr_scale(lr, dense_lr)
    client = _DENSE_OPTIMIZERS[optimizer]([{"params": dense, "lr_scale": scale}], lr=lr * scale,
                                          weight_decay=weight_decay + dense_weight_decay)
    # device_rank: the device Ray Train gave this worker (DeepSpeed would take LOCAL_RANK).
    args = SimpleNamespace(device_rank=device.index if device.type != "cpu" and device.index is not None else 0)
    # Rank 0's dense weights everywhere, as DDP does at construction. DeepSpeed's own broadcast views
    # every parameter as bytes, which fails on 0-dim ones (the causal model's scalar gates:
    # "self.dim() cannot be 0 to view Float as Byte"), so it is done here and skipped there.
    for p in dense:
        torch.distributed.broadcast(p.data, src=0)
    with mock.patch.object(deepspeed.runtime.engine.DeepSpeedEngine, "_broadcast_model", lambda self: None):
        ds_engine, _, _, _ = deepspeed.initialize(args=args, model=module, optimizer=client, config=config,
                                                  dist_init_required=False)
    summary = (f"dense: deepspeed ZeRO-{zero_stage}, client {type(client).__name__}, {_count(dense)}"
               + (f", clip {gradient_clipping:g}" if gradient_clipping else ""))
    return DeepSpeedStepper(ds_engine, dict(sharded.optimizers), client, zero_stage, world_size, summary)


def _import_deepspeed() -> Any:
    """deepspeed, with its op cache in the venv and its CPU shared-memory op (inference only) off."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    import deepspeed
    import deepspeed.ops
    import deepspeed.runtime.engine

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    try:
        # A dict DeepSpeed probes once per process and keeps (its own comment: "edits to it persist").
        deepspeed.ops.__compatible_ops__[_SHM_COMM_OP] = False
    except (AttributeError, TypeError):  # a DeepSpeed without the probe: it builds (and caches) the op
        pass
    return deepspeed


def _plain_entries(state: dict[str, Any]) -> dict[str, Any]:
    """`state` without entries holding DeepSpeed objects, enums as their values.

    A checkpoint then unpickles without importing DeepSpeed (trainer/restore.py reads only the
    model). What goes: ZeRO's loss scaler (fp32: a static scale of 1, which loading falls back
    to) and its parameter slice map (for DeepSpeed's universal checkpoints, unused here).
    """
    def plain(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if value is None or isinstance(value, (torch.Tensor, bool, int, float, str)):
            return value
        raise TypeError(type(value).__name__)

    out = {}
    for key, value in state.items():
        try:
            out[key] = plain(value)
        except TypeError:
            continue
    return out


def _holds_tables(module: nn.Module) -> bool:
    return any(isinstance(m, (EmbeddingBagCollection, ShardedModule)) for m in module.modules())


def _count(params: list[nn.Parameter]) -> str:
    return f"{len(params)} tensors / {sum(p.numel() for p in params)} values"
