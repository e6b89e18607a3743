"""One codebook level (models/vq.py): the store's EMA formula, EMA toward assigned means, dead-code
restarts, data initialisation and the statistics hook."""

from __future__ import annotations

import pytest
import torch

from models.backdoor import BackdoorConfig
from models.vq import BufferCodebookStore, VectorQuantizer

D = 4


def _flat(**kw) -> BackdoorConfig:
    base = dict(hierarchical=False, coarse_codes=4, data_init=False, ema_epsilon=0.0, dead_code_threshold=0.0)
    return BackdoorConfig(**{**base, **kw})


def test_store_ema_update_is_the_decay_formula() -> None:
    store = BufferCodebookStore(2, 2)
    c0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    store.restart_(torch.arange(2), c0)
    counts, sums = torch.tensor([3.0, 1.0]), torch.tensor([[6.0, 3.0], [-1.0, 2.0]])
    store.ema_update_(counts, sums, decay=0.9, eps=0.0)
    n = 0.9 * 1 + 0.1 * counts
    m = 0.9 * c0 + 0.1 * sums
    torch.testing.assert_close(store.ema_count(), n)
    torch.testing.assert_close(store.weight(), m / n[:, None])


def test_vq_forward_applies_ema_toward_assigned_means() -> None:
    vq = VectorQuantizer(2, 2, _flat(coarse_codes=2, ema_decay=0.8)).train()
    c0 = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    vq.store.restart_(torch.arange(2), c0)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    q, idx, _ = vq(z)
    assert idx.tolist() == [0, 0, 1]
    torch.testing.assert_close(q, c0[idx])  # assigned with the codes before the update
    n = torch.tensor([0.8 + 0.2 * 2, 0.8 + 0.2 * 1])
    m = 0.8 * c0 + 0.2 * torch.tensor([[1.0, 1.0], [9.0, 9.0]])
    torch.testing.assert_close(vq.store.weight(), m / n[:, None])
    # Repeated steps converge to the assigned means; eval mode changes nothing.
    for _ in range(200):
        vq(z)
    torch.testing.assert_close(vq.store.weight(), torch.tensor([[0.5, 0.5], [9.0, 9.0]]), atol=1e-4, rtol=0)
    vq.eval()
    before = vq.store.weight().clone()
    vq(z + 5)
    torch.testing.assert_close(vq.store.weight(), before)


def test_dead_code_restarted_from_encoder_outputs() -> None:
    vq = VectorQuantizer(2, 2, _flat(coarse_codes=2, ema_decay=0.1, dead_code_threshold=0.5)).train()
    vq.store.restart_(torch.arange(2), torch.tensor([[0.0, 0.0], [100.0, 100.0]]))
    z = torch.randn(5, 2) * 0.1
    vq(z)
    code1 = vq.store.weight()[1]
    assert any(torch.equal(code1, row) for row in z)  # replaced by a current encoder output
    n0, n1 = 0.1 * 1 + 0.9 * 5, 0.1 * 1  # EMA counts: 0.1 / mean 2.35 is under the 0.5 threshold
    count = vq.store.ema_count()
    assert float(count[0]) == pytest.approx(n0)  # the used code is untouched by the restart
    assert float(count[1]) == pytest.approx((n0 + n1) / 2)  # restarted with the mean count
    torch.testing.assert_close(vq.store.sum[1], code1 * count[1])


def test_data_init_and_stats_hook() -> None:
    vq = VectorQuantizer(3, D, BackdoorConfig(coarse_codes=3, ema_epsilon=0.0, dead_code_threshold=0.0)).train()
    z = torch.randn(8, D)
    calls = []

    def reduce(t: torch.Tensor) -> torch.Tensor:  # a stand-in for all_reduce over 2 identical ranks
        calls.append(t.shape)
        return t * 2

    vq.reduce_fn = reduce
    vq(z)
    assert bool(vq.initialized)
    # Data init with the (summed) rows shared out, then one EMA step on doubled statistics.
    assert calls == [torch.Size([]), torch.Size([3]), torch.Size([3, D])]
    assert float(vq.store.ema_count().sum()) == pytest.approx(0.99 * 16 + 0.01 * 2 * 8)
