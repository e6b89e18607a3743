"""trainer/restore.py + `python -m trainer.explain`: a checkpoint back into one CPU process, explained.

Runs are made in-process the way trainer/loop.py makes them (shard_model over a gloo group,
steps, start_epoch refreshes, trainer/checkpoint.save) without Ray: a world of one in this
process, a spawned pair of ranks for every sharding plan. The sharded model's final embeddings
and front-door mask are saved next to the checkpoint and are what the restored model must give.
One Ray test checks a real trainer run directory (its recorded test Recall@20 is reproduced).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from data_loaders.format import Split
from data_loaders.graph import interaction_csr
from data_loaders.sampler import BPRSampler
from data_loaders.stream import open_dataset
from trainer import checkpoint
from trainer.checkpoint import TrainState
from trainer.config import load_config
from trainer.evaluate import evaluate, topk_items
from trainer.explain import explain_codes, explain_user, main, render_user
from trainer.ranking import popularity_column, ranking_embeddings
from trainer.explain_parts import explain_parts
from trainer.restore import build_from_config, restore_run
from trainer.sharding import shard_model
from spawn_ranks import spawn_ranks

CAUSAL = ["--model.name=causal", "--model.embedding_dim=16", "--model.num_layers=2",
          "--model.causal.backdoor.coarse_codes=4", "--model.causal.backdoor.fine_codes=8",
          "--model.causal.frontdoor.warmup_epochs=0", "--model.causal.frontdoor.refresh_every=1",
          "--model.causal.frontdoor.keep_ratio=0.5", "--model.causal.diffusion.hidden=32"]
PLANS = ["table_wise", "column_wise", "row_wise", "data_parallel"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _make_run(args: list[str], run_dir: Path, rank: int, world_size: int, epochs: int) -> None:
    """Train `epochs` epochs as trainer/loop.py does and write a run directory like a finished run's."""
    cfg = load_config(None, args + ["--train.batch_size=512", "--train.learning_rate=0.01"])
    dataset = open_dataset(cfg.data.url)
    splits = {s: interaction_csr(dataset, s) for s in (Split.TRAIN, Split.VALID, Split.TEST)}
    model = build_from_config(cfg, dataset, splits)
    sharded = shard_model(model, device=torch.device("cpu"), sharding=cfg.train.sharding,
                          kernel=cfg.train.embedding_kernel, optimizer=cfg.train.optimizer,
                          lr=cfg.train.learning_rate, world_size=world_size)
    dmp, inner = sharded.model, sharded.model.module
    sampler = BPRSampler(splits[Split.TRAIN], batch_size=cfg.train.batch_size, rank=rank, world_size=world_size)
    state = TrainState(world_size=world_size, plan=sharded.plan_summary)
    for epoch in range(epochs):
        dmp.train()
        if hasattr(inner, "start_epoch"):
            inner.start_epoch(epoch)
        for batch in sampler.epoch(epoch):
            out = dmp(torch.as_tensor(batch.users), torch.as_tensor(batch.positives), torch.as_tensor(batch.negatives))
            for opt in sharded.optimizers.values():
                opt.zero_grad()
            out["loss"].backward()
            for opt in sharded.optimizers.values():
                opt.step()
    dmp.eval()
    user, item = inner.final_embeddings()
    # On every rank: a codebook in a sharded TorchRec table is read by a collective lookup.
    codes = [vq.codes() for vq in inner.backdoor.levels] if hasattr(inner, "backdoor") else None
    state.epoch = state.best_epoch = epochs
    checkpoint.save(run_dir / "checkpoint_000001", rank=rank, model=dmp, optimizers=sharded.optimizers,
                    sampler_state=sampler.state_dict(), state=state)
    if rank == 0:
        kept = inner.frontdoor.kept.clone() if hasattr(inner, "frontdoor") else None
        torch.save({"user": user, "item": item, "kept": kept, "codes": codes}, run_dir / "expected.pt")
        # An absolute path elsewhere, as after moving a run directory: found by its name in the run.
        (run_dir / "metrics.json").write_text(json.dumps({
            "config": cfg.to_dict(), "best_epoch": epochs, "epoch": epochs,
            "best_checkpoint": "/moved/away/checkpoint_000001"}))


