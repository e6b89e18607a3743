"""`python -m trainer.pruning_by_degree`: the causal subgraph's kept edges by the item's training degree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_loaders.format import Split
from test_explain import CAUSAL, _world_of_one  # tests/trainer is on sys.path (pytest's rootdir-less import)
from trainer.pruning_by_degree import kept_by_degree, main, run_kept_by_degree
from trainer.restore import restore_run


def test_hand_case_counts_per_band() -> None:
    degree = np.array([1, 4, 7, 30])                     # items 0-1 in [1, 5), 2 in [5, 20), 3 in [20, inf)
    edge_item = np.array([0, 1, 1, 2, 3, 3, 3])
    kept = np.array([False, True, False, True, True, True, False])
    r = kept_by_degree(edge_item, kept, degree, (1, 5, 20), "x")
    assert r.edges.tolist() == [3, 1, 3] and r.kept.tolist() == [1, 1, 2]


def test_bad_bands_are_refused() -> None:
    with pytest.raises(ValueError, match="starting at 1"):
        kept_by_degree(np.array([0]), np.array([True]), np.array([3]), (0, 5), "x")
    with pytest.raises(ValueError, match="starting at 1"):
        kept_by_degree(np.array([0]), np.array([True]), np.array([3]), (1, 20, 5), "x")
    assert main(["nowhere"]) == 2


@pytest.fixture(scope="module")
def causal_run(tiny_synthetic, tmp_path_factory) -> str:
    return _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL, "--run.name=pd_s0"],
                         tmp_path_factory.mktemp("runs") / "pd_s0")


def test_cli_reads_the_checkpoints_kept_mask(causal_run: str, tmp_path: Path, capsys) -> None:
    restored = restore_run(causal_run)
    kept = restored.model.frontdoor.kept.numpy()
    assert 0 < kept.sum() < kept.size  # keep_ratio 0.5 after a refresh: something was pruned
    r = run_kept_by_degree(causal_run, (1, 3))
    train = restored.splits[Split.TRAIN]
    assert r.edges.sum() == train.indices.size and r.kept.sum() == kept.sum()
    degree = np.bincount(train.indices, minlength=train.num_cols)
    low = degree[restored.model.frontdoor.edge_item.numpy()] < 3
    assert r.edges[0] == low.sum() and r.kept[0] == (kept & low).sum()
    out = tmp_path / "doc.md"
    assert main([causal_run, causal_run, "--group-seeds", "--degree-bands", "1", "3",
                 "--markdown-section", "pd", "--write", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| pd (n=2) |" in printed and "degree 1-2" in printed and "<!-- begin pd -->" in out.read_text()


def test_a_run_without_a_frontdoor_is_refused(tiny_synthetic, tmp_path: Path, capsys) -> None:
    run = _world_of_one([f"--data.url={tiny_synthetic}", "--model.name=lightgcn", "--model.embedding_dim=16"],
                        tmp_path / "lg", epochs=1)
    assert main([run]) == 2
    assert "no front-door" in capsys.readouterr().err
