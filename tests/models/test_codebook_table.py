"""The codebook as a TorchRec table (models/codebook_table.py): same codes as the buffer store, sharded.

Single process: `TableCodebookStore` gives bit-identical codes to `BufferCodebookStore` after the
same EMA steps and restarts, and a `Backdoor` on either store computes the same thing.
Two gloo ranks (one spawned group goes through every plan, writes its measurements; the
assertions run here): the codebook is sharded by `shard_model` with the ID tables, every rank
holds the same codes, equal to a single-process buffer-store Backdoor fed the same inputs after
EMA steps and restarts; the optimizers (fused and dense) never change a code; a checkpoint
written per rank restores the codebook shards, and trainer/restore.py reassembles them.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from models.backdoor import Backdoor, BackdoorConfig
from models.vq import BufferCodebookStore
from models.codebook_table import CodebookTable, TableCodebookStore
from models.embeddings import IdTables
from spawn_ranks import spawn_ranks

D = 8  # column-wise blocks are multiples of 4: 8 splits over 2 ranks
CFG = BackdoorConfig(coarse_codes=6, fine_codes=4, ema_decay=0.5, dead_code_threshold=0.3, ema_epsilon=1e-5)
N_ITEMS, N_USERS, STEPS = 60, 5, 4
PLANS = [  # (sharding, kernel, optimizer, weight_decay)
    ("table_wise", "fused", "adagrad", 0.0),
    ("column_wise", "fused", "sgd", 0.0),
    ("row_wise", "fused", "sgd", 0.0),
    ("data_parallel", "dense", "sgd", 0.0),
    ("column_wise", "dense", "adamw", 0.1),  # a torch optimizer with weight decay: still no change to codes
]


def _z(step: int) -> torch.Tensor:
    """Encoder outputs of one step: 3 tight clusters (so codes die and get restarted), same on every rank."""
    g = torch.Generator().manual_seed(step)
    centers = torch.randn(3, D, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.arange(N_ITEMS) % 3
    return centers[labels] + 0.1 * torch.randn(N_ITEMS, D, generator=g)


def _exact(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------- single process


def test_table_store_equals_buffer_store() -> None:
    torch.manual_seed(0)
    table = CodebookTable([5, 3], D)
    stores = [table.make_store(5, D), table.make_store(3, D)]
    with pytest.raises(ValueError):
        table.make_store(3, D)  # only two levels
    buffers = [BufferCodebookStore(5, D), BufferCodebookStore(3, D)]
    for table_store, buffer in zip(stores, buffers):
        start = torch.randn(table_store.num_codes, D)
        table_store.restart_(torch.arange(table_store.num_codes), start)
        buffer.restart_(torch.arange(buffer.num_codes), start)
        g = torch.Generator().manual_seed(table_store.num_codes)
        for step in range(6):
            counts = torch.randint(0, 4, (buffer.num_codes,), generator=g).float()
            sums = torch.randn(buffer.num_codes, D, generator=g) * counts[:, None]
            for store in (table_store, buffer):
                store.ema_update_(counts, sums, decay=0.8, eps=1e-5)
            if step % 2:
                index, vectors = torch.tensor([step % buffer.num_codes]), torch.randn(1, D, generator=g)
                for store in (table_store, buffer):
                    store.restart_(index, vectors, count=2.5)
            _exact(table_store.weight(), buffer.weight())
            _exact(table_store.ema_count(), buffer.ema_count())
            _exact(table_store.sum, buffer.sum)
    # The cache is the table: a fresh lookup gives the same codes.
    cached = [s.weight().clone() for s in stores]
    table.invalidate()
    for store, want in zip(stores, cached):
        _exact(store.weight(), want)
        _exact(table.ebc.embedding_bags[f"codes_{('coarse', 'fine')[store.level]}"].weight.detach(), want)


def _pair(**kw) -> tuple[Backdoor, Backdoor]:
    cfg = dataclasses.replace(CFG, **kw)
    torch.manual_seed(0)
    table = Backdoor(D, dataclasses.replace(cfg, store="table"))
    buffer = Backdoor(D, dataclasses.replace(cfg, store="buffer"))
    buffer.attention.load_state_dict(table.attention.state_dict())
    for vb, vt in zip(buffer.levels, table.levels):  # same starting codes (data_init replaces them anyway)
        vb.store.restart_(torch.arange(vb.num_codes), vt.store.weight())
        vt.store.restart_(torch.arange(vt.num_codes), vt.store.weight())
    return table, buffer


@pytest.mark.parametrize("data_init", [True, False])
def test_backdoor_on_the_table_equals_backdoor_on_buffers(data_init: bool) -> None:
    table, buffer = _pair(data_init=data_init)
    assert isinstance(table.levels[0].store, TableCodebookStore) and table.codebook is not None
    assert isinstance(buffer.levels[0].store, BufferCodebookStore) and buffer.codebook is None
    assert [n for n, _ in table.codebook.named_parameters()] == [
        "ebc.embedding_bags.codes_coarse.weight", "ebc.embedding_bags.codes_fine.weight"]
    x = torch.randn(N_ITEMS, D)
    restarts = []
    original = BufferCodebookStore.restart_

    def counting(self, *args, **kwargs):
        restarts.append(1)
        return original(self, *args, **kwargs)

    for step in range(STEPS):
        outs = []
        for bd in (table.train(), buffer.train()):
            torch.manual_seed(1000 + step)  # the same data-init / restart rows
            with pytest.MonkeyPatch.context() as mp_:
                if bd is buffer:
                    mp_.setattr(BufferCodebookStore, "restart_", counting)
                outs.append(bd(x, _z(step)))
        _exact(outs[0].x_bd, outs[1].x_bd)
        _exact(outs[0].loss, outs[1].loss)
        for vt, vb in zip(table.levels, buffer.levels):
            _exact(vt.store.weight(), vb.store.weight())
            _exact(vt.store.ema_count(), vb.store.ema_count())
    assert len(restarts) > (2 if data_init else 0), "the sequence must restart dead codes"
    for a, b in zip(table.refresh_prior(_z(9)), buffer.refresh_prior(_z(9))):
        _exact(a, b)
    _exact(table.eval()(x, _z(10)).x_bd, buffer.eval()(x, _z(10)).x_bd)


def test_load_state_dict_reaches_the_codes() -> None:
    trained, _ = _pair()
    trained.train()
    for step in range(2):
        trained(torch.randn(N_ITEMS, D), _z(step))
    torch.manual_seed(5)
    fresh = Backdoor(D, CFG)
    before = fresh.levels[0].store.weight().clone()  # fills the cache
    fresh.load_state_dict(trained.state_dict())
    assert not torch.equal(before, trained.levels[0].store.weight())
    for vf, vt in zip(fresh.levels, trained.levels):
        _exact(vf.store.weight(), vt.store.weight())  # no stale cache after a load
    assert "codebook.ebc.embedding_bags.codes_fine.weight" in trained.state_dict()


def test_no_gradient_reaches_the_codes() -> None:
    """Unsharded, a torch optimizer over every parameter (weight decay included) leaves the codes alone."""
    torch.manual_seed(0)
    bd = Backdoor(D, dataclasses.replace(CFG, data_init=False)).eval()  # eval: no EMA step either
    opt = torch.optim.AdamW(bd.parameters(), lr=1.0, weight_decay=0.5)
    before = [vq.store.weight().clone() for vq in bd.levels]
    x, z = torch.randn(N_ITEMS, D, requires_grad=True), torch.randn(N_ITEMS, D, requires_grad=True)
    for _ in range(2):
        opt.zero_grad()
        out = bd(x, z)
        (out.x_bd.square().mean() + out.loss).backward()
        opt.step()
    assert all(p.grad is None for p in bd.codebook.parameters())
    assert bd.attention[0].value.weight.grad is not None
    bd.codebook.invalidate()
    for vq, want in zip(bd.levels, before):
        _exact(vq.store.weight(), want)


# ---------------------------------------------------------------- two ranks


class _Toy(nn.Module):
    """ID tables (trained, so the optimizers demonstrably act) + a back-door on a table codebook."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.tables = IdTables(N_USERS, N_ITEMS, D)
        self.backdoor = Backdoor(D, CFG)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _, items = self.tables.lookup_all()
        out = self.backdoor(items, z)
        return out.x_bd.square().mean() + out.loss


