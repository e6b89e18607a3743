"""Exposure term: training-only score offset, dropped under do(uniform exposure)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from data_loaders.graph import CSR, lightgcn_adjacency
from models.bpr import bpr_loss_terms
from models.causal import CausalConfig, CausalRec
from models.embeddings import IdTables
from models.exposure import ExposureConfig, ExposureTerm

U, I, D = 12, 10, 8


def _model(mode: str, gamma: float = 1.0) -> tuple[CausalRec, CSR]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, U * I, size=50))
    train = CSR.from_pairs(keys // I, keys % I, U, I)
    features = {"image": torch.randn(I, 6), "text": torch.randn(I, 5)}
    cfg = CausalConfig(exposure=ExposureConfig(mode=mode, gamma=gamma))
    cfg.backdoor = dataclasses.replace(cfg.backdoor, coarse_codes=3, fine_codes=4)
    model = CausalRec(IdTables(U, I, D), num_layers=2, adjacency=lightgcn_adjacency(train), features=features,
                      train=train, reg_weight=1e-4, cfg=cfg)
    return model, train


def test_degree_term_is_gamma_log1p_degree_and_not_checkpointed() -> None:
    degree = torch.tensor([0, 1, 3, 7])
    term = ExposureTerm(degree, ExposureConfig(mode="degree", gamma=2.0))
    assert torch.allclose(term(torch.tensor([3, 0, 2])), 2.0 * torch.log1p(torch.tensor([7.0, 0.0, 3.0])))
    assert "bias" not in term.state_dict() and not list(term.parameters())


def test_none_is_zero_and_unknown_mode_is_rejected() -> None:
    term = ExposureTerm(torch.tensor([1, 2]), ExposureConfig())
    assert not term.enabled and torch.equal(term(torch.tensor([0, 1])), torch.zeros(2))
    with pytest.raises(ValueError, match="exposure.mode.*'popular'"):
        ExposureTerm(torch.tensor([1]), ExposureConfig(mode="popular"))  # type: ignore[arg-type]


def test_item_bias_is_a_learned_parameter() -> None:
    term = ExposureTerm(torch.tensor([1, 2, 3]), ExposureConfig(mode="item_bias"))
    assert [n for n, _ in term.named_parameters()] == ["bias"]
    term(torch.tensor([0, 2])).sum().backward()
    assert torch.equal(term.bias.grad, torch.tensor([1.0, 0.0, 1.0]))


def test_margin_enters_the_bpr_difference() -> None:
    user, pos, neg = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    margin = torch.tensor([0.5, -1.0, 2.0, 0.0])
    got = bpr_loss_terms(user, pos, neg, (user,), 0.0, margin=margin)["bpr"]
    diff = (user * pos).sum(-1) - (user * neg).sum(-1) + margin
    assert torch.allclose(got, -torch.log(1e-10 + torch.sigmoid(diff)).mean(), atol=1e-6)


def test_training_loss_uses_the_degree_offset() -> None:
    model, train = _model("degree")
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), torch.tensor([5, 6, 7])
    model.eval()  # no EMA step, so both forwards see the same codebook
    with_term = model(users, pos, neg)["bpr"]
    model.exposure.cfg = ExposureConfig()  # the same weights, no offset
    without = model(users, pos, neg)["bpr"]
    assert not torch.isclose(with_term, without)


def test_observational_and_interventional_embeddings() -> None:
    model, train = _model("degree", gamma=0.5)
    model.eval()
    user, item = model.final_embeddings()
    plain_user, plain_item = model.final_embeddings(uniform_exposure=True)
    assert user.shape[1] == item.shape[1] == D + 1 and plain_item.shape[1] == D
    degree = torch.from_numpy(np.bincount(train.indices, minlength=I)).float()
    # Observational score = the interventional one + gamma·log(1 + deg_i), for every user and item.
    assert torch.allclose(user @ item.T, plain_user @ plain_item.T + 0.5 * torch.log1p(degree), atol=1e-5)
    off, _ = _model("none")
    off.eval()
    assert off.final_embeddings()[0].shape[1] == D
