"""`python -m trainer.popularity_offset`: a finished run ranked with each offset beta."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data_loaders.format import Split
from test_explain import _world_of_one  # tests/trainer is on sys.path
from trainer.evaluate import evaluate
from trainer.popularity_offset import group, main, sweep_run
from trainer.ranking import popularity_column, with_popularity_offset
from trainer.restore import restore_run


def test_sweep_matches_the_evaluator_at_each_offset(tiny_synthetic, tmp_path: Path, capsys) -> None:
    run = _world_of_one([f"--data.url={tiny_synthetic}", "--model.name=lightgcn", "--model.embedding_dim=16",
                         "--run.name=po_s0"], tmp_path / "po_s0", epochs=1)
    offsets = (-1.0, 0.0, 0.5)
    sweep = sweep_run(run, "valid", offsets)
    restored = restore_run(run)
    user, item = restored.model.final_embeddings()
    train, valid = restored.splits[Split.TRAIN], restored.splits[Split.VALID]
    for j, beta in enumerate(offsets):
        u, i = with_popularity_offset(user, item, popularity_column(train), beta)
        want = evaluate(u, i, valid, [train], ks=(20,), reduce=False).metrics
        assert sweep.values["recall@20"][j] == pytest.approx(want["recall@20"])
        assert sweep.values["ndcg@20"][j] == pytest.approx(want["ndcg@20"])
    assert sweep.values["recall@20"][0] != sweep.values["recall@20"][1]  # beta = -1 reorders this run's lists
    [mean] = group([sweep, sweep])
    assert mean.name == "po (n=2)" and mean.values["recall@20"].tolist() == pytest.approx(sweep.values["recall@20"].tolist())
    out = tmp_path / "doc.md"
    assert main([run, "--offsets", "-1", "0", "0.5", "--group-seeds", "--markdown-section", "po", "--write", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| run | beta -1 | beta +0 | beta +0.5 |" in printed and "| po (n=1) |" in printed and len(re.findall(r"\| \*\*\d", printed)) == 1
    assert "<!-- begin po -->" in out.read_text()


def test_bad_offsets_and_runs_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--offsets", "0", "0"])
    assert main([str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
