"""shard_model: W ranks on B/W samples step the tables exactly like one unsharded model on B.

The 2-rank checks run in one spawned gloo group (file:// rendezvous, no ports) that goes
through every configuration and writes its measurements to JSON; the assertions run here.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from models.registry import build_model
from trainer.sharding import shard_model
from spawn_ranks import spawn_ranks

U, I, D, LR = 7, 6, 8, 0.5  # D = 8: column-wise blocks are multiples of 4
EDGES = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [6, 2], [6, 5]])
USERS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
POS = torch.tensor([1, 2, 3, 4, 5, 0, 2, 0])
NEG = torch.tensor([3, 5, 0, 1, 2, 4, 4, 2])

# (model, sharding, kernel, optimizer) checked against one unsharded model on the full batch.
EQUIVALENCE = [
    ("lightgcn", "table_wise", "dense", "sgd"),
    ("lightgcn", "table_wise", "fused", "sgd"),
    ("lightgcn", "column_wise", "dense", "sgd"),
    ("lightgcn", "column_wise", "fused", "sgd"),
    ("lightgcn", "row_wise", "dense", "sgd"),
    ("lightgcn", "row_wise", "fused", "sgd"),
    ("lightgcn", "data_parallel", "dense", "sgd"),
    ("lightgcn", "auto", "fused", "adagrad"),
    ("lightgcn", "auto", "dense", "adam"),
    ("bpr", "table_wise", "fused", "sgd"),
    ("bpr", "column_wise", "dense", "adagrad"),
]


def _adjacency() -> torch.Tensor:
    a = np.zeros((U + I, U + I))
    a[EDGES[:, 0], U + EDGES[:, 1]] = a[U + EDGES[:, 1], EDGES[:, 0]] = 1.0
    d = a.sum(1) ** -0.5
    return torch.tensor(d[:, None] * a * d[None, :], dtype=torch.float32).to_sparse()


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    # The squared regulariser splits exactly over ranks (MMRec's plain norm does not).
    return build_model(name, num_users=U, num_items=I, adjacency=_adjacency(), dim=D, num_layers=2,
                       reg_weight=0.1, reg_type="squared", device="cpu")


def _torch_optimizer(name: str, params) -> torch.optim.Optimizer:
    return {"sgd": lambda: torch.optim.SGD(params, lr=LR), "adagrad": lambda: torch.optim.Adagrad(params, lr=LR),
            "adam": lambda: torch.optim.Adam(params, lr=LR)}[name]()


def _run(model_name: str, sharding: str, kernel: str, optimizer: str, rank: int, world_size: int,
         steps: int = 2) -> dict:
    """`steps` steps sharded (this rank's share of the batch) and unsharded (full batch)."""
    model = _model(model_name)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        initial = reference.tables.lookup_all()
    sharded = shard_model(model, device=torch.device("cpu"), sharding=sharding, kernel=kernel,
                          optimizer=optimizer, lr=LR, world_size=world_size)
    ref_opt = _torch_optimizer(optimizer, reference.parameters())
    for _ in range(steps):
        ref_opt.zero_grad()
        reference(USERS, POS, NEG)["loss"].backward()
        ref_opt.step()
        for opt in sharded.optimizers.values():
            opt.zero_grad()
        sharded.model(USERS[rank::world_size], POS[rank::world_size], NEG[rank::world_size])["loss"].backward()
        for opt in sharded.optimizers.values():
            opt.step()
    with torch.no_grad():
        got = sharded.model.module.tables.lookup_all()  # a collective: gathers every row
        want = reference.tables.lookup_all()
    return {
        "max_diff": max(float((g - w).abs().max()) for g, w in zip(got, want)),
        "moved": min(float((w - i).abs().max()) for w, i in zip(want, initial)),
        "plan": sharded.plan_summary,
        "optimizers": sorted(sharded.optimizers),
    }


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    try:
        results = {"|".join(cfg): _run(*cfg, rank, world_size) for cfg in EQUIVALENCE}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("sharding")
    spawn_ranks(_worker, (2, str(out / "init"), str(out)), init_file=str(out / "init"))
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.distributed
@pytest.mark.timeout(180)
@pytest.mark.parametrize("cfg", EQUIVALENCE, ids="|".join)
def test_two_ranks_on_half_batches_equal_one_model_on_the_full_batch(two_rank_results, cfg):
    for rank, results in enumerate(two_rank_results):
        r = results["|".join(cfg)]
        assert r["moved"] > 1e-3, "the step must change the tables for the comparison to mean anything"
        assert r["max_diff"] < 1e-5, f"rank {rank}: {cfg} differs from the unsharded full batch by {r['max_diff']}"
        assert r["plan"] == two_rank_results[0]["|".join(cfg)]["plan"], "ranks disagree on the plan"


@pytest.mark.distributed
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kernel", ["fused", "dense"])
def test_auto_plan_on_two_cpu_ranks_is_table_wise_on_both_ranks(two_rank_results, kernel):
    optimizer = {"fused": "adagrad", "dense": "adam"}[kernel]
    plan = two_rank_results[0][f"lightgcn|auto|{kernel}|{optimizer}"]["plan"]
    assert plan == (f"tables.ebc.item: table_wise ({kernel}) on rank 1; "
                    f"tables.ebc.user: table_wise ({kernel}) on rank 0")


@pytest.mark.distributed
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sharding", ["column_wise", "row_wise", "data_parallel"])
def test_explicit_plans_use_both_ranks(two_rank_results, sharding):
    kernel = "fused" if sharding != "data_parallel" else "dense"
    plan = two_rank_results[0][f"lightgcn|{sharding}|{kernel}|sgd"]["plan"]
    assert plan == (f"tables.ebc.item: {sharding} ({kernel}) on ranks [0, 1]; "
                    f"tables.ebc.user: {sharding} ({kernel}) on ranks [0, 1]")


@pytest.mark.distributed
@pytest.mark.timeout(180)
def test_optimizers_returned(two_rank_results):
    assert two_rank_results[0]["lightgcn|table_wise|fused|sgd"]["optimizers"] == ["fused"]
    assert two_rank_results[0]["lightgcn|table_wise|dense|sgd"]["optimizers"] == ["dense"]


@pytest.fixture
def world_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sharding,kernel,optimizer", [("auto", "fused", "sgd"), ("auto", "dense", "sgd"),
                                                        ("data_parallel", "dense", "adam")])
