"""Dense modules under DeepSpeed (ZeRO 0-2), ID tables under TorchRec, one process group, one loop.

The 2-rank checks run in one spawned gloo group (file:// rendezvous, no ports), like
tests/trainer/test_sharding.py: the causal model (projections, diffusion denoiser, codebook
adjustment, front-door edge scoring, gates) with table-wise tables steps a few times through
`trainer.dense_engine.build_stepper` with `engine="torch"` (DDP) and `engine="deepspeed"` from the
same initial weights on the same per-rank batches; every parameter must agree to float
precision. A checkpoint written halfway through (trainer/checkpoint.py, per rank) must continue
exactly like the uninterrupted run (ZeRO partitions and Adam moments restored). Then one
2-worker Ray Train fit with `train.dense_engine=deepspeed` finishes and resumes.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torchrec import EmbeddingBagCollection

from data_loaders.graph import CSR, lightgcn_adjacency
from models.causal import CausalConfig
from models.registry import build_model
from trainer import checkpoint
from trainer.checkpoint import TrainState
from trainer.dense_engine import DenseModules, build_stepper, deepspeed_config
from trainer.sharding import shard_model
from spawn_ranks import spawn_ranks

U, I, D, LR, STEPS = 12, 10, 8, 0.05, 3
USERS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
POS = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
NEG = torch.tensor([5, 6, 7, 8, 9, 0, 1, 2])

# (name, zero stage, table kernel, optimizer, gradient clipping); the reference is the torch
# engine with the same kernel, optimizer and clipping. SGD steps are proportional to the gradient,
# so a dense gradient reduced twice or summed instead of averaged shows; Adam(W) and clipping check
# the optimizer state and the global norm over ZeRO's partitions.
CASES = [
    ("zero1-fused-sgd", 1, "fused", "sgd", 0.0),
    ("zero2-fused-sgd", 2, "fused", "sgd", 0.0),
    ("zero1-dense-adam", 1, "dense", "adam", 0.0),
    ("zero2-dense-adamw-clip", 2, "dense", "adamw", 0.05),
    ("zero0-dense-adam", 0, "dense", "adam", 0.0),
]
RESUME_STAGES = (1, 2)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, U * I, size=50))
    train = CSR.from_pairs(keys // I, keys % I, U, I)
    cfg = CausalConfig()
    cfg.backdoor.coarse_codes, cfg.backdoor.fine_codes = 3, 4
    cfg.frontdoor.warmup_epochs, cfg.frontdoor.refresh_every = 1, 1
    g = torch.Generator().manual_seed(0)
    features = {"image": torch.randn(I, 6, generator=g), "text": torch.randn(I, 5, generator=g)}
    return build_model("causal", num_users=U, num_items=I, adjacency=lightgcn_adjacency(train), dim=D, num_layers=2,
                       reg_weight=1e-3, device="cpu", features=features, train=train, options=cfg)


def _build(engine: str, stage: int, kernel: str, optimizer: str, clip: float, world_size: int):
    sharded = shard_model(_model(), device=torch.device("cpu"), sharding="table_wise", kernel=kernel,
                          optimizer=optimizer, lr=LR, world_size=world_size,
                          dense_data_parallel=engine == "torch")
    stepper = build_stepper(sharded, engine=engine, zero_stage=stage, gradient_clipping=clip, optimizer=optimizer,
                            lr=LR, micro_batch_size=len(USERS) // world_size, device=torch.device("cpu"),
                            world_size=world_size)
    return sharded, stepper


def _train(sharded, stepper, rank: int, world_size: int, steps: int, epoch0: int = 0) -> list[float]:
    losses = []
    for step in range(steps):
        torch.manual_seed(100 + epoch0 + step)  # the model's own noise (diffusion) alike in both engines
        out = stepper.forward(USERS[rank::world_size], POS[rank::world_size], NEG[rank::world_size])
        stepper.zero_grad()
        stepper.backward(out["loss"])
        stepper.step()
        losses.append(float(out["loss"].detach()))
    return losses


def _snapshot(sharded) -> dict[str, torch.Tensor]:
    """Every parameter, tables gathered in full (a collective)."""
    with torch.no_grad():
        user, item = sharded.model.module.tables.lookup_all()
    return {"tables.user": user.clone(), "tables.item": item.clone(),
            **{name: p.detach().clone() for name, p in sharded.dense_parameters.items()}}


def _diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    assert a.keys() == b.keys()
    return {k: float((a[k] - b[k]).abs().max()) for k in a}


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=120))
    try:
        results: dict = {}
        initial = None
        references: dict = {}
        for name, stage, kernel, optimizer, clip in CASES:
            key = (kernel, optimizer, clip)
            if key not in references:
                sharded, stepper = _build("torch", stage, kernel, optimizer, clip, world_size)
                initial = initial or _snapshot(sharded)
                _train(sharded, stepper, rank, world_size, STEPS)
                references[key] = _snapshot(sharded)
            sharded, stepper = _build("deepspeed", stage, kernel, optimizer, clip, world_size)
            start = _snapshot(sharded)
            _train(sharded, stepper, rank, world_size, STEPS)
            got = _snapshot(sharded)
            results[name] = {
                "start_diff": max(_diff(start, initial).values()),
                "diff": _diff(got, references[key]),
                "moved": _diff(got, initial),
                "optimizers": sorted(stepper.optimizers),
                "ddp": type(sharded.model._dmp_wrapped_module).__name__,
                "summary": stepper.summary,
            }
        # set_learning_rate reaches every optimizer: at rate 0 nothing moves (fused tables, torch
        # tables, DeepSpeed's partitions), and back at LR everything trains again.
        for engine, kernel in (("deepspeed", "fused"), ("deepspeed", "dense"), ("torch", "fused")):
            sharded, stepper = _build(engine, 1, kernel, "sgd", 0.0, world_size)
            _train(sharded, stepper, rank, world_size, 1)
            stepper.set_learning_rate(0.0)
            frozen = _snapshot(sharded)
            _train(sharded, stepper, rank, world_size, STEPS, epoch0=1)
            still = _diff(_snapshot(sharded), frozen)
            stepper.set_learning_rate(LR)
            _train(sharded, stepper, rank, world_size, 1, epoch0=1 + STEPS)
            results[f"rate-{engine}-{kernel}"] = {"still": still, "moved": _diff(_snapshot(sharded), frozen)}
        for stage in RESUME_STAGES:
            args = (stage, "fused", "adagrad", 0.0, world_size)
            sharded, stepper = _build("deepspeed", *args)
            straight = _train(sharded, stepper, rank, world_size, 2 * STEPS)
            want = _snapshot(sharded)
            sharded, stepper = _build("deepspeed", *args)
            _train(sharded, stepper, rank, world_size, STEPS)
            directory = Path(out_dir, f"ckpt-zero{stage}")
            checkpoint.save(directory, rank=rank, model=sharded.model, optimizers=stepper.optimizers,
                            sampler_state={}, state=TrainState(world_size=world_size, plan=sharded.plan_summary))
            dist.barrier()
            # Plain tensors and builtins only: readable without DeepSpeed (trainer/restore.py).
            saved = torch.load(directory / f"rank{rank}.pt", weights_only=True)
            sharded, stepper = _build("deepspeed", *args)  # a fresh start, as on a restarted worker
            checkpoint.load(directory, rank=rank, model=sharded.model, optimizers=stepper.optimizers,
                            world_size=world_size, plan=sharded.plan_summary)
            resumed = _train(sharded, stepper, rank, world_size, STEPS, epoch0=STEPS)
            results[f"resume-zero{stage}"] = {"diff": _diff(_snapshot(sharded), want),
                                              "losses": [straight[STEPS:], resumed],
                                              "saved": sorted(saved["optimizers"])}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("dense_engine")
    spawn_ranks(_worker, (2, str(out / "init"), str(out)), init_file=str(out / "init"))
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.distributed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_deepspeed_dense_steps_like_torch_dense(two_rank_results, case):
    for rank, results in enumerate(two_rank_results):
        r = results[case]
        assert r["start_diff"] == 0.0, "both engines must start from the same weights"
        assert r["moved"]["tables.user"] > 1e-3 and r["moved"]["tables.item"] > 1e-3
        moved_dense = [k for k, v in r["moved"].items() if not k.startswith("tables.") and v > 1e-4]
        assert len(moved_dense) >= len(r["moved"]) // 2, f"too few dense parameters moved: {r['moved']}"
        worst = max(r["diff"], key=r["diff"].get)
        assert r["diff"][worst] < 2e-5, f"rank {rank} {case}: '{worst}' differs from the torch engine by {r['diff'][worst]}"


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_dense_parameters_are_reduced_by_deepspeed_only(two_rank_results):
    r = two_rank_results[0]["zero1-fused-sgd"]
    # Table-wise tables and the dense modules under DeepSpeed: nothing left for DDP to wrap.
    assert r["ddp"] != "DistributedDataParallel"
    assert r["optimizers"] == ["deepspeed", "fused"]
    assert two_rank_results[0]["zero1-dense-adam"]["optimizers"] == ["deepspeed", "tables"]
    assert "deepspeed ZeRO-1, client SGD" in r["summary"]


@pytest.mark.distributed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("stage", RESUME_STAGES)
def test_checkpoint_restores_zero_partitions_exactly(two_rank_results, stage):
    for results in two_rank_results:
        r = results[f"resume-zero{stage}"]
        worst = max(r["diff"], key=r["diff"].get)
        assert r["diff"][worst] < 1e-6, f"resumed run differs at '{worst}' by {r['diff'][worst]}"
        straight, resumed = r["losses"]
        assert resumed == pytest.approx(straight, rel=1e-5)
        assert r["saved"] == ["deepspeed", "fused"]


@pytest.mark.distributed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", ["deepspeed-fused", "deepspeed-dense", "torch-fused"])
def test_set_learning_rate_reaches_every_optimizer(two_rank_results, case):
    for rank, results in enumerate(two_rank_results):
        got = results[f"rate-{case}"]
        assert max(got["still"].values()) == 0.0, f"rank {rank}: moved at rate 0: {got['still']}"
        # Every table, and most dense parameters (some get no gradient from 8 triples, e.g. an
        # unused code), move again once the rate is back.
        moved = got["moved"]
        assert moved["tables.user"] > 0 and moved["tables.item"] > 0, moved
        dense = [v for k, v in moved.items() if not k.startswith("tables.")]
        assert sum(v > 0 for v in dense) >= len(dense) // 2, moved


def test_deepspeed_config_is_fp32_zero_with_the_per_rank_batch():
    cfg = deepspeed_config(zero_stage=2, micro_batch_size=128, world_size=4, gradient_clipping=1.0)
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["train_micro_batch_size_per_gpu"] * 4 == cfg["train_batch_size"] == 512
    assert cfg["gradient_accumulation_steps"] == 1 and cfg["gradient_clipping"] == 1.0
    assert not cfg["fp16"]["enabled"] and not cfg["bf16"]["enabled"]
    with pytest.raises(ValueError, match="zero_stage must be one of"):
        deepspeed_config(zero_stage=3, micro_batch_size=1, world_size=1)


def test_dense_modules_share_the_models_objects_and_hold_no_table():
    model = _model()
    table_ids = {id(p) for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()}
    dense = [p for p in model.parameters() if id(p) not in table_ids]
    module = DenseModules(model, dense)
    assert {id(p) for p in module.parameters()} == {id(p) for p in dense}
    assert all(id(p) not in table_ids for p in module.parameters())
    assert "tables" not in dict(module.named_modules())  # the model itself is not a submodule
    assert module.parts["projection"] is model.projection


def test_deepspeed_needs_shard_model_without_dense_data_parallel(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        sharded = shard_model(_model(), device=torch.device("cpu"), kernel="fused", optimizer="adagrad", lr=LR,
                              world_size=1)
        assert sorted(sharded.optimizers) == ["dense", "fused"]
        with pytest.raises(ValueError, match="needs shard_model\\(dense_data_parallel=False\\)"):
            build_stepper(sharded, engine="deepspeed", optimizer="adagrad", lr=LR, micro_batch_size=4,
                          device=torch.device("cpu"), world_size=1)
        bpr = build_model("bpr", num_users=U, num_items=I, adjacency=None, dim=D, num_layers=0, reg_weight=0.0,
                          device="cpu")
        tables_only = shard_model(bpr, device=torch.device("cpu"), kernel="fused", optimizer="sgd", lr=LR,
                                  world_size=1, dense_data_parallel=False)
        with pytest.raises(ValueError, match="no dense \\(non-table\\) parameters; use 'torch'"):
            build_stepper(tables_only, engine="deepspeed", optimizer="sgd", lr=LR, micro_batch_size=4,
                          device=torch.device("cpu"), world_size=1)
        # A torch-engine checkpoint does not load into a DeepSpeed run (or back): a clear error.
        state = TrainState(world_size=1, plan=sharded.plan_summary)
        checkpoint.save(tmp_path / "ckpt", rank=0, model=sharded.model, optimizers=sharded.optimizers,
                        sampler_state={}, state=state)
        with pytest.raises(ValueError, match="same train.dense_engine"):
            checkpoint.load(tmp_path / "ckpt", rank=0, model=sharded.model,
                            optimizers={"fused": sharded.optimizers["fused"], "deepspeed": None},
                            world_size=1, plan=sharded.plan_summary)
    finally:
        dist.destroy_process_group()


def test_dense_weight_decay_and_learning_rate_reach_the_deepspeed_client(tmp_path, monkeypatch):
    # train.dense_weight_decay is added to train.weight_decay in DeepSpeed's client optimizer, and
    # train.dense_learning_rate is its rate, a multiple of the tables' that a schedule's cut keeps.
    # (One test: DeepSpeed keeps the first process group it adopts for the whole process.)
    for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1").items():
        monkeypatch.setenv(key, value)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        sharded = shard_model(_model(), device=torch.device("cpu"), sharding="table_wise", kernel="fused",
                              optimizer="adagrad", lr=LR, world_size=1, dense_data_parallel=False)
        stepper = build_stepper(sharded, engine="deepspeed", optimizer="adagrad", lr=LR, micro_batch_size=4,
                                device=torch.device("cpu"), world_size=1, weight_decay=0.1, dense_weight_decay=0.3,
                                dense_lr=LR / 4)
        assert [g["weight_decay"] for g in stepper.client.param_groups] == [pytest.approx(0.4)]
        assert [g["lr"] for g in stepper.client.param_groups] == [pytest.approx(LR / 4)]
        stepper.set_learning_rate(LR / 2)
        assert [g["lr"] for g in stepper.client.param_groups] == [pytest.approx(LR / 8)]
        assert all(g["lr"] == pytest.approx(LR / 2) for g in sharded.optimizers["fused"].param_groups)  # the tables
    finally:
        dist.destroy_process_group()


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_fit_with_deepspeed_dense_engine_finishes_and_resumes(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    """Ray Train, 2 workers, the causal model's dense modules under ZeRO-2 and a weight average; restart resumes."""
    from trainer.config import load_config
    from trainer.main import fit

    def cfg(epochs: int):
        return load_config(None, [
            f"--data.url={tiny_synthetic}", f"--run.storage_path={tmp_path}", "--run.name=ds", "--model.name=causal",
            f"--train.epochs={epochs}", "--train.batch_size=256", "--train.learning_rate=0.01",
            "--train.optimizer=adagrad", "--train.embedding_kernel=fused", "--train.dense_engine=deepspeed",
            "--train.zero_stage=2", "--train.gradient_clipping=1.0", "--logging.progress=false",
            "--model.causal.backdoor.coarse_codes=4", "--model.causal.backdoor.fine_codes=8",
            "--model.causal.frontdoor.warmup_epochs=1", "--model.causal.frontdoor.refresh_every=1",
            "--scaling.num_workers=2", "--scaling.cpus_per_worker=0.5",
            # the weight average over ZeRO-stepped dense parameters and table-wise shards on 2 ranks
            "--train.weight_average_decay=0.5"])

    first = fit(cfg(1))
    assert first["epoch"] == 1 and "table_wise" in first["plan"]
    second = fit(cfg(2))  # same run name: resumes after epoch 1 from the checkpoint
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 came from the checkpoint, not re-run
    assert all(h["loss"] == h["loss"] for h in second["history"]) and second["best_valid"]["recall@20"] >= 0
    assert all("valid_live/recall@20" in h for h in second["history"])
    # The averaged weights the run ranked with come back from the two ranks' checkpoint files.
    from data_loaders.format import Split
    from trainer.evaluate import evaluate
    from trainer.restore import restore_run
    from trainer.results import write_results

    write_results(second, cfg(2))
    run = restore_run(str(tmp_path / "ds"))
    user, item = run.model.final_embeddings()
    test = evaluate(user, item, run.splits[Split.TEST], [run.splits[Split.TRAIN]], ks=(20,)).metrics
    assert test["recall@20"] == pytest.approx(second["best_test"]["recall@20"], abs=1e-9)


