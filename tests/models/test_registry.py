"""build_model: one constructor for every model name."""

from __future__ import annotations

import pytest
import torch

from models.bpr import BPRMF
from models.lightgcn import LightGCN
from models.registry import ModelName, build_model

ARGS = dict(num_users=3, num_items=2, dim=4, num_layers=1, reg_weight=0.0, device="cpu")


def _adjacency() -> torch.Tensor:
    return torch.eye(5).to_sparse()


@pytest.mark.parametrize("name,cls", [("bpr", BPRMF), ("lightgcn", LightGCN), (ModelName.LIGHTGCN, LightGCN)])
def test_builds_each_model_with_the_common_interface(name, cls):
    model = build_model(name, adjacency=_adjacency(), **ARGS)
    assert isinstance(model, cls)
    out = model(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([0, 1]))
    assert {"loss", "bpr", "reg"} <= set(out) and out["loss"].ndim == 0
    user_all, item_all = model.final_embeddings()
    assert user_all.shape == (3, 4) and item_all.shape == (2, 4)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'mf'.*'bpr', 'lightgcn'"):
        build_model("mf", adjacency=None, **ARGS)


def test_lightgcn_needs_the_adjacency():
    with pytest.raises(ValueError, match="adjacency"):
        build_model("lightgcn", adjacency=None, **ARGS)


def test_bad_init_scheme_is_refused():
    with pytest.raises(ValueError, match="'uniform' is not a valid InitScheme"):
        build_model("bpr", adjacency=None, init="uniform", **ARGS)


def test_lightgcn_sampled_mode_needs_the_training_graph_not_the_adjacency():
    from data_loaders.graph import CSR
    from models.lightgcn import LightGCNConfig

    options = LightGCNConfig(graph_mode="sampled", fanouts=[2])
    with pytest.raises(ValueError, match="training graph"):
        build_model("lightgcn", adjacency=None, options=options, **ARGS)
    train = CSR.from_pairs([0, 1, 2, 2], [0, 1, 0, 1], 3, 2)
    model = build_model("lightgcn", adjacency=None, options=options, train=train, seed=5, **ARGS)
    assert model.graph_mode == "sampled" and model.sampler.fanouts == [2] and model.seed == 5
    out = model(torch.tensor([0, 2]), torch.tensor([0, 0]), torch.tensor([1, 1]))
    assert torch.isfinite(out["loss"])


def test_a_lazy_adjacency_is_built_only_by_models_that_use_it():
    from data_loaders.graph import CSR
    from models.lightgcn import LightGCNConfig

    calls = []

    def lazy(norm_power: float = 0.5) -> torch.Tensor:  # the model passes its own norm_power
        calls.append(1)
        return _adjacency()

    train = CSR.from_pairs([0, 1, 2, 2], [0, 1, 0, 1], 3, 2)
    build_model("bpr", adjacency=lazy, **ARGS)
    build_model("lightgcn", adjacency=lazy, options=LightGCNConfig(graph_mode="sampled", fanouts=[2]), train=train,
                **ARGS)
    assert calls == []  # neither BPR nor sampled LightGCN propagates the full graph
    model = build_model("lightgcn", adjacency=lazy, **ARGS)
    assert calls == [1] and model.adjacency is not None


def test_the_ranking_term_reaches_every_model_that_scores_pairs():
    from models.bpr import Ranking
    ranking = Ranking("softmax", 0.3)
    for name in ("bpr", "lightgcn"):
        model = build_model(name, adjacency=_adjacency(), ranking=ranking, **ARGS)
        assert model.ranking == ranking
        plain = build_model(name, adjacency=_adjacency(), **ARGS)
        assert plain.ranking.loss.value == "bpr"
