"""The centred codebook (`backdoor.center`): the first level quantises ẑ - m, m a running mean of ẑ."""

from __future__ import annotations

import math

import pytest
import torch

from models.backdoor import Backdoor, BackdoorConfig

D = 4


def _centred(**kw) -> Backdoor:
    torch.manual_seed(0)
    base = dict(coarse_codes=3, fine_codes=4, center=True, dead_code_threshold=0.0, center_decay=0.9)
    return Backdoor(D, BackdoorConfig(**{**base, **kw}))


def test_off_by_default_and_no_new_state() -> None:
    """Without `center`, no buffer is added: checkpoints of earlier runs load strictly as before."""
    bd = Backdoor(D, BackdoorConfig(coarse_codes=3, fine_codes=4))
    assert not any(k.startswith("mean") for k in bd.state_dict())
    z = torch.randn(5, D)
    torch.testing.assert_close(bd.centred(z), z)
    assert set(_centred().state_dict()) - set(bd.state_dict()) == {"mean", "mean_ready"}


def test_the_first_training_step_sets_the_mean_then_an_ema_follows_and_evaluation_leaves_it() -> None:
    bd = _centred().train()
    z1, z2 = torch.randn(8, D) + 3.0, torch.randn(8, D) - 1.0
    bd(torch.randn(8, D), z1)
    torch.testing.assert_close(bd.mean, z1.mean(0))
    bd(torch.randn(8, D), z2)
    torch.testing.assert_close(bd.mean, 0.9 * z1.mean(0) + 0.1 * z2.mean(0))
    before = bd.mean.clone()
    bd.eval()(torch.randn(8, D), torch.randn(8, D) + 10.0)
    bd.refresh_prior(torch.randn(8, D) + 10.0)
    torch.testing.assert_close(bd.mean, before)


def test_forward_value_is_the_mean_plus_the_codes_and_gradients_pass_straight_through() -> None:
    bd = _centred(data_init=False, beta=0.25).eval()
    bd.refresh_prior(torch.randn(6, D) + 2.0)  # sets m before any step
    m = bd.mean.clone()
    z = (torch.randn(6, D) + 2.0).requires_grad_(True)
    out = bd(torch.randn(6, D), z)
    c1, c2 = (vq.store.weight() for vq in bd.levels)
    k1, k2 = out.codes
    torch.testing.assert_close(k1, torch.cdist(z.detach() - m, c1).argmin(1))
    torch.testing.assert_close(out.z_q, m + c1[k1] + c2[k2])
    g = torch.randn(6, D)
    (gz,) = torch.autograd.grad((out.z_q * g).sum(), z, retain_graph=True)
    torch.testing.assert_close(gz, g)
    (gc,) = torch.autograd.grad(out.loss, z)
    u = z.detach() - m
    r = u - c1[k1]
    torch.testing.assert_close(gc, 0.25 * 2 / z.numel() * ((u - c1[k1]) + (r - c2[k2])))


def test_the_adjustment_and_the_dictionary_read_the_codes_in_the_confounders_space() -> None:
    """Flat level, hand loop: x + sum_k P_k a_ik W (m + c_k) / sum_k P_k a_ik."""
    bd = _centred(hierarchical=False, coarse_codes=4, data_init=False, ema_epsilon=0.0).eval()
    bd.mean.copy_(torch.tensor([5.0, -2.0, 0.5, 1.0]))
    bd.mean_ready.fill_(True)
    vq, attn = bd.levels[0], bd.attention[0]
    codes = torch.randn(4, D)
    vq.store.restart_(torch.arange(4), codes)
    vq.prior_counts.copy_(torch.tensor([3.0, 1.0, 0.0, 2.0]))
    prior = vq.prior()
    x, z = torch.randn(3, D), torch.randn(3, D)
    out = bd(x, z)
    wq, wk, wv = (w.detach() for w in (attn.query.weight, attn.key.weight, attn.value.weight))
    values = codes + bd.mean
    for i in range(3):
        num, den = torch.zeros(D), 0.0
        for k in range(4):
            a = math.exp(float((wq @ x[i]) @ (wk @ values[k])) / math.sqrt(D))
            num = num + prior[k] * a * (wv @ values[k])
            den += float(prior[k]) * a
        torch.testing.assert_close(out.x_bd[i], x[i] + num / den)
    dictionary, dict_prior = bd.dictionary()
    torch.testing.assert_close(dictionary, values)
    torch.testing.assert_close(dict_prior, prior)


def _drifting_clusters(steps: int, center: bool) -> Backdoor:
    """Three clusters on a large shared vector that moves after the codes were placed (TikTok's ẑ):
    a step of 3 towards cluster 0 puts every item nearest to code 0, and without restarts the EMA
    then strands codes 1 and 2 where their clusters used to be."""
    bd = _centred(hierarchical=False, coarse_codes=3, center=center).train()
    offsets = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        shared = torch.full((D,), 4.0) + (3.0 * offsets[0] if step >= 5 else 0.0)
        z = torch.cat([shared + o + 0.05 * torch.randn(20, D, generator=gen) for o in offsets])
        bd(torch.randn(60, D), z)
    bd.eval()
    return bd


@pytest.mark.parametrize("center, used", [(False, 1), (True, 3)])
def test_a_drifting_shared_vector_strands_the_codes_unless_centred(center: bool, used: int) -> None:
    bd = _drifting_clusters(30, center)
    shared = torch.full((D,), 4.0) + 3.0 * torch.eye(D)[0]
    z = torch.stack([shared + o for o in torch.eye(D)[:3]])
    assert bd.assign(z)[0].unique().numel() == used


def test_decay_zero_centres_on_each_steps_own_mean() -> None:
    bd = _centred(center_decay=0.0).train()
    for shift in (3.0, -2.0, 7.0):
        z = torch.randn(8, D) + shift
        bd(torch.randn(8, D), z)
        torch.testing.assert_close(bd.mean, z.mean(0))


def test_rank_shares_are_pooled_into_one_mean() -> None:
    """With summed statistics (allreduce_stats) m is the mean over every rank's rows, not this rank's."""
    bd = _centred(allreduce_stats=True).train()
    other = torch.randn(6, D) + 4.0  # what the other rank holds
    other_stats = torch.cat([other.sum(0), torch.tensor([6.0])])
    seen = []

    def reduce(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.shape)
        return t.add_(other_stats) if t.shape == other_stats.shape else t
    for vq in bd.levels:
        vq.reduce_fn = reduce
    mine = torch.randn(2, D)
    bd(torch.randn(2, D), mine)
    torch.testing.assert_close(bd.mean, torch.cat([mine, other]).mean(0))
    assert (D + 1,) in seen


def test_state_round_trip_assigns_alike() -> None:
    bd = _drifting_clusters(10, center=True)
    fresh = Backdoor(D, bd.cfg)
    fresh.load_state_dict(bd.state_dict())
    z = torch.randn(30, D) + 5.0
    for a, b in zip(bd.assign(z), fresh.eval().assign(z)):
        torch.testing.assert_close(a, b)