def test_world_size_one_goes_through_dmp(world_of_one, sharding, kernel, optimizer):
    r = _run("lightgcn", sharding, kernel, optimizer, rank=0, world_size=1)
    assert r["max_diff"] < 1e-5 and r["moved"] > 1e-3
    assert r["plan"].count("on rank 0") == 2


@pytest.mark.timeout(120)
def test_fused_rowwise_adagrad_row_wise_trains(world_of_one):
    # No torch twin to compare with: check that it trains.
    sharded = shard_model(_model("lightgcn"), device=torch.device("cpu"), sharding="row_wise", kernel="fused",
                          optimizer="rowwise_adagrad", lr=LR, world_size=1)
    losses = []
    for _ in range(5):
        loss = sharded.model(USERS, POS, NEG)["loss"]
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_summed_table_gradients_are_refused(world_of_one):
    from torchrec.distributed.comm_ops import set_gradient_division

    set_gradient_division(False)
    try:
        with pytest.raises(RuntimeError, match="gradient division is off"):
            shard_model(_model("bpr"), device=torch.device("cpu"), kernel="fused", optimizer="sgd", lr=0.1,
                        world_size=1)
    finally:
        set_gradient_division(True)


@pytest.mark.parametrize("optimizer", ["adam", "lamb"])
def test_fused_adam_on_cpu_is_a_clear_error(optimizer):
    with pytest.raises(ValueError, match=f"kernel='fused' with optimizer='{optimizer}' is not supported on CPU"):
        shard_model(_model("bpr"), device=torch.device("cpu"), kernel="fused", optimizer=optimizer, lr=0.1,
                    world_size=1)


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel": "fused", "optimizer": "sgd", "weight_decay": 0.1}, "ignores weight_decay on CPU"),
    ({"kernel": "fused", "optimizer": "sgd", "sharding": "data_parallel"}, "use kernel='dense'"),
    ({"kernel": "dense", "optimizer": "rowwise_adagrad"}, "optimizer must be one of"),
    ({"kernel": "dense", "optimizer": "sgd", "sharding": "diagonal"}, "sharding must be one of"),
    ({"kernel": "sparse", "optimizer": "sgd"}, "kernel must be one of"),
    ({"kernel": "dense", "optimizer": "sgd", "sharding": "column_wise", "world_size": 3},
     "not divisible by 4 x 3 ranks"),
    ({"kernel": "dense", "optimizer": "sgd"}, "initialise torch.distributed first"),
])
def test_bad_options_fail_before_any_communication(kwargs, match):
    kwargs = {"world_size": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        shard_model(_model("bpr"), device=torch.device("cpu"), lr=0.1, **kwargs)


def test_fused_only_optimizer_needs_a_torch_twin_for_dense_parameters():
    model = _model("bpr")
    model.head = torch.nn.Linear(2, 2)  # a dense module next to the tables
    with pytest.raises(ValueError, match=r"no torch equivalent for the model's non-table parameters \['head"):
        shard_model(model, device=torch.device("cpu"), kernel="fused", optimizer="rowwise_adagrad", lr=0.1,
                    world_size=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kernel", ["dense", "fused"])
def test_dense_weight_decay_reaches_the_dense_parameters_only(world_of_one, kernel):
    """With no loss gradient, SGD's weight decay alone moves parameters: w -= lr * wd * w. The dense
    head shrinks by lr * dense_weight_decay; the tables do not move (weight_decay 0)."""
    model = _model("bpr")
    model.head = torch.nn.Linear(2, 2)  # a dense module next to the tables
    head_before = model.head.weight.detach().clone()
    sharded = shard_model(model, device=torch.device("cpu"), kernel=kernel, optimizer="sgd", lr=LR,
                          world_size=1, dense_weight_decay=0.2)
    tables_before = sharded.model.module.tables.lookup_all()[0].detach().clone()
    loss = 0.0 * sharded.model(USERS, POS, NEG)["loss"] + 0.0 * sharded.model.module.head.weight.sum()
    loss.backward()
    for opt in sharded.optimizers.values():
        opt.step()
    torch.testing.assert_close(sharded.model.module.head.weight.detach(), head_before * (1 - LR * 0.2))
    torch.testing.assert_close(sharded.model.module.tables.lookup_all()[0].detach(), tables_before)
    groups = sharded.optimizers["dense"].param_groups
    assert [g["weight_decay"] for g in groups] == ([0.0, 0.2] if kernel == "dense" else [0.2])
    plain = shard_model(_model("bpr"), device=torch.device("cpu"), kernel="dense", optimizer="sgd", lr=LR,
                        world_size=1)
    assert len(plain.optimizers["dense"].param_groups) == 1  # no second group without the option


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kernel", ["dense", "fused"])
def test_dense_learning_rate_steps_the_dense_parameters_and_a_schedule_keeps_the_ratio(world_of_one, kernel):
    """SGD with a dense weight decay of 1 and no loss gradient: w -= rate * w. The dense head moves at
    the dense rate; a schedule's cut (Stepper.set_learning_rate) scales both rates."""
    from trainer.dense_engine import build_stepper

    model = _model("bpr")
    model.head = torch.nn.Linear(2, 2)
    head_before = model.head.weight.detach().clone()
    sharded = shard_model(model, device=torch.device("cpu"), kernel=kernel, optimizer="sgd", lr=LR,
                          world_size=1, dense_weight_decay=1.0, dense_lr=3 * LR)
    stepper = build_stepper(sharded, optimizer="sgd", lr=LR, micro_batch_size=4, device=torch.device("cpu"),
                            world_size=1, dense_weight_decay=1.0, dense_lr=3 * LR)

    def step() -> None:
        loss = 0.0 * sharded.model(USERS, POS, NEG)["loss"] + 0.0 * sharded.model.module.head.weight.sum()
        stepper.backward(loss)
        stepper.step()
        stepper.zero_grad()

    step()
    torch.testing.assert_close(sharded.model.module.head.weight.detach(), head_before * (1 - 3 * LR))
    stepper.set_learning_rate(LR / 2)  # a plateau cut: the dense rate follows, 3 * LR / 2
    step()
    torch.testing.assert_close(sharded.model.module.head.weight.detach(),
                               head_before * (1 - 3 * LR) * (1 - 3 * LR / 2))
    dense_group = [g for g in sharded.optimizers["dense"].param_groups if "lr_scale" in g]
    assert [(g["lr"], g["lr_scale"]) for g in dense_group] == [(pytest.approx(3 * LR / 2), pytest.approx(3.0))]
    if kernel == "dense":  # the tables' own group
        assert [g["lr"] for g in sharded.optimizers["dense"].param_groups if "lr_scale" not in g] == [LR / 2]
    with pytest.raises(ValueError, match="needs a positive table learning rate"):
        shard_model(_model("bpr"), device=torch.device("cpu"), kernel="dense", optimizer="sgd", lr=0.0,
                    world_size=1, dense_lr=0.1)