def _world_of_one(args: list[str], run_dir: Path, epochs: int = 2) -> str:
    run_dir.mkdir(parents=True)
    dist.init_process_group("gloo", init_method=f"file://{run_dir.parent / (run_dir.name + '.init')}",
                            rank=0, world_size=1)
    try:
        _make_run(args, run_dir, 0, 1, epochs)
    finally:
        dist.destroy_process_group()
    return str(run_dir)


@pytest.fixture(scope="module")
def causal_run(tiny_synthetic, tmp_path_factory) -> str:
    return _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL], tmp_path_factory.mktemp("runs") / "causal")


@pytest.fixture(scope="module")
def restored(causal_run):
    return restore_run(causal_run)


def _expected(run_dir: str) -> dict:
    return torch.load(Path(run_dir) / "expected.pt")


def test_restored_model_gives_the_trained_embeddings_and_state(causal_run, restored) -> None:
    exp = _expected(causal_run)
    user, item = restored.model.final_embeddings()
    assert torch.allclose(user, exp["user"], atol=1e-5) and torch.allclose(item, exp["item"], atol=1e-5)
    fd = restored.model.frontdoor
    assert torch.equal(fd.kept, exp["kept"]) and not bool(fd.kept.all())  # pruned edges came back
    assert int(fd.last_refresh) == 1 and restored.state.epoch == 2
    assert all(torch.equal(vq.codes(), c) for vq, c in zip(restored.model.backdoor.levels, exp["codes"]))


@pytest.mark.parametrize("user", [0, 7, 123])
def test_decomposition_sums_to_the_evaluators_score(causal_run, restored, user: int) -> None:
    exp = _expected(causal_run)
    train = restored.splits[Split.TRAIN]
    scores, items = topk_items(exp["user"], exp["item"], np.array([user]), 20, [train])
    rep = explain_user(restored, user, 20)
    assert [t["item"] for t in rep["top"]] == items[0].tolist()
    for t, s in zip(rep["top"], scores[0].tolist()):
        assert t["score"] == pytest.approx(s, abs=1e-5)
        assert t["id"] + t["backdoor"] + t["frontdoor"] == pytest.approx(t["score"], abs=1e-5)
        assert len(t["codes"]) == 2
    assert not {t["item"] for t in rep["top"]} & set(train.row(user).tolist())  # training items masked
    assert any(abs(t["backdoor"]) > 1e-3 for t in rep["top"]) and any(abs(t["frontdoor"]) > 1e-3 for t in rep["top"])


@pytest.mark.parametrize("user", [0, 7, 123])
def test_edges_are_the_users_training_items_with_the_models_mask(causal_run, restored, user: int) -> None:
    exp = _expected(causal_run)
    rep = explain_user(restored, user, 5)
    fd = restored.model.frontdoor
    train_items = restored.splits[Split.TRAIN].row(user).tolist()
    assert sorted(e["item"] for e in rep["edges"]) == sorted(train_items)
    mine = (fd.edge_user == user).nonzero().flatten()
    assert [e["kept"] for e in rep["edges"]] == exp["kept"][mine].tolist()
    assert all((e["weight"] > 0) == e["kept"] for e in rep["edges"])
    assert all(0 < e["score_at_refresh"] < 1 and 0 < e["score_now"] < 1 for e in rep["edges"])
    assert rep["last_refresh_epoch"] == 2


def _check_codes_report(restored) -> None:
    """Every level's table agrees with the model's own assignment of every item."""
    rep, _ = explain_codes(restored, members=3)
    assigned = restored.model.backdoor.assign(restored.model.represent().confounder)
    for level, idx in zip(rep["levels"], assigned):
        assert [c["size"] for c in level["codes"]] == torch.bincount(idx, minlength=level["num_codes"]).tolist()
        assert sum(c["size"] for c in level["codes"]) == restored.dataset.manifest.num_items
        assert sum(c["prior"] for c in level["codes"]) == pytest.approx(1.0, abs=1e-5)
        for c in level["codes"]:
            assert len(c["top_items"]) == min(3, c["size"]) and all(int(idx[i]) == c["code"] for i in c["top_items"])
            assert c["distances"] == sorted(c["distances"])


