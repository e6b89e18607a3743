"""SimGCL's noisy-view contrast of the ID rows (models/contrast.py `noisy_view_loss`)."""

from __future__ import annotations

import torch

from models.contrast import IdContrastConfig, info_nce, noisy_view_loss


def test_simgcl_views_are_two_noisy_propagations_and_zero_weight_is_off() -> None:
    torch.manual_seed(0)
    num_users, num_items, d = 5, 7, 4
    adj = torch.rand(num_users + num_items, num_users + num_items)
    ego = torch.randn(num_users + num_items, d, requires_grad=True)
    users, items = torch.tensor([0, 1, 1, 3]), torch.tensor([0, 2, 6])
    off = noisy_view_loss(IdContrastConfig(loss_weight=0.0), lambda x: adj @ x, ego, num_users, 2, users, items)
    assert float(off) == 0.0
    # eps 0: both views are the same layer mean (layers 1..L), so the loss is InfoNCE of a view with itself.
    cfg = IdContrastConfig(loss_weight=0.5, eps=0.0, temperature=0.3)
    got = noisy_view_loss(cfg, lambda x: adj @ x, ego, num_users, 2, users, items)
    x1 = adj @ ego
    view = (x1 + adj @ x1) / 2
    u, i = torch.unique(users), torch.unique(items) + num_users
    want = 0.5 * (info_nce(view[u], view[u], 0.3) + info_nce(view[i], view[i], 0.3))
    torch.testing.assert_close(got, want)
    # With noise the two views differ (a different value) and the loss trains the ego rows.
    noisy = noisy_view_loss(IdContrastConfig(loss_weight=0.5, eps=0.5), lambda x: adj @ x, ego, num_users, 2,
                            users, items)
    assert not torch.isclose(noisy, got)
    noisy.backward()
    assert ego.grad is not None and ego.grad.abs().sum() > 0
