"""BPR-MF and the shared BPR loss terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bpr import BPRMF, Ranking, RankLoss, bpr_loss_terms, hardest_negatives, softmax_terms
from models.embeddings import IdTables


def _model(reg_weight: float = 1e-3) -> BPRMF:
    torch.manual_seed(0)
    return BPRMF(IdTables(6, 5, 8, init="xavier_normal", device="cpu"), reg_weight)


def test_forward_scores_dot_products_of_ego_rows():
    model = _model(reg_weight=0.2)
    users, pos, neg = torch.tensor([0, 5, 5]), torch.tensor([1, 2, 4]), torch.tensor([0, 0, 3])
    out = model(users, pos, neg)
    user_w, item_w = model.tables.lookup_all()
    want = bpr_loss_terms(user_w[users], item_w[pos], item_w[neg], (user_w[users], item_w[pos], item_w[neg]),
                          reg_weight=0.2)
    assert set(out) == {"loss", "bpr", "reg"}
    for key in out:
        torch.testing.assert_close(out[key], want[key])


TRIPLES = torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([4, 3, 0, 1, 2, 1])


def _sgd_losses(model: BPRMF, steps: int = 10) -> tuple[list[float], bool]:
    """Losses of `steps` SGD steps (lr 1) on TRIPLES, and whether every step's gradient was finite."""
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    losses, finite = [], True
    for _ in range(steps):
        opt.zero_grad()
        out = model(*TRIPLES)
        out["loss"].backward()
        finite = finite and all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        opt.step()
        losses.append(float(out["loss"].detach()))
    return losses, finite


def test_gradients_are_finite_and_sgd_lowers_the_loss():
    losses, finite = _sgd_losses(_model())
    assert finite
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 1e-3


def test_final_embeddings_are_the_tables():
    model = _model()
    user_all, item_all = model.final_embeddings()
    assert user_all.shape == (6, 8) and item_all.shape == (5, 8) and not user_all.requires_grad
    torch.testing.assert_close(user_all, model.tables.ebc.embedding_bags["user"].weight.detach())


def test_bpr_loss_matches_mmrec_formula():
    u, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    out = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1)
    bpr = -np.log(1e-10 + 1 / (1 + np.exp(-2.0)))
    assert out["bpr"].item() == pytest.approx(bpr, rel=1e-6)
    assert out["reg"].item() == pytest.approx(1.0 + 2.0 + 1.0)  # Frobenius norms / batch of 1
    assert out["loss"].item() == pytest.approx(bpr + 0.4, rel=1e-6)


def test_weighted_bpr_is_the_weighted_mean_and_zero_weight_stops_the_gradient():
    g = torch.Generator().manual_seed(3)
    u, p, n = (torch.randn(5, 4, generator=g, requires_grad=True) for _ in range(3))
    plain = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1)
    ones = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1, weight=torch.ones(5))
    torch.testing.assert_close(ones["loss"], plain["loss"])
    w = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    out = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.0, weight=w)
    terms = -torch.log(1e-10 + torch.sigmoid((u * p).sum(-1) - (u * n).sum(-1)))
    torch.testing.assert_close(out["bpr"], (w * terms).sum() / w.sum())
    out["loss"].backward()
    assert p.grad[1].abs().sum() == 0 and p.grad[4].abs().sum() == 0  # weight 0: no pull on the positive
    assert p.grad[0].abs().sum() > 0


SOFTMAX = Ranking(RankLoss.SOFTMAX, temperature=0.5)


def test_softmax_is_the_cross_entropy_of_each_positive_among_the_batch_distinct_items():
    g = torch.Generator().manual_seed(4)
    items = torch.randn(6, 3, generator=g)
    user = torch.randn(4, 3, generator=g)
    # item 2 is two rows' positive and a negative; item 5 is a negative twice
    pos_ids, neg_ids = torch.tensor([2, 0, 2, 3]), torch.tensor([5, 2, 1, 5])
    got = softmax_terms(user, items[pos_ids], items[neg_ids], pos_ids, neg_ids, temperature=0.5)
    candidates = [0, 1, 2, 3, 5]  # each distinct item once
    for b in range(4):
        logits = torch.stack([user[b] @ items[c] for c in candidates]) / 0.5
        want = -torch.log_softmax(logits, 0)[candidates.index(int(pos_ids[b]))]
        torch.testing.assert_close(got[b], want)


