"""`python -m trainer.geometry`: alignment, uniformity and co-user cosine of a run's embeddings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from test_explain import _world_of_one  # tests/trainer is on sys.path (pytest's rootdir-less import)
from test_hit_ranks import _csr
from trainer.geometry import alignment, co_user_cosine, geometry, group, main, run_geometry, uniformity
from trainer.restore import restore_run


def test_alignment_is_zero_on_own_items_and_two_for_orthogonal_ones() -> None:
    train = _csr([(0, 0), (1, 1)], 2, 2)
    e = torch.eye(2)
    assert alignment(3 * e, e, train) == pytest.approx(0.0)          # scale does not matter: rows normalised
    assert alignment(e, e.flip(0), train) == pytest.approx(2.0)       # each user orthogonal to its item
    # In chunks: the same mean over pairs of different distances.
    train = _csr([(0, 0), (0, 1), (1, 1)], 2, 2)
    assert alignment(e, e, train, chunk=2) == pytest.approx(alignment(e, e, train)) == pytest.approx(2 / 3)


def test_uniformity_of_equal_rows_is_zero_and_of_antipodal_rows_minus_eight() -> None:
    g = torch.Generator().manual_seed(0)
    assert uniformity(torch.ones(5, 3), 5, g) == pytest.approx(0.0)
    assert uniformity(torch.tensor([[1.0, 0.0], [-2.0, 0.0]]), 2, g) == pytest.approx(-8.0)  # ||x - y||^2 = 4
    # Three orthonormal rows: every distinct pair at squared distance 2.
    assert uniformity(torch.eye(3), 3, g) == pytest.approx(-4.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        uniformity(torch.ones(1, 3), 4, g)


def test_co_user_cosine_separates_clustered_from_scattered_users() -> None:
    # Users 0-1 share item 0, users 2-3 share item 1; 4 and 5 share nothing.
    train = _csr([(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 3)], 6, 4)
    clustered = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1], [-1, 0], [0, -1]])
    g = torch.Generator().manual_seed(0)
    gap = co_user_cosine(clustered, train, 4000, g)
    # Shared pairs have cosine 1; random distinct pairs average sum_{u != v} cos / 30 = -4 / 30 here.
    assert gap == pytest.approx(1 + 4 / 30, abs=0.05)
    scattered = clustered[[0, 2, 1, 4, 3, 5]]  # the same rows, each cluster split
    assert co_user_cosine(scattered, train, 4000, torch.Generator().manual_seed(0)) < gap - 0.5
    with pytest.raises(ValueError, match="two training users"):
        co_user_cosine(clustered, _csr([(0, 0), (1, 1)], 2, 2), 10, g)


def test_figures_repeat_and_groups_average() -> None:
    train = _csr([(u, u % 3) for u in range(12)], 12, 3)
    user, item = torch.randn(12, 4, generator=torch.Generator().manual_seed(1)), torch.randn(3, 4)
    a, b = geometry("x_s0", user, item, train, samples=8), geometry("x_s1", user, item, train, samples=8)
    assert a.alignment == b.alignment and a.uniformity_users == b.uniformity_users
    assert a.co_user_cosine == b.co_user_cosine
    (g,) = group([a, b])
    assert g.name == "x (n=2)" and g.user_norm == pytest.approx(float(user.norm(dim=-1).mean()))


def test_cli_on_a_trained_run(tiny_synthetic, tmp_path: Path, capsys) -> None:
    run = _world_of_one([f"--data.url={tiny_synthetic}", "--model.name=lightgcn", "--model.embedding_dim=16",
                         "--run.name=geo_s0"], tmp_path / "geo_s0", epochs=1)
    out = tmp_path / "doc.md"
    assert main([run, "--samples", "64", "--markdown-section", "geo", "--write", str(out)]) == 0
    assert "| geo_s0 |" in capsys.readouterr().out and "<!-- begin geo -->" in out.read_text()
    (r,) = run_geometry(run, 64)
    assert -4.5 < r.uniformity_items <= 0 and 0 <= r.alignment <= 4 and not math.isnan(r.co_user_cosine)
    assert main(["nowhere"]) == 2
    assert main([run, "--parts"]) == 2  # a LightGCN run has no parts
    with pytest.raises(SystemExit):
        main([run, "--samples", "1"])


def test_parts_of_a_causal_run_add_up_to_its_scores(tiny_synthetic, tmp_path: Path, capsys) -> None:
    from test_explain import CAUSAL

    run = _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL], tmp_path / "geo_causal", epochs=1)
    h, ids, ego, fd, m = run_geometry(run, 64, parts=True)
    assert [x.name.split(": ")[1].split(" ")[0] for x in (ids, ego, fd, m)] == ["ẽ", "e", "h^fd", "m"]
    restored = restore_run(run)
    with torch.no_grad():
        user, _ = restored.model.final_embeddings()
        r = restored.model.represent()
    assert h.user_norm == pytest.approx(float(user.norm(dim=-1).mean()))
    assert ids.user_norm == pytest.approx(float(r.id_user.norm(dim=-1).mean()))
    assert m.item_norm == pytest.approx(float(r.mediator_item.norm(dim=-1).mean()))
    assert main([run, "--parts", "--samples", "64"]) == 0 and "m (mediator)" in capsys.readouterr().out
    # --epoch: the checkpoint written after that epoch (a 1-epoch run has only epoch 1's).
    (at1,) = run_geometry(run, 64, epoch=1)
    assert at1.name.endswith(" @ 1") and at1.alignment == h.alignment
    assert main([run, "--epoch", "7"]) == 2