def test_codes_table_and_pngs(causal_run, restored, tmp_path: Path, capsys) -> None:
    _check_codes_report(restored)
    assert main(["--run", causal_run, "--codes", "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    assert "## coarse (4 codes)" in printed and "## fine (8 codes)" in printed
    for name in ("code_usage.png", "items_by_code.png"):
        assert (tmp_path / "figs" / name).read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["code_usage.png", "items_by_code.png"]
    assert main(["--run", causal_run, "--codes"]) == 0  # default: <run>/explain, not the run's own figures
    assert (Path(causal_run) / "explain" / "code_usage.png").read_bytes().startswith(PNG_MAGIC)
    assert not (Path(causal_run) / "code_usage.png").exists()


def test_codes_report_where_inputs_and_codes_sit(causal_run, restored, capsys) -> None:
    model = restored.model
    before = [vq.store.weight().clone() for vq in model.backdoor.levels]
    rep, _ = explain_codes(restored, members=1)
    z = model.represent().confounder
    coarse = rep["levels"][0]["geometry"]
    assert coarse["input_mean_norm"] == pytest.approx(float(z.norm(dim=1).mean()), rel=1e-5)
    assert coarse["input_norm_of_mean"] == pytest.approx(float(z.mean(0).norm()), rel=1e-5)
    assert coarse["input_norm_of_mean"] <= coarse["input_mean_norm"] + 1e-6
    norms = model.backdoor.levels[0].store.weight().norm(dim=1)
    assert (coarse["code_norm_min"], coarse["code_norm_max"]) == pytest.approx((float(norms.min()), float(norms.max())))
    for level in rep["levels"]:
        assert 1.0 <= level["geometry"]["kmeans_perplexity"] <= level["num_codes"] + 1e-6
    # The report's k-means runs on a throwaway copy: the model's own codebook is untouched.
    assert all(torch.equal(b, vq.store.weight()) for b, vq in zip(before, model.backdoor.levels))
    assert main(["--run", causal_run, "--codes", "--json"]) == 0
    assert '"kmeans_perplexity"' in capsys.readouterr().out


def test_cli_user_markdown_and_json(causal_run, capsys) -> None:
    assert main(["--run", causal_run, "--user", "5", "--k", "7"]) == 0
    text = capsys.readouterr().out
    assert "| rank | item | score | ID | back-door | front-door | codes | held out |" in text
    assert "| item | kept | weight | s at refresh | s now |" in text
    assert main(["--run", causal_run, "--user", "5", "--k", "7", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["user"] == 5 and len(rep["top"]) == 7 and rep["decomposed"]


def test_parts_summarise_each_score_part_over_all_users_and_items(causal_run, restored, capsys) -> None:
    rep = explain_parts(restored)
    with torch.no_grad():
        r = restored.model.represent()
    user, item = r.user.detach().double(), r.item.detach().double()
    parts = {p["part"]: p for p in rep["parts"]}
    assert list(parts) == ["id", "backdoor", "frontdoor", "frontdoor.mediator", "frontdoor.cross_sample", "total"]
    gated = {"id": r.id_item, "backdoor": float(r.gate_backdoor) * r.backdoor_item,
             "frontdoor": float(r.gate_frontdoor) * r.frontdoor_item}
    gated = {k: v.detach().double() for k, v in gated.items()}
    assert torch.allclose(sum(gated.values()), item, atol=1e-6)  # the parts sum to h_i, so to the score
    g_fd = float(r.gate_frontdoor)
    split = {"frontdoor.mediator": g_fd * r.mediator_item.double(),
             "frontdoor.cross_sample": g_fd * (r.frontdoor_item - r.mediator_item).double()}
    torch.testing.assert_close(sum(split.values()), gated["frontdoor"])  # output: sum, h^fd = m + x̄
    gated.update(split)
    for name, rows in {**gated, "total": item}.items():
        p = parts[name]
        assert p["row_norm"] == pytest.approx(float(rows.norm(dim=1).mean()), rel=1e-6)
        assert p["norm_of_mean_row"] == pytest.approx(float(rows.mean(0).norm()), rel=1e-6)
        scores = user @ rows.T
        assert p["score_spread"] == pytest.approx(float(scores.std(dim=1).mean()), rel=1e-6)
        degree = np.bincount(restored.splits[Split.TRAIN].indices, minlength=item.shape[0])
        expected = np.corrcoef(scores.mean(0).numpy(), np.log1p(degree))[0, 1]
        # abs 1e-6, as rel 1e-6 above: the tool calls represent() itself, and two calls agree to float32
        # precision only (the thread count changes the reduction order), which the correlation carries
        assert p["popularity_corr"] == pytest.approx(expected, abs=1e-6)
    assert parts["backdoor"]["gate"] == pytest.approx(float(r.gate_backdoor)) and parts["total"]["gate"] is None
    assert parts["frontdoor.cross_sample"]["gate"] == pytest.approx(g_fd)
    assert rep["user_norm_of_mean_row"] == pytest.approx(float(user.mean(0).norm()), rel=1e-6)
    assert main(["--run", causal_run, "--parts", "--epoch", "2"]) == 0  # the one checkpoint, by its epoch
    assert "| part | gate | mean row norm | shared (norm of mean row) | spread | popularity corr |" in capsys.readouterr().out
    assert main(["--run", causal_run, "--parts", "--epoch", "7"]) == 2
    assert "no checkpoint of epoch 7" in (err := capsys.readouterr().err) and "kept epochs [2]" in err


def test_popularity_offset_is_a_part_of_the_explained_score(causal_run) -> None:
    run = restore_run(causal_run)
    run.cfg.eval.popularity_offset = -0.3
    train = run.splits[Split.TRAIN]
    user_emb, item_emb = ranking_embeddings(run.model, train, -0.3)
    scores, items = topk_items(user_emb, item_emb, np.array([7]), 10, [train])
    rep = explain_user(run, 7, 10)
    assert [t["item"] for t in rep["top"]] == items[0].tolist()
    pop = popularity_column(train)
    for t, s in zip(rep["top"], scores[0].tolist()):
        assert t["popularity"] == pytest.approx(-0.3 * float(pop[t["item"]]))
        assert t["id"] + t["backdoor"] + t["frontdoor"] + t["popularity"] == pytest.approx(s, abs=1e-5)
    assert "| popularity |" in render_user(rep)


def test_views_restore_and_are_a_fourth_part_of_the_score(tiny_synthetic, tmp_path: Path, capsys) -> None:
    # causal.views adds a second, sharded IdTables: checkpointed, restored, and shown as its own part.
    run = _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL, "--model.causal.views.enabled=true"],
                        tmp_path / "views", epochs=1)
    exp = _expected(run)
    user, item = restore_run(run).model.final_embeddings()
    assert torch.allclose(user, exp["user"], atol=1e-5) and torch.allclose(item, exp["item"], atol=1e-5)
    assert main(["--run", run, "--user", "4", "--k", "6", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    for t in rep["top"]:
        assert t["id"] + t["backdoor"] + t["frontdoor"] + t["views"] == pytest.approx(t["score"], abs=1e-5)
    assert any(abs(t["views"]) > 1e-3 for t in rep["top"])
    assert main(["--run", run, "--user", "4", "--k", "6"]) == 0
    assert "| rank | item | score | ID | back-door | front-door | views | codes | held out |" in capsys.readouterr().out


def test_non_causal_model_prints_scores_only(tiny_synthetic, tmp_path: Path, capsys) -> None:
    run = _world_of_one([f"--data.url={tiny_synthetic}", "--model.name=lightgcn", "--model.embedding_dim=16"],
                        tmp_path / "lgcn", epochs=1)
    exp = _expected(run)
    assert main(["--run", run, "--user", "3", "--k", "5", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    scores = exp["item"] @ exp["user"][3]
    assert not rep["decomposed"] and "model.name=causal" in rep["note"]
    assert [t["score"] for t in rep["top"]] == pytest.approx([float(scores[t["item"]]) for t in rep["top"]], abs=1e-5)
    assert main(["--run", run, "--codes"]) == 2
    assert "--codes needs model.name=causal" in capsys.readouterr().err
    assert main(["--run", run, "--parts"]) == 2
    assert "--parts needs model.name=causal" in capsys.readouterr().err


def test_clear_errors(causal_run, tmp_path: Path, capsys) -> None:
    assert main(["--run", str(tmp_path / "nope"), "--user", "0"]) == 2
    assert f"run directory {tmp_path / 'nope'} not found" in capsys.readouterr().err
    empty = tmp_path / "no-ckpt"
    empty.mkdir()
    (empty / "metrics.json").write_text((Path(causal_run) / "metrics.json").read_text())
    assert main(["--run", str(empty), "--user", "0"]) == 2
    assert f"no checkpoint in {empty}" in capsys.readouterr().err
    (tmp_path / "no-metrics").mkdir()
    assert main(["--run", str(tmp_path / "no-metrics"), "--user", "0"]) == 2
    assert "no-metrics/metrics.json not found" in capsys.readouterr().err
    stale = tmp_path / "stale"
    stale.mkdir()
    metrics = json.loads((Path(causal_run) / "metrics.json").read_text())
    metrics["config"]["model"]["no_such_key"] = 1
    (stale / "metrics.json").write_text(json.dumps(metrics))
    assert main(["--run", str(stale), "--user", "0"]) == 2
    assert "unknown key 'model.no_such_key'" in capsys.readouterr().err
    assert main(["--run", causal_run, "--user", "400"]) == 2
    err = capsys.readouterr().err
    assert "user 400 out of range" in err and "400 users (ids 0..399)" in err


def _pair_worker(rank: int, data: str, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root}/init", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    try:
        for plan in PLANS:
            run_dir = Path(root) / plan
            run_dir.mkdir(exist_ok=True)
            _make_run([f"--data.url={data}", *CAUSAL, f"--train.sharding={plan}", "--train.optimizer=adam"],
                      run_dir, rank, 2, epochs=1)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_two_rank_checkpoints_reassemble_for_every_plan(tiny_synthetic, tmp_path: Path) -> None:
    spawn_ranks(_pair_worker, (tiny_synthetic, str(tmp_path)), init_file=str(tmp_path / "init"))
    for plan in PLANS:
        run = restore_run(str(tmp_path / plan))
        assert plan in run.state.plan, run.state.plan
        exp = _expected(str(tmp_path / plan))
        user, item = run.model.final_embeddings()
        assert torch.allclose(user, exp["user"], atol=1e-5), plan
        assert torch.allclose(item, exp["item"], atol=1e-5), plan
        assert torch.equal(run.model.frontdoor.kept, exp["kept"]), plan
        assert all(torch.equal(vq.codes(), c) for vq, c in zip(run.model.backdoor.levels, exp["codes"])), plan


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_real_two_worker_run_reproduces_its_test_metrics(ray_session, tiny_synthetic, tmp_path: Path) -> None:
    from trainer.main import fit
    from trainer.results import write_results

    cfg = load_config(None, [f"--data.url={tiny_synthetic}", f"--run.storage_path={tmp_path}", "--run.name=c2",
                             *CAUSAL, "--train.epochs=2", "--train.batch_size=512", "--logging.progress=false",
                             "--scaling.num_workers=2", "--scaling.cpus_per_worker=0.5"])
    write_results(fit(cfg), cfg)
    run = restore_run(str(tmp_path / "c2"))
    user, item = run.model.final_embeddings()
    test = evaluate(user, item, run.splits[Split.TEST], [run.splits[Split.TRAIN]], ks=(20,)).metrics
    assert test["recall@20"] == pytest.approx(run.metrics["best_test"]["recall@20"], abs=1e-9)
    rep = explain_user(run, 1, 20)  # not through main(): Ray's forwarded worker logs may still reach stdout
    assert len(rep["top"]) == 20 and rep["edges"]
    assert all(t["id"] + t["backdoor"] + t["frontdoor"] == pytest.approx(t["score"], abs=1e-5) for t in rep["top"])


def test_a_centred_codebook_restores_and_explains_in_its_own_space(tiny_synthetic, tmp_path) -> None:
    """backdoor.center: the running mean comes back with the checkpoint and explain --codes assigns
    the centred confounder, as the model does."""
    run = _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL, "--model.causal.backdoor.center=true"],
                        tmp_path / "centred")
    restored_run = restore_run(run)
    exp = _expected(run)
    user, item = restored_run.model.final_embeddings()
    assert torch.allclose(user, exp["user"], atol=1e-5) and torch.allclose(item, exp["item"], atol=1e-5)
    assert bool(restored_run.model.backdoor.mean_ready) and float(restored_run.model.backdoor.mean.norm()) > 0
    _check_codes_report(restored_run)
