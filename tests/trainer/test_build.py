"""trainer/build.py: the model of a config, with the config's graph normalisation."""

from __future__ import annotations

import pytest
import torch

from data_loaders.format import Split
from data_loaders.graph import interaction_csr, lightgcn_adjacency
from data_loaders.stream import open_dataset
from trainer.build import build_from_config
from trainer.config import load_config


@pytest.mark.parametrize("name, key", [("lightgcn", "model.lightgcn.norm_power"),
                                       ("causal", "model.causal.backbone.norm_power")])
def test_norm_power_reaches_the_propagation(tiny_synthetic: str, name: str, key: str) -> None:
    cfg = load_config(None, [f"--data.url={tiny_synthetic}", f"--model.name={name}", "--model.embedding_dim=8",
                             f"--{key}=0.7"])
    dataset = open_dataset(cfg.data.url)
    splits = {s: interaction_csr(dataset, s) for s in (Split.TRAIN, Split.VALID, Split.TEST)}
    model = build_from_config(cfg, dataset, splits)
    graph = model.backbone if name == "causal" else model
    x = torch.randn(graph.adjacency.shape[1], 3)
    expected = lightgcn_adjacency(splits[Split.TRAIN], norm_power=0.7).to_dense() @ x
    torch.testing.assert_close(graph.adjacency @ x, expected)
    assert not graph.adjacency.symmetric
