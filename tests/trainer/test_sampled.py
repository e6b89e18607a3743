"""Sampled mini-batch LightGCN through the trainer: sharded tables, config, one Ray fit.

The 2-rank checks run in one spawned gloo group (as tests/trainer/test_sharding.py): with every
fanout >= the maximum degree, W ranks each sampling the subgraph of their own B/W triples step
the sharded tables exactly like one unsharded FULL-graph model on the whole batch, whatever the
plan. The ranks' subgraphs differ in size, which row-wise sharding only accepts because the
model pads its lookups to the largest size over ranks (models/lightgcn.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from data_loaders.graph import CSR, lightgcn_adjacency
from models.lightgcn import LightGCNConfig
from models.registry import build_model
from trainer.config import ConfigError, load_config
from spawn_ranks import spawn_ranks

U, I, D, LR = 12, 9, 8, 0.5


def _graph() -> CSR:
    rng = np.random.default_rng(0)
    users = np.minimum((rng.pareto(1.5, 40) * 3).astype(np.int64), U - 1)
    items = np.minimum((rng.pareto(1.0, 40) * 2).astype(np.int64), I - 1)
    return CSR.from_pairs(users, items, U, I)


def _batch():
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, U, (8,), generator=g), torch.randint(0, I, (8,), generator=g),
            torch.randint(0, I, (8,), generator=g))


def _model(mode: str, fanouts: list[int]) -> torch.nn.Module:
    torch.manual_seed(0)
    train = _graph()
    return build_model("lightgcn", num_users=U, num_items=I, adjacency=lightgcn_adjacency(train), dim=D,
                       num_layers=2, reg_weight=0.1, reg_type="squared", device="cpu", train=train,
                       options=LightGCNConfig(graph_mode=mode, fanouts=fanouts))


def _run(sharding: str, kernel: str, fanouts: list[int], rank: int, world_size: int, steps: int = 2) -> dict:
    from trainer.sharding import shard_model

    users, pos, neg = _batch()
    model = _model("sampled", fanouts)
    reference = _model("full", fanouts)
    with torch.no_grad():
        initial = reference.tables.lookup_all()
    sharded = shard_model(model, device=torch.device("cpu"), sharding=sharding, kernel=kernel, optimizer="sgd",
                          lr=LR, world_size=world_size)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    sizes = []
    for _ in range(steps):
        ref_opt.zero_grad()
        reference(users, pos, neg)["loss"].backward()
        ref_opt.step()
        for opt in sharded.optimizers.values():
            opt.zero_grad()
        mine = (users[rank::world_size], pos[rank::world_size], neg[rank::world_size])
        inner = sharded.model.module
        sub = inner.sample(*mine)
        inner._step -= 1  # the forward below draws the same subgraph again
        sizes.append(len(sub.nodes))
        loss = sharded.model(*mine)["loss"]
        loss.backward()
        for opt in sharded.optimizers.values():
            opt.step()
    with torch.no_grad():
        got = sharded.model.module.tables.lookup_all()
        want = reference.tables.lookup_all()
    return {"max_diff": max(float((g - w).abs().max()) for g, w in zip(got, want)),
            "moved": min(float((w - i).abs().max()) for w, i in zip(want, initial)),
            "finite": bool(torch.isfinite(loss)), "sizes": sizes, "plan": sharded.plan_summary}


CASES = [("row_wise", "dense", [99, 99]), ("row_wise", "fused", [99, 99]), ("table_wise", "dense", [99, 99]),
         ("row_wise", "dense", [2, 2])]


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    try:
        results = {f"{s}|{k}|{f}": _run(s, k, f, rank, world_size) for s, k, f in CASES}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("sampled")
    spawn_ranks(_worker, (2, str(out / "init"), str(out)), init_file=str(out / "init"))
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.distributed
@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}|{c[1]}|{c[2]}")
def test_two_sampled_ranks_step_like_one_full_graph_model(two_rank_results, case):
    key = f"{case[0]}|{case[1]}|{case[2]}"
    r0, r1 = (results[key] for results in two_rank_results)
    assert r0["sizes"] != r1["sizes"], "the ranks' subgraphs should differ in size (what row-wise must survive)"
    assert case[0] in r0["plan"]
    for r in (r0, r1):
        assert r["finite"] and r["moved"] > 1e-3
        if case[2][0] >= 99:  # every neighbour kept: exactly the full-graph step
            assert r["max_diff"] < 1e-5, r["max_diff"]


@pytest.mark.parametrize("override,message", [
    ("--model.lightgcn.fanouts=[10]", r"model\.lightgcn\.fanouts.*one positive integer per model\.num_layers"),
    ("--model.lightgcn.fanouts=[10,0]", r"model\.lightgcn\.fanouts"),
    ("--model.lightgcn.graph_mode=partial", r"model\.lightgcn\.graph_mode' must be one of"),
])
def test_bad_sampled_config_is_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["--model.num_layers=2", "--model.lightgcn.graph_mode=sampled", override])


def test_fanouts_are_ignored_in_full_mode_and_by_other_models() -> None:
    load_config(None, ["--model.num_layers=3"])  # default fanouts [10, 10], full mode
    load_config(None, ["--model.name=bpr", "--model.lightgcn.graph_mode=sampled", "--model.num_layers=3"])


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_sampled_fit_on_one_worker_learns(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    from data_loaders.format import Split
    from data_loaders.graph import interaction_csr
    from data_loaders.stream import open_dataset
    from trainer.main import fit

    cfg = load_config(None, [f"--data.url={tiny_synthetic}", f"--run.storage_path={tmp_path}", "--run.name=sampled",
                             "--train.epochs=4", "--train.batch_size=256", "--train.learning_rate=0.01",
                             "--logging.progress=false", "--model.num_layers=2",
                             "--model.lightgcn.graph_mode=sampled", "--model.lightgcn.fanouts=[5,5]"])
    out = fit(cfg)
    ds = open_dataset(tiny_synthetic)
    train, valid = interaction_csr(ds, Split.TRAIN), interaction_csr(ds, Split.VALID)
    # Random ranking: a user's expected Recall@20 is 20 / (items it has not trained on).
    has_valid = valid.degrees() > 0
    random_recall = float(np.mean(20 / (train.num_cols - train.degrees()[has_valid])))
    assert out["epoch"] == 4 and all(np.isfinite(h["loss"]) for h in out["history"])
    assert out["history"][-1]["loss"] < out["history"][0]["loss"]
    assert out["best_valid"]["recall@20"] > 1.5 * random_recall, (out["best_valid"]["recall@20"], random_recall)