def test_config_offers_zero_stages_0_to_2():
    from trainer.config import ConfigError, load_config

    cfg = load_config(None, ["--train.dense_engine=deepspeed", "--train.zero_stage=2", "--train.gradient_clipping=1"])
    assert (cfg.train.dense_engine, cfg.train.zero_stage, cfg.train.gradient_clipping) == ("deepspeed", 2, 1.0)
    assert load_config(None, []).train.dense_engine == "torch"  # the default path is unchanged
    with pytest.raises(ConfigError, match=r"train.zero_stage' must be one of \[0, 1, 2\], got 3"):
        load_config(None, ["--train.zero_stage=3"])
    with pytest.raises(ConfigError, match="train.gradient_clipping' must be >= 0"):
        load_config(None, ["--train.gradient_clipping=-1"])


@pytest.mark.timeout(120)
def test_torch_engine_at_world_size_one_steps_every_parameter_without_ddp(tmp_path):
    # One rank has nothing to reduce: no DDP wrapper, and the dense parameters are still stepped,
    # exactly as a plain torch Adam over the unsharded model steps them.
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        reference = _model()
        optimizer = torch.optim.Adam(reference.parameters(), lr=LR)
        sharded, stepper = _build("torch", 0, "dense", "adam", 0.0, world_size=1)
        assert type(sharded.model._dmp_wrapped_module).__name__ != "DistributedDataParallel"
        assert "one rank, no DDP" in stepper.summary
        initial = _snapshot(sharded)
        _train(sharded, stepper, 0, 1, STEPS)
        for step in range(STEPS):
            torch.manual_seed(100 + step)
            optimizer.zero_grad()
            reference(USERS, POS, NEG)["loss"].backward()
            optimizer.step()
        got = _snapshot(sharded)
        with torch.no_grad():
            user, item = reference.tables.lookup_all()
        want = {"tables.user": user, "tables.item": item,
                **{name: p.detach() for name, p in reference.named_parameters() if name in sharded.dense_parameters}}
        moved = _diff(got, initial)
        assert sum(v > 1e-4 for k, v in moved.items() if not k.startswith("tables.")) >= len(moved) // 2
        diff = _diff(got, want)
        worst = max(diff, key=diff.get)
        assert diff[worst] < 2e-5, f"'{worst}' differs from plain torch Adam by {diff[worst]}"
    finally:
        dist.destroy_process_group()