def _step(sharded, step: int, rank: int) -> None:
    torch.manual_seed(1000 + step + 7 * rank)  # rank-dependent RNG: data init and restarts come from rank 0
    loss = sharded.model(_z(step))
    for opt in sharded.optimizers.values():
        opt.zero_grad()
    loss.backward()
    for opt in sharded.optimizers.values():
        opt.step()


def _codes(model: _Toy) -> list[torch.Tensor]:
    model.backdoor.codebook.invalidate()  # a fresh lookup (a collective): the table, not the cache
    return [vq.store.weight().clone() for vq in model.backdoor.levels]


def _run(plan: tuple, rank: int, world_size: int, ckpt_dir: Path) -> dict:
    from trainer import checkpoint
    from trainer.checkpoint import TrainState
    from trainer.sharding import shard_model

    sharding, kernel, optimizer, weight_decay = plan
    opts = dict(device=torch.device("cpu"), sharding=sharding, kernel=kernel, optimizer=optimizer, lr=0.5,
                weight_decay=weight_decay, world_size=world_size)
    sharded = shard_model(_Toy(seed=0), **opts)
    model = sharded.model.module
    items0 = model.tables.lookup_all()[1].detach().clone()
    out: dict = {"plan": sharded.plan_summary, "train": []}
    sharded.model.train()
    for step in range(STEPS):
        _step(sharded, step, rank)
        out["train"].append(_codes(model))
    out["grads"] = {n: p.grad is not None for n, p in sharded.model.named_parameters() if "codebook" in n}
    # Eval mode: no EMA step, so only an optimizer could move the codes; the ID rows must move.
    sharded.model.eval()
    before_items = model.tables.lookup_all()[1].detach().clone()
    for step in range(2):
        _step(sharded, STEPS + step, rank)
    out["after_eval_steps"] = _codes(model)
    out["items_moved"] = float((model.tables.lookup_all()[1] - before_items).abs().max())
    out["items_moved_total"] = float((model.tables.lookup_all()[1] - items0).abs().max())
    out["grads"].update({n: p.grad is not None for n, p in sharded.model.named_parameters() if "codebook" in n})

    # Checkpoint per rank, restore into a differently seeded model, then both take the same step.
    state = TrainState(world_size=world_size, plan=sharded.plan_summary)
    checkpoint.save(ckpt_dir, rank=rank, model=sharded.model, optimizers=sharded.optimizers, sampler_state={},
                    state=state)
    dist.barrier()
    other = shard_model(_Toy(seed=1), **opts)
    out["fresh_differs"] = any(not torch.equal(a, b) for a, b in zip(_codes(other.model.module), out["after_eval_steps"]))
    checkpoint.load(ckpt_dir, rank=rank, model=other.model, optimizers=other.optimizers, world_size=world_size,
                    plan=other.plan_summary)
    out["restored"] = _codes(other.model.module)
    sharded.model.train()
    other.model.train()
    _step(sharded, 50, rank)
    _step(other, 50, rank)
    out["continued"] = [_codes(model), _codes(other.model.module)]
    return out


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=120))
    try:
        results = {}
        for plan in PLANS:
            name = "|".join(map(str, plan))
            ckpt = Path(out_dir, name.replace("|", "_"))
            results[name] = _run(plan, rank, world_size, ckpt)
        torch.save(results, Path(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _reference() -> tuple[list[list[torch.Tensor]], int]:
    """One process, buffer store, the same inputs and rank 0's RNG: the codes after each step."""
    torch.manual_seed(0)
    bd = Backdoor(D, dataclasses.replace(CFG, store="buffer")).train()
    restarts = []
    for vq in bd.levels:
        original = vq.store.restart_
        vq.store.restart_ = lambda *a, _o=original, **k: (restarts.append(1), _o(*a, **k))[1]
    codes, x = [], torch.randn(N_ITEMS, D)  # x does not move codes; drawn before seeding the step's RNG
    for step in range(STEPS):
        torch.manual_seed(1000 + step)
        bd(x, _z(step))
        codes.append([vq.store.weight().clone() for vq in bd.levels])
    return codes, len(restarts)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("codebook")
    spawn_ranks(_worker, (2, str(out / "init"), str(out)), init_file=str(out / "init"))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], out


@pytest.mark.distributed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "|".join(map(str, p)))
def test_sharded_codebook_on_two_ranks(two_ranks, plan) -> None:
    results, out = two_ranks
    name = "|".join(map(str, plan))
    r0, r1 = results[0][name], results[1][name]
    assert r0["plan"] == r1["plan"]
    assert f"backdoor.codebook.ebc.codes_coarse: {plan[0]} ({plan[1]})" in r0["plan"], r0["plan"]
    assert "backdoor.codebook.ebc.codes_fine" in r0["plan"]
    want, restarts = _reference()
    assert restarts > 2, "the reference must restart dead codes beyond the data init"
    for step, expected in enumerate(want):
        for level, code in enumerate(expected):
            _exact(r0["train"][step][level], r1["train"][step][level])  # the same codebook on both ranks
            _exact(r0["train"][step][level], code)  # ... equal to one process on buffers
    for r in (r0, r1):
        # No optimizer step moves a code: no gradient ever reaches the table.
        assert r["grads"] and not any(r["grads"].values()), r["grads"]
        for a, b in zip(r["after_eval_steps"], want[-1]):
            _exact(a, b)
        assert r["items_moved"] > 1e-4 and r["items_moved_total"] > 1e-4, "the optimizer must act on the ID rows"
        # Checkpoint: the restored shards hold the saved codes, and training continues identically.
        assert r["fresh_differs"]
        for a, b in zip(r["restored"], want[-1]):
            _exact(a, b)
        for a, b in zip(*r["continued"]):
            _exact(a, b)
        assert any(not torch.equal(a, b) for a, b in zip(r["continued"][0], want[-1])), "the EMA step must move codes"


@pytest.mark.distributed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("plan", PLANS[:3], ids=lambda p: "|".join(map(str, p)))
def test_restore_reassembles_sharded_codebook(two_ranks, plan) -> None:
    """trainer/restore.py (explain) rebuilds the full codebook from the per-rank shards."""
    from trainer.restore import assemble

    results, out = two_ranks
    name = "|".join(map(str, plan))
    ckpt = out / name.replace("|", "_")
    per_rank = [torch.load(ckpt / f"rank{r}.pt", weights_only=False)["model"] for r in range(2)]
    model = _Toy(seed=3)
    full = assemble(per_rank, model.state_dict(), results[0][name]["plan"], str(ckpt))
    model.load_state_dict(full)
    want, _ = _reference()
    for vq, code in zip(model.backdoor.levels, want[-1]):
        _exact(vq.store.weight(), code)
