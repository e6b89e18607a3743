"""experiments/simgcl_reference.py: the plain-torch SimGCL used to check cimrec's id_contrast."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from data_loaders.graph import CSR

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "simgcl_reference.py"
spec = importlib.util.spec_from_file_location("simgcl_reference", SCRIPT)
simgcl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(simgcl)


def test_adjacency_is_symmetrically_normalised() -> None:
    # users 0, 1; items 0, 1: edges (0,0), (0,1), (1,1)
    train = CSR.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2)
    dense = simgcl.normalised_adjacency(train).to_dense()
    degree = torch.tensor([2.0, 1.0, 1.0, 2.0])  # user 0, user 1, item 0, item 1
    adj = torch.zeros(4, 4)
    for u, i in [(0, 0), (0, 1), (1, 1)]:
        adj[u, 2 + i] = adj[2 + i, u] = 1.0
    assert torch.allclose(dense, adj / torch.sqrt(degree[:, None] * degree[None, :]))


def test_propagation_without_noise_is_the_layer_mean() -> None:
    train = CSR.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2)
    adjacency = simgcl.normalised_adjacency(train)
    dense, ego = adjacency.to_dense(), torch.randn(4, 3)
    one, two = dense @ ego, dense @ dense @ ego
    assert torch.allclose(simgcl.propagate(adjacency, ego, 2, 0.0, 0), (ego + one + two) / 3, atol=1e-6)
    assert torch.allclose(simgcl.propagate(adjacency, ego, 2, 0.0, 1), (one + two) / 2, atol=1e-6)
    noisy = simgcl.propagate(adjacency, ego, 2, 0.1, 1)
    assert not torch.allclose(noisy, (one + two) / 2)


def test_training_reports_both_terms_and_writes_its_history(tiny_synthetic: str, tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    simgcl.main(["--data", tiny_synthetic, "--epochs", "2", "--dim", "8", "--batch", "256", "--json", str(out)])
    history = json.loads(out.read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["contrast"] > 0 and 0 < r["bpr"] < 1 and 0 <= r["valid_recall@20"] <= 1 for r in history)
    plain = simgcl.train(simgcl.parse_args(["--data", tiny_synthetic, "--epochs", "1", "--dim", "8",
                                            "--weight", "0"]))
    assert plain[0]["contrast"] == 0
