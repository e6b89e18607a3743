"""`python -m trainer.hit_ranks`: where the hits land in the ranked list, and what is ranked first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_loaders.format import Split
from data_loaders.graph import CSR
from test_explain import _world_of_one  # tests/trainer is on sys.path (pytest's rootdir-less import)
from trainer.evaluate import evaluate
from trainer.hit_ranks import hit_positions, hit_ranks, main
from trainer.restore import restore_run


def _csr(pairs: list[tuple[int, int]], users: int, items: int) -> CSR:
    rows, cols = (np.array(x, dtype=np.int64) for x in zip(*pairs))
    return CSR.from_pairs(rows, cols, users, items)


def test_hit_positions_are_the_one_based_ranks_of_held_out_items() -> None:
    top = np.array([[5, 3, 9, 1], [2, 4, 6, 8]])
    held = _csr([(0, 9), (0, 1), (1, 7), (2, 2)], 3, 10)      # user 1 misses; user 2 is not ranked
    assert sorted(hit_positions(top, np.array([0, 1]), held).tolist()) == [3, 4]
    assert hit_positions(np.array([[2, -1]]), np.array([2]), held).tolist() == [1]  # -1 padding never hits


def test_hand_case_bands_top1_and_degree() -> None:
    # 4 items, scores u.i = item_emb[i] for every user (1-d): ranking 3 > 2 > 1 > 0.
    user = torch.ones(3, 1)
    item = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    train = _csr([(0, 3), (1, 0), (2, 0), (2, 1)], 3, 4)       # item 0 degree 2, 1: 1, 3: 1
    held = _csr([(0, 2), (1, 3), (2, 2)], 3, 4)
    # user 0: train 3 masked -> ranks 2,1,0: held 2 at rank 1; user 1: 3,2,1 -> held 3 at 1;
    # user 2: 3,2 -> held 2 at rank 2.
    r = hit_ranks(user, item, held, [train], train, "x", bands=(1, 2, 3, 4))
    assert r.users == 3 and r.per_band.tolist() == pytest.approx([2000 / 3, 1000 / 3, 0.0])
    assert r.distinct_top1 == 2 and r.common_top1_share == pytest.approx(1.0)
    assert r.top1_degree == 1.0   # top-1 items 2, 3, 3: degrees 0, 1, 1
    # Recall@1 from the evaluator agrees with the rank-1 band.
    ev = evaluate(user, item, held, [train], ks=(1,), reduce=False).metrics
    assert ev["recall@1"] == pytest.approx(r.per_band[0] / 1000)


def test_bad_bands_are_refused() -> None:
    user, item = torch.ones(1, 1), torch.ones(2, 1)
    held = _csr([(0, 1)], 1, 2)
    with pytest.raises(ValueError, match="increasing positive"):
        hit_ranks(user, item, held, [], held, "x", bands=(3, 2))
    assert main(["nowhere", "--bands", "0", "5"]) == 2


def test_cli_on_a_trained_run_counts_the_evaluators_hits(tiny_synthetic, tmp_path: Path, capsys) -> None:
    run = _world_of_one([f"--data.url={tiny_synthetic}", "--model.name=lightgcn", "--model.embedding_dim=16",
                         "--run.name=hr_s0"], tmp_path / "hr_s0", epochs=1)
    out = tmp_path / "doc.md"
    assert main([run, run, "--group-seeds", "--split", "test", "--bands", "1", "11", "21",
                 "--markdown-section", "hits", "--write", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| hr (n=2) |" in printed and "rank 1-10" in printed and "<!-- begin hits -->" in out.read_text()
    # Hits in the top 20 per user = 20 x the evaluator's Precision@20 (several held-out items per user here).
    restored = restore_run(run)
    user, item = restored.model.final_embeddings()
    train, test = restored.splits[Split.TRAIN], restored.splits[Split.TEST]
    r = hit_ranks(user, item, test, [train], train, "hr", bands=(1, 11, 21))
    p20 = evaluate(user, item, test, [train], ks=(20,), reduce=False).metrics["precision@20"]
    assert r.per_band.sum() / 1000 == pytest.approx(20 * p20)
    assert f"| {r.per_band[0]:.1f} | {r.per_band[1]:.1f} |" in printed
