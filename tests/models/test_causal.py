"""The wired causal model: full step, off switches, per-epoch refreshes, evaluation embeddings."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from data_loaders.graph import CSR, lightgcn_adjacency
from models.bpr import Ranking, softmax_terms
from models.causal import CausalConfig, CausalRec
from models.embeddings import IdTables

U, I, D = 12, 10, 8


def _model(**switches: Any) -> CausalRec:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, U * I, size=50))
    train = CSR.from_pairs(keys // I, keys % I, U, I)
    features = {"image": torch.randn(I, 6), "text": torch.randn(I, 5)}
    cfg = CausalConfig(user_content_in_score=switches.get("user_content", False),
                       eval_chunk_items=switches.get("eval_chunk_items", 65536))
    cfg.backdoor = dataclasses.replace(cfg.backdoor, coarse_codes=3, fine_codes=4,
                                       enabled=switches.get("backdoor", True))
    cfg.diffusion = dataclasses.replace(cfg.diffusion, enabled=switches.get("diffusion", True))
    cfg.backbone = dataclasses.replace(cfg.backbone, edge_keep=switches.get("edge_keep", 1.0))
    cfg.frontdoor = dataclasses.replace(cfg.frontdoor, enabled=switches.get("frontdoor", True), warmup_epochs=1,
                                        refresh_every=1, keep_ratio=0.5)
    return CausalRec(IdTables(U, I, D), num_layers=2, adjacency=lightgcn_adjacency(train), features=features,
                     train=train, reg_weight=1e-4, cfg=cfg, ranking=switches.get("ranking", Ranking()))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])


def test_step_trains_every_dense_parameter_and_loss_decreases() -> None:
    model = _model()
    model.train()
    out = model(*_batch())
    assert set(out) >= {"loss", "bpr", "reg", "diffusion", "vq", "topo"}
    out["loss"].backward()
    # The codebook's TorchRec table (backdoor.codebook) learns by EMA only: never a gradient.
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("backdoor.codebook."))
    dense = [(n, p) for n, p in model.named_parameters() if "tables" not in n and not n.startswith("backdoor.codebook.")]
    assert dense and all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in dense), \
        [n for n, p in dense if p.grad is None]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = model(*_batch())["bpr"]
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < first


def _eval_model_with_open_gates() -> CausalRec:
    """After the first epoch's refreshes, in eval mode (no EMA step between two forwards), with
    both adjustment terms in the score."""
    model = _model()
    model.start_epoch(0)
    model.eval()
    with torch.no_grad():
        model.gate_frontdoor.fill_(0.7)
        model.gate_backdoor.fill_(0.5)
    return model


def test_the_steps_batch_rows_score_like_the_full_representation() -> None:
    # A training step runs the front-door head on its batch's rows only: the BPR term must be the
    # one of the full representation (eval mode: no EMA step between the two forwards).
    model = _eval_model_with_open_gates()
    users, pos, neg = _batch()
    got = model(users, pos, neg)["bpr"]
    r = model.represent()
    diff = (r.user[users] * (r.item[pos] - r.item[neg])).sum(-1)
    torch.testing.assert_close(got, -torch.nn.functional.logsigmoid(diff).mean())


def test_candidate_pools_train_on_each_rows_hardest_negative_by_the_full_score() -> None:
    # train.negative_candidates: the hardest candidate by <h_u, h_i> (ID + back-door + front-door
    # parts), and then exactly the step of those negatives (eval mode: no EMA step in between).
    model = _eval_model_with_open_gates()
    users, pos, _ = _batch()
    pools = torch.tensor([[5, 9, 0], [6, 0, 7], [8, 1, 9], [2, 5, 6]])
    r = model.represent()
    hardest = pools.gather(1, (r.user[users].unsqueeze(1) * r.item[pools]).sum(-1).argmax(1, keepdim=True)).squeeze(1)
    got, want = model(users, pos, pools), model(users, pos, hardest)
    for key in ("loss", "bpr", "topo", "contrast"):
        torch.testing.assert_close(got[key], want[key])


def test_sampled_mode_refuses_candidate_pools() -> None:
    model = _model()
    model.sampled = True
    with pytest.raises(ValueError, match=r"causal with backbone\.graph_mode sampled: train\.negative_candidates"):
        model(torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 3]]))


def test_all_modules_off_is_backbone_plus_plain_content() -> None:
    model = _model(backdoor=False, diffusion=False, frontdoor=False)
    model.eval()
    r = model.represent()
    assert torch.count_nonzero(r.frontdoor_user) == 0 and torch.count_nonzero(r.frontdoor_item) == 0
    content = torch.stack(list(model.projection(model.inputs, normalized=True).values())).mean(0)
    assert torch.allclose(r.backdoor_item, content)
    assert float(r.losses["vq"]) == 0.0


def test_start_epoch_refreshes_subgraph_after_warmup_without_isolating_users() -> None:
    model = _model()
    first = model.start_epoch(0)
    assert not any(k.startswith("frontdoor/") for k in first)  # warm-up: all edges kept
    assert bool(model.frontdoor.kept.all())
    # codebook usage after the prior refresh: scalars, plus per-code counts over all I items
    assert sum(first["codebook/coarse_counts"]) == I and len(first["codebook/fine_counts"]) == 4
    assert first["codebook/coarse_used"] == sum(c > 0 for c in first["codebook/coarse_counts"])
    assert 1 <= first["codebook/coarse_perplexity"] <= 3
    stats = model.start_epoch(1)
    assert 0 < stats["frontdoor/kept_fraction"] < 1
    assert 0 < stats["frontdoor/mean_kept_weight"] <= 1  # kept edges weighted by their score in (0, 1)
    kept_users = torch.unique(model.frontdoor.edge_user[model.frontdoor.kept])
    assert torch.equal(kept_users, torch.unique(model.frontdoor.edge_user))
    assert model.training  # restored


def test_evaluation_embeddings_do_not_move_the_codebook() -> None:
    model = _model()
    model.train()
    model(*_batch())  # first training step initialises the codes
    model.eval()
    before = model.backdoor.levels[0].codes().clone()
    user, item = model.final_embeddings()
    assert user.shape == (U, D) and item.shape == (I, D)
    assert torch.equal(before, model.backdoor.levels[0].codes())


def test_negative_eval_chunk_items_is_refused() -> None:
    with pytest.raises(ValueError, match="eval_chunk_items must be >= 0"):
        _model(eval_chunk_items=-1)


def test_softmax_ranking_term_trains_and_refuses_pairwise_score_corrections() -> None:
    model = _model(ranking=Ranking("softmax", 0.5)).eval()  # eval: no EMA step between the two passes
    users, pos, neg = _batch()
    torch.manual_seed(7)
    out = model(users, pos, neg)
    torch.manual_seed(7)  # the same diffusion noise: the ranking term is the softmax of these rows
    r = model.represent(rows=(torch.unique(users), torch.unique(torch.cat([pos, neg]))))
    want = softmax_terms(r.user[users], r.item[pos], r.item[neg], pos, neg, 0.5).mean()
    torch.testing.assert_close(out["bpr"].detach(), want, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert model.tables.ebc.embedding_bags["item"].weight.grad is not None
    with pytest.raises(ValueError, match="softmax cannot train .*user_content_in_score=True"):
        _model(user_content=True, ranking=Ranking("softmax"))


def test_needs_features() -> None:
    train = CSR.from_pairs(np.array([0]), np.array([0]), 1, 1)
    with pytest.raises(ValueError, match="content features"):
        CausalRec(IdTables(1, 1, 4), num_layers=1, adjacency=lightgcn_adjacency(train), features={}, train=train,
                  reg_weight=0.0)


def test_user_content_in_score_adds_the_gated_mean_content_of_the_users_items() -> None:
    plain, with_uc = _model(), _model(user_content=True)
    assert "gate_user_content" not in dict(plain.named_parameters())  # other configs' checkpoints unchanged
    with_uc.eval()
    with torch.no_grad():
        with_uc.gate_user_content.fill_(0.5)
    r = with_uc.represent()
    c_u = with_uc.frontdoor.user_content(r.backdoor_item)
    torch.testing.assert_close(r.user, r.id_user + r.gate_frontdoor * r.frontdoor_user + 0.5 * c_u)
    # The gate learns from the ranking loss (it starts at gate_init = 0, like the other gates).
    with_uc.train()
    with torch.no_grad():
        with_uc.gate_user_content.zero_()
    with_uc(*_batch())["bpr"].backward()
    assert with_uc.gate_user_content.grad is not None and float(with_uc.gate_user_content.grad.abs()) > 0


def test_user_content_scores_the_positive_with_a_profile_that_leaves_it_out() -> None:
    model = _model(user_content=True)
    model.eval()  # no EMA step, no diffusion noise: represent() is deterministic
    with torch.no_grad():
        model.gate_user_content.fill_(0.7)
    fd = model.frontdoor
    # One training edge per user (as BPR positives always are), users of degree 1 included.
    first = {int(u): int(i) for u, i in zip(fd.edge_user.flip(0), fd.edge_item.flip(0))}
    users, pos = torch.tensor(list(first)), torch.tensor(list(first.values()))
    assert {int(d) for d in fd.user_degree()[users]} >= {1, 2}
    r = model.represent()
    got = model._leave_one_out(r, users, pos, r.item[pos])
    for b, (u, i) in enumerate(zip(users.tolist(), pos.tolist())):
        items = fd.edge_item[fd.edge_user == u]
        others = items[items != i]
        c_loo = r.backdoor_item[others].mean(0) if others.numel() else torch.zeros(D)
        user_loo = r.id_user[u] + r.gate_frontdoor * r.frontdoor_user[u] + 0.7 * c_loo
        torch.testing.assert_close(float(r.user[u] @ r.item[i] + got[b]), float(user_loo @ r.item[i]),
                                   rtol=1e-5, atol=1e-5)


def test_content_mediator_propagates_the_items_content_from_the_users_id_rows() -> None:
    from models.frontdoor import layer_mean

    model = _model()
    model.cfg.frontdoor = dataclasses.replace(model.cfg.frontdoor, mediator_items="content")
    model.frontdoor.cfg = model.cfg.frontdoor
    model.eval()
    r = model.represent()
    want = layer_mean(model.frontdoor.adjacency(), torch.cat([r.ego_user, r.backdoor_item]), 2)
    torch.testing.assert_close(torch.cat([r.mediator_user, r.mediator_item]), want)
    id_based = _model().eval().represent()
    assert not torch.allclose(r.mediator_item, id_based.mediator_item)


def test_evaluation_runs_the_content_path_in_chunks_with_the_same_rows() -> None:
    model = _model().eval()
    model.start_epoch(0)  # codes initialised and a prior: the back-door term is not trivial
    whole = model.represent()  # with a gradient: all items at once, losses formed
    assert set(whole.losses) >= {"diffusion", "vq"}
    model.cfg.eval_chunk_items = 3  # 10 items: chunks of 3, 3, 3, 1
    confounder, x_bd = model.content_rows()
    torch.testing.assert_close(confounder, whole.confounder)
    torch.testing.assert_close(x_bd, whole.backdoor_item)
    with torch.no_grad():
        chunked = model.represent()
    assert chunked.losses == {}
    torch.testing.assert_close(chunked.user, whole.user)
    torch.testing.assert_close(chunked.item, whole.item)


def test_pruned_pairs_weigh_less_in_the_bpr_term_after_a_refresh() -> None:
    def bpr_after_refresh(weight: float) -> torch.Tensor:
        model = _model()
        model.frontdoor.cfg.pruned_bpr_weight = weight
        torch.manual_seed(5)
        model.start_epoch(0)
        model.start_epoch(1)  # past the warm-up: pruned
        torch.manual_seed(7)  # the same diffusion noise in every call
        train = model.frontdoor
        users, pos = train.edge_user, train.edge_item  # every training pair, pruned ones included
        neg = (pos + 3) % I
        return model(users, pos, neg)["bpr"].detach(), train.kept.clone()

    full, kept = bpr_after_refresh(1.0)
    only_kept, kept_again = bpr_after_refresh(0.0)
    assert torch.equal(kept, kept_again) and bool((~kept).any())
    assert not torch.isclose(full, only_kept)
    # weight 0.5 averages the same per-pair terms with weights between the two
    model_terms = bpr_after_refresh(0.5)[0]
    assert min(full, only_kept) <= model_terms <= max(full, only_kept)


def test_simgcl_term_joins_the_loss_only_when_weighted() -> None:
    import copy
    model = _model()
    model.train()
    twin = copy.deepcopy(model)
    torch.manual_seed(1)
    plain = twin(*_batch())
    assert "id_contrast" not in plain
    model.cfg.id_contrast = dataclasses.replace(model.cfg.id_contrast, loss_weight=0.1)
    torch.manual_seed(1)  # the same draws up to the SimGCL term, which comes last
    out = model(*_batch())
    assert float(out["id_contrast"]) > 0
    torch.testing.assert_close(out["loss"] - out["id_contrast"], plain["loss"])
    # It reaches the ID rows through both noisy propagations.
    out["id_contrast"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.tables.parameters())


def test_backbone_edge_dropout_shapes_training_only() -> None:
    model = _model(edge_keep=0.5)
    model.start_epoch(0)
    assert model.backbone.train_adjacency is not None
    model.train()
    trained_view = model.represent().id_user.detach()
    model.eval()
    with torch.no_grad():
        eval_view = model.represent().id_user
        full = _model().eval().represent().id_user  # same seed and tables: the undropped model
    torch.testing.assert_close(eval_view, full)
    assert not torch.allclose(trained_view, eval_view)


def test_start_epoch_refits_the_codes_on_schedule() -> None:
    model = _model()
    model.cfg.backdoor = dataclasses.replace(model.cfg.backdoor, refit_every=2, refit_start=1)
    model.backdoor.cfg = model.cfg.backdoor
    assert "codebook/refit" not in model.start_epoch(0)  # (the codes' data init happens here)
    before = [vq.store.weight().clone() for vq in model.backdoor.levels]
    stats = model.start_epoch(1)
    assert stats["codebook/refit"] == 1.0
    assert not any(torch.equal(b, vq.store.weight()) for b, vq in zip(before, model.backdoor.levels))
    # The prior is recounted on the re-fitted codes: every item counted once per level.
    for vq in model.backdoor.levels:
        assert float(vq.prior_counts.sum()) == I
    assert "codebook/refit" not in model.start_epoch(2)


def test_start_epoch_ends_the_code_restarts_after_restart_epochs() -> None:
    model = _model()
    model.cfg.backdoor = dataclasses.replace(model.cfg.backdoor, dead_code_threshold=0.1, restart_epochs=2)
    model.backdoor.cfg = model.cfg.backdoor
    model.start_epoch(1)
    assert all(vq.restarts_on for vq in model.backdoor.levels)
    model.start_epoch(2)
    assert not any(vq.restarts_on for vq in model.backdoor.levels)


def test_centroid_dictionary_replaces_the_coarse_codes_in_the_cross_sample_term() -> None:
    model = _model()
    model.cfg.frontdoor = dataclasses.replace(model.cfg.frontdoor, dictionary="centroids")
    model.frontdoor.cfg = model.cfg.frontdoor
    fd = model.frontdoor
    assert float(fd.centroid_prior.sum()) == 0  # not computed yet: x̄ = 0, h^fd = m
    with torch.no_grad():
        r = model.eval().represent()
    torch.testing.assert_close(r.frontdoor_item, r.mediator_item)
    model.start_epoch(0)  # the back-door is on, and still the front-door's own centroids are refreshed
    assert float(fd.centroid_prior.sum()) == pytest.approx(1.0)
    with torch.no_grad():
        r = model.eval().represent()
        want = fd.head(torch.cat([r.mediator_user, r.mediator_item]), (fd.centroids, fd.centroid_prior))
        codes = fd.head(torch.cat([r.mediator_user, r.mediator_item]), model.backdoor.dictionary())
    torch.testing.assert_close(torch.cat([r.frontdoor_user, r.frontdoor_item]), want)
    assert not torch.allclose(want, codes)
    model.cfg.frontdoor = dataclasses.replace(model.cfg.frontdoor, dictionary="codebook")
    model.frontdoor.cfg = model.cfg.frontdoor
    with torch.no_grad():
        torch.testing.assert_close(model.represent().frontdoor_item, codes[U:])


def test_mediator_view_puts_the_front_doors_mediator_in_the_contrastive_term() -> None:
    """contrast.view: mediator: L_cl is the InfoNCE of the ID view against m_u / m_i, not against the content."""
    from models.contrast import cross_view_loss
    model = _model()
    model.cfg.contrast = dataclasses.replace(model.cfg.contrast, view="mediator", loss_weight=1.0)
    users, pos, neg = _batch()
    model.train()
    out = model(users, pos, neg)
    with torch.no_grad():
        r = model.represent()
        want = cross_view_loss(model.cfg.contrast, users, torch.cat([pos, neg]), r.id_user, r.mediator_user,
                               r.id_item, r.mediator_item)
        content = cross_view_loss(model.cfg.contrast, users, torch.cat([pos, neg]), r.id_user,
                                  model.frontdoor.user_content(r.backdoor_item), r.id_item, r.backdoor_item)
    torch.testing.assert_close(out["contrast"], want)
    assert not torch.allclose(want, content)
