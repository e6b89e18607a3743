"""Back-door adjustment: straight-through, restarts and re-fits over levels, the prior, the adjusted
sum (one level alone: test_vq.py)."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from models.backdoor import Backdoor, BackdoorConfig
from models.vq import VectorQuantizer
from spawn_ranks import spawn_ranks

D = 4


def _flat(**kw) -> BackdoorConfig:
    base = dict(hierarchical=False, coarse_codes=4, data_init=False, ema_epsilon=0.0, dead_code_threshold=0.0)
    return BackdoorConfig(**{**base, **kw})


@pytest.mark.parametrize("every, start, epoch, refits", [(0, 10, 10, False), (5, 10, 9, False), (5, 10, 10, True),
                                                       (5, 10, 13, False), (5, 10, 20, True), (1, 0, 0, True)])
def test_refits_in_reads_start_and_period(every: int, start: int, epoch: int, refits: bool) -> None:
    assert BackdoorConfig(refit_every=every, refit_start=start).refits_in(epoch) == refits


def _stranded_two_level(store: str) -> tuple[Backdoor, torch.Tensor]:
    """Codes stranded far from the items, as after ẑ drifted: every item on coarse code 0."""
    torch.manual_seed(0)
    backdoor = Backdoor(2, BackdoorConfig(coarse_codes=3, fine_codes=2, data_init=False, ema_epsilon=0.0,
                                          dead_code_threshold=0.0, refit_iters=20, store=store)).train()
    centres = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    z = torch.cat([c + 0.3 * torch.randn(40, 2) for c in centres])
    for vq in backdoor.levels:
        vq.store.restart_(torch.arange(vq.num_codes), torch.full((vq.num_codes, 2), 50.0) +
                          torch.arange(vq.num_codes, dtype=torch.float32)[:, None], 2.0)
    return backdoor, z


@pytest.mark.parametrize("store", ["buffer", "table"])
def test_refit_puts_stranded_codes_on_the_item_clusters(store: str) -> None:
    backdoor, z = _stranded_two_level(store)
    coarse, fine = backdoor.levels
    assert backdoor.assign(z)[0].unique().numel() == 1  # collapsed: the nearest stranded code takes all
    total = float(coarse.store.ema_count().sum())
    backdoor.refit_(z, epoch=10)
    idx = backdoor.assign(z)
    # Each planted cluster is one coarse code, its centroid the cluster's mean.
    assert sorted(torch.bincount(idx[0]).tolist()) == [40, 40, 40]
    for c in range(3):
        torch.testing.assert_close(coarse.store.weight()[c], z[idx[0] == c].mean(0))
    # EMA state: members at the centroid, the total EMA count kept (it counts per step, not per catalog).
    torch.testing.assert_close(coarse.store.ema_count(), torch.full((3,), total / 3))
    torch.testing.assert_close(coarse.store.sum, coarse.store.weight() * (total / 3))
    # The fine level was re-fitted on the residuals of the new coarse codes: both its codes hold items.
    assert torch.bincount(idx[1], minlength=2).min() > 0
    residual = z - coarse.store.weight()[idx[0]]
    for c in range(2):
        torch.testing.assert_close(fine.store.weight()[c], residual[idx[1] == c].mean(0))


def test_refit_is_seeded_by_the_epoch() -> None:
    a, z = _stranded_two_level("buffer")
    b, _ = _stranded_two_level("buffer")
    torch.manual_seed(123)  # the global stream does not matter ...
    a.refit_(z, epoch=3)
    torch.manual_seed(456)
    b.refit_(z, epoch=3)
    for va, vb in zip(a.levels, b.levels):
        assert torch.equal(va.store.weight(), vb.store.weight())
    state = torch.random.get_rng_state()
    a.refit_(z, epoch=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # ... and is not consumed


@pytest.mark.parametrize("restart_epochs, epoch, restarted", [(0, 50, True), (2, 1, True), (2, 2, False)])
def test_restarts_stop_after_restart_epochs(restart_epochs: int, epoch: int, restarted: bool) -> None:
    cfg = _flat(coarse_codes=2, ema_decay=0.1, dead_code_threshold=0.5, restart_epochs=restart_epochs, store="buffer")
    backdoor = Backdoor(2, cfg).train()
    vq = backdoor.levels[0]
    far = torch.tensor([[0.0, 0.0], [100.0, 100.0]])
    vq.store.restart_(torch.arange(2), far)
    backdoor.start_epoch(epoch)
    vq(torch.randn(5, 2) * 0.1)  # code 1 wins nothing: dead by the threshold
    assert (not torch.equal(vq.store.weight()[1], far[1])) == restarted
    assert float(vq.store.ema_count()[1]) == pytest.approx(2.35 if restarted else 0.1)  # mean count, or the decayed one


def test_straight_through_and_commitment_gradient() -> None:
    torch.manual_seed(0)
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=5, data_init=False, beta=0.25)).eval()
    z = torch.randn(6, D, requires_grad=True)
    out = bd(torch.randn(6, D), z)
    c1, c2 = (vq.store.weight() for vq in bd.levels)
    k1, k2 = out.codes
    torch.testing.assert_close(out.z_q, c1[k1] + c2[k2])  # forward: the quantised value
    g = torch.randn(6, D)
    (gz,) = torch.autograd.grad((out.z_q * g).sum(), z, retain_graph=True)
    torch.testing.assert_close(gz, g)  # backward: identity to the encoder
    (gc,) = torch.autograd.grad(out.loss, z)
    r = z.detach() - c1[k1]
    expect = 0.25 * 2 / z.numel() * ((z.detach() - c1[k1]) + (r - c2[k2]))
    torch.testing.assert_close(gc, expect)
    assert not any(p.requires_grad for p in bd.levels.buffers())


def test_backdoor_sum_equals_definition() -> None:
    """3 items, 4 codes: x + sum_k P_k a_ik W c_k / sum_k P_k a_ik, computed with loops."""
    torch.manual_seed(0)
    bd = Backdoor(D, _flat(temperature=0.7, prior_smoothing=0.5)).eval()
    vq, attn = bd.levels[0], bd.attention[0]
    codes = torch.randn(4, D)
    vq.store.restart_(torch.arange(4), codes)
    vq.prior_counts.copy_(torch.tensor([5.0, 0.0, 2.0, 1.0]))
    x, z = torch.randn(3, D), torch.randn(3, D)
    out = bd(x, z)
    prior = [(n + 0.5) / (8 + 4 * 0.5) for n in (5.0, 0.0, 2.0, 1.0)]
    wq, wk, wv = (w.detach() for w in (attn.query.weight, attn.key.weight, attn.value.weight))
    for i in range(3):
        num, den = torch.zeros(D), 0.0
        for k in range(4):
            a = math.exp(float((wq @ x[i]) @ (wk @ codes[k])) / (0.7 * math.sqrt(D)))
            num = num + prior[k] * a * (wv @ codes[k])
            den += prior[k] * a
        torch.testing.assert_close(out.x_bd[i], x[i] + num / den)


def test_hierarchical_adds_both_levels() -> None:
    torch.manual_seed(0)
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=5, data_init=False)).eval()
    x, z = torch.randn(4, D), torch.randn(4, D)
    out = bd(x, z)
    terms = [attn(x, vq.store.weight(), vq.prior()) for vq, attn in zip(bd.levels, bd.attention)]
    torch.testing.assert_close(out.x_bd, x + terms[0] + terms[1])
    assert [c.shape for c in out.codes] == [(4,), (4,)]
    # Uniform prior before any refresh; counts prior after it.
    torch.testing.assert_close(bd.levels[1].prior(), torch.full((5,), 0.2))
    idx = bd.refresh_prior(z)
    n = torch.bincount(idx[0], minlength=3).float()
    torch.testing.assert_close(bd.levels[0].prior(), (n + 1) / (4 + 3))
    assert torch.equal(idx[1], out.codes[1])


def test_ema_prior() -> None:
    vq = VectorQuantizer(3, D, _flat(coarse_codes=3, prior="ema"))
    vq.store.ema_count().copy_(torch.tensor([1.0, 3.0, 0.0]))
    torch.testing.assert_close(vq.prior(), torch.tensor([0.25, 0.75, 0.0]))


def test_gradients_of_adjustment() -> None:
    torch.manual_seed(0)
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=4)).train()
    x, z = torch.randn(10, D, requires_grad=True), torch.randn(10, D, requires_grad=True)
    out = bd(x, z)
    (out.x_bd.square().sum() + out.loss).backward()
    for name, p in bd.named_parameters():
        if name.startswith("codebook."):  # the codes' TorchRec table (store: table): EMA only, never a gradient
            assert p.grad is None, name
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert bd.codebook is not None  # the default store is the table
    assert x.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
    assert out.terms["perplexity_coarse"] >= 1


def test_off_switch() -> None:
    bd = Backdoor(D, BackdoorConfig(enabled=False))
    x = torch.randn(3, D)
    out = bd(x, torch.randn(3, D))
    assert out.x_bd is x and out.loss == 0 and out.z_q is None
    assert len(list(bd.parameters())) == 0 and len(list(bd.buffers())) == 0
    assert bd.dictionary() is None


def _dist_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(100 + rank)  # different RNG streams: data init and restarts must still agree
        z = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
        out = {}
        for name, threshold in (("ema", 0.0), ("restart", 10.0)):  # 10 x the mean: every code restarted
            cfg = BackdoorConfig(coarse_codes=3, ema_decay=0.5, ema_epsilon=0.0, dead_code_threshold=threshold,
                                 allreduce_stats=True)
            vq = VectorQuantizer(3, 2, cfg).train()
            vq(z[2 * rank:2 * rank + 2])  # data init (broadcast) + one EMA step on summed statistics
            out[name] = {"codes": vq.store.weight().clone(), "count": vq.store.ema_count().clone()}
        # A k-means re-fit: rank 0's centroids everywhere, even from last-bit-different inputs.
        bd = Backdoor(2, BackdoorConfig(coarse_codes=2, fine_codes=2, store="buffer", refit_iters=5)).train()
        bd.refit_(z + 1e-6 * rank, epoch=7)
        out["refit"] = {"codes": torch.cat([vq.store.weight() for vq in bd.levels]),
                        "count": torch.cat([vq.store.ema_count() for vq in bd.levels])}
        torch.save(out, Path(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_two_ranks_share_one_codebook(tmp_path) -> None:
    spawn_ranks(_dist_worker, (str(tmp_path / "init"), str(tmp_path)), init_file=str(tmp_path / "init"))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for name in ("ema", "restart", "refit"):
        torch.testing.assert_close(r0[name]["codes"], r1[name]["codes"], rtol=0, atol=0)
        torch.testing.assert_close(r0[name]["count"], r1[name]["count"], rtol=0, atol=0)
    # Summed statistics: all 4 items counted (init 4/3 per code, then 0.5 * 4 + 0.5 * 4), not one rank's 2 (2).
    assert float(r0["ema"]["count"].sum()) == pytest.approx(4.0)
    rank0_rows = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    assert all(any(torch.equal(c, r) for r in rank0_rows) for c in r0["restart"]["codes"])
    assert bool((r0["restart"]["count"] == r0["restart"]["count"][0]).all())


def test_refresh_before_training_initialises_from_all_items() -> None:
    torch.manual_seed(0)
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=4))
    z = torch.randn(20, D)
    idx = bd.refresh_prior(z)
    assert all(bool(vq.initialized) for vq in bd.levels)
    assert all(any(torch.equal(c, row) for row in z) for c in bd.levels[0].store.weight())
    torch.testing.assert_close(bd.levels[0].store.ema_count(), torch.full((3,), 20 / 3))
    torch.testing.assert_close(bd.levels[0].prior(), (torch.bincount(idx[0], minlength=3) + 1.0) / (20 + 3))
    before = bd.levels[0].store.weight().clone()
    bd.refresh_prior(z)  # initialised once only
    torch.testing.assert_close(bd.levels[0].store.weight(), before)


def test_usage_stats_hand_case() -> None:
    """Counts [3, 1, 0, 0] under an unsmoothed count prior: P = [3/4, 1/4, 0, 0]."""
    bd = Backdoor(D, _flat(prior_smoothing=0.0))
    bd.levels[0].prior_counts.copy_(torch.tensor([3.0, 1.0, 0.0, 0.0]))
    stats = bd.usage_stats()
    assert set(stats) == {"coarse_used", "coarse_perplexity", "coarse_dead_fraction"}  # flat: one level
    assert stats["coarse_used"] == 2 and stats["coarse_dead_fraction"] == 0.5
    assert stats["coarse_perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert bd.usage_counts() == {"coarse": [3, 1, 0, 0]}
    # The smoothed prior the adjustment uses, (n + 1) / (4 + 4): perplexity of [4, 2, 1, 1] / 8.
    bd.cfg.prior_smoothing = 1.0
    p = [0.5, 0.25, 0.125, 0.125]
    assert bd.usage_stats()["coarse_perplexity"] == pytest.approx(math.exp(-sum(x * math.log(x) for x in p)))


def test_usage_stats_per_level_after_refresh() -> None:
    torch.manual_seed(0)
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=5, prior_smoothing=0.0))
    idx = bd.refresh_prior(torch.randn(30, D))
    counts = bd.usage_counts()
    assert counts == {"coarse": torch.bincount(idx[0], minlength=3).tolist(),
                      "fine": torch.bincount(idx[1], minlength=5).tolist()}
    stats = bd.usage_stats()
    for name, k in (("coarse", 3), ("fine", 5)):
        used = sum(c > 0 for c in counts[name])
        assert stats[f"{name}_used"] == used and stats[f"{name}_dead_fraction"] == pytest.approx(1 - used / k)
        assert 1.0 <= stats[f"{name}_perplexity"] <= used + 1e-9  # uniform over the used codes at most
    assert Backdoor(D, BackdoorConfig(enabled=False)).usage_stats() == {}


@pytest.mark.parametrize("threshold, restart_epochs, refit_every, epoch, warns",
                         [(0.0, 0, 0, 3, True), (0.1, 0, 0, 3, False), (0.1, 2, 0, 3, True), (0.1, 5, 0, 3, False),
                          (0.0, 0, 5, 3, False)])
def test_a_level_on_one_code_without_restarts_is_warned_about_once(threshold: float, restart_epochs: int,
                                                                   refit_every: int, epoch: int, warns: bool) -> None:
    backdoor = Backdoor(2, _flat(hierarchical=True, coarse_codes=3, fine_codes=4, dead_code_threshold=threshold,
                                 restart_epochs=restart_epochs, refit_every=refit_every, store="buffer"))
    coarse, fine = backdoor.levels
    coarse.prior_counts.copy_(torch.tensor([0.0, 9.0, 0.0]))  # every item on code 1
    fine.prior_counts.copy_(torch.tensor([3.0, 0.0, 6.0, 0.0]))  # two codes in use: not collapsed
    backdoor.start_epoch(epoch)
    if warns:
        with pytest.warns(RuntimeWarning, match="coarse codebook: every item is on one of its 3 codes"):
            assert backdoor.warn_if_collapsed(epoch) == ["coarse"]
    assert backdoor.warn_if_collapsed(epoch) == []  # once per level (or never, while restarts or re-fits can revive codes)
