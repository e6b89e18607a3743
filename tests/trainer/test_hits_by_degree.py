"""`python -m trainer.hits_by_degree`: held-out items and hits by the item's training degree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_loaders.format import Split
from test_explain import _world_of_one  # tests/trainer is on sys.path (pytest's rootdir-less import)
from test_hit_ranks import _csr
from trainer.evaluate import evaluate
from trainer.hits_by_degree import band_of, degree_hits, main, run_degree_hits
from trainer.restore import restore_run


def test_band_of_puts_each_edge_in_the_band_it_opens_and_the_last_band_is_open() -> None:
    assert band_of(np.array([0, 1, 4, 5, 19, 20, 10_000]), (0, 1, 5, 20)).tolist() == [0, 1, 1, 2, 2, 3, 3]


def test_hand_case_counts_per_band() -> None:
    degree = np.array([0, 3, 7, 50])                    # one item per band of (0, 1, 5, 20)
    held = _csr([(0, 0), (0, 3), (1, 1), (2, 3), (2, 2)], 3, 4)
    top = np.array([[3, -1], [0, 2], [2, 3]])          # user 0 hits 3; user 1 misses 1; user 2 hits 3 and 2
    r = degree_hits(top, np.array([0, 1, 2]), held, degree, "x")
    assert r.held.tolist() == [1, 1, 1, 2] and r.hits.tolist() == [0, 0, 1, 2]


def test_bad_bands_and_k_are_refused() -> None:
    held = _csr([(0, 1)], 1, 2)
    with pytest.raises(ValueError, match="starting at 0"):
        degree_hits(np.array([[1]]), np.array([0]), held, np.array([0, 1]), "x", bands=(1, 5))
    assert main(["nowhere", "--degree-bands", "5", "1"]) == 2
    with pytest.raises(SystemExit):
        main(["nowhere", "--k", "0"])


def test_cli_on_a_trained_run_pools_the_evaluators_hits(tiny_synthetic, tmp_path: Path, capsys) -> None:
    run = _world_of_one([f"--data.url={tiny_synthetic}", "--model.name=lightgcn", "--model.embedding_dim=16",
                         "--run.name=hd_s0"], tmp_path / "hd_s0", epochs=1)
    out = tmp_path / "doc.md"
    assert main([run, run, "--group-seeds", "--split", "test", "--degree-bands", "0", "3",
                 "--markdown-section", "deg", "--write", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| hd (n=2) |" in printed and "degree 0-2" in printed and "<!-- begin deg -->" in out.read_text()
    # Pooled hits in the top 20 = 20 x the evaluator's Precision@20 summed over users; held = all test pairs.
    r = run_degree_hits(run, "test", 20, (0, 3))
    restored = restore_run(run)
    user, item = restored.model.final_embeddings()
    train, test = restored.splits[Split.TRAIN], restored.splits[Split.TEST]
    users = int((np.diff(test.indptr) > 0).sum())
    p20 = evaluate(user, item, test, [train], ks=(20,), reduce=False).metrics["precision@20"]
    assert r.held.sum() == test.indices.size
    assert r.hits.sum() == pytest.approx(20 * p20 * users)