def test_softmax_gradient_equals_the_one_through_a_table_of_distinct_items():
    # every occurrence of an item carries the same row, so the gradient reaching the item table
    # must not depend on which occurrence stands for it
    g = torch.Generator().manual_seed(5)
    table = torch.randn(6, 3, generator=g, requires_grad=True)
    user = torch.randn(4, 3, generator=g)
    pos_ids, neg_ids = torch.tensor([2, 0, 2, 3]), torch.tensor([5, 2, 1, 5])
    softmax_terms(user, table[pos_ids], table[neg_ids], pos_ids, neg_ids, 1.0).sum().backward()
    grad = table.grad.clone()
    table.grad = None
    candidates = torch.tensor([0, 1, 2, 3, 5])
    logits = user @ table[candidates].t()
    target = torch.tensor([2, 0, 2, 3])
    torch.nn.functional.cross_entropy(logits, target, reduction="sum").backward()
    torch.testing.assert_close(grad, table.grad)
    assert float(grad[4].abs().max()) == 0  # item 4 is not in the batch


def test_bpr_loss_terms_with_softmax_weights_and_regularises_as_bpr_does():
    g = torch.Generator().manual_seed(6)
    u, p, n = (torch.randn(3, 4, generator=g) for _ in range(3))
    ids = (torch.tensor([0, 1, 2]), torch.tensor([3, 4, 0]))
    w = torch.tensor([1.0, 0.0, 0.5])
    out = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1, weight=w, ranking=SOFTMAX, ids=ids)
    terms = softmax_terms(u, p, n, *ids, temperature=0.5)
    torch.testing.assert_close(out["bpr"], (w * terms).sum() / w.sum())
    plain = bpr_loss_terms(u, p, n, (u, p, n), reg_weight=0.1)
    torch.testing.assert_close(out["reg"], plain["reg"])
    torch.testing.assert_close(out["loss"], out["bpr"] + 0.1 * out["reg"])


def test_softmax_refuses_a_margin_missing_ids_and_a_bad_temperature():
    u = torch.randn(2, 3)
    with pytest.raises(ValueError, match="needs model.loss: bpr"):
        bpr_loss_terms(u, u, u, (u,), 0.0, margin=torch.zeros(2), ranking=SOFTMAX, ids=(torch.arange(2),) * 2)
    with pytest.raises(ValueError, match="item ids"):
        bpr_loss_terms(u, u, u, (u,), 0.0, ranking=SOFTMAX)
    with pytest.raises(ValueError, match="softmax_temperature must be > 0, got 0"):
        Ranking("softmax", 0.0)
    with pytest.raises(ValueError):
        Ranking("hinge")


def test_bprmf_trains_with_the_softmax():
    torch.manual_seed(0)
    model = BPRMF(IdTables(6, 5, 8, init="xavier_normal", device="cpu"), 0.0, ranking=SOFTMAX)
    losses, _ = _sgd_losses(model)
    assert losses[-1] < losses[0] - 1e-3
    users, pos, neg = TRIPLES
    with torch.no_grad():
        user_w, item_w = model.tables.lookup_all()
        want = softmax_terms(user_w[users], item_w[pos], item_w[neg], pos, neg, 0.5).mean()
        torch.testing.assert_close(model(users, pos, neg)["bpr"], want)


def test_hardest_negatives_picks_each_rows_highest_scoring_candidate():
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.1, 0.0], [0.9, -1.0], [0.5, 2.0], [-3.0, 0.4]])
    # Row 0 scores items by their first coordinate, row 1 by the second.
    picked = hardest_negatives(user, items, torch.tensor([[0, 1, 3], [0, 1, 3]]))
    assert picked.tolist() == [1, 3]
    assert hardest_negatives(user, items, torch.tensor([[2, 2], [1, 0]])).tolist() == [2, 0]


def test_bprmf_refuses_candidate_pools():
    with pytest.raises(ValueError, match=r"bprmf: train\.negative_candidates > 1"):
        _model()(torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 3]]))
