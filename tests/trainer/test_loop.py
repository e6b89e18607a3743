"""trainer/loop.py: which splits are evaluated and which one selects the epoch; the plateau learning-rate schedule."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from data_loaders.format import DatasetError, Manifest, Split
from trainer.config import load_config
from trainer.config import ConfigError
from trainer.loop import next_learning_rate, present_splits
from trainer.main import main

REPO = Path(__file__).resolve().parents[2]


def _manifest(**splits: int) -> Manifest:
    counts = {"train": 10, "valid": 2, "test": 2, "unbiased_test": 0, "unbiased_valid": 0, **splits}
    return Manifest(format_version=1, name="m", num_users=3, num_items=4, num_interactions=sum(counts.values()),
                    splits=counts, modalities={}, files={}, truth=[], source={}, created_at="")


def test_unbiased_splits_are_evaluated_when_present() -> None:
    cfg = load_config(None, [])
    assert present_splits(cfg, _manifest()) == ((Split.TRAIN, Split.VALID, Split.TEST), Split.VALID)
    wanted, select = present_splits(cfg, _manifest(unbiased_test=5, unbiased_valid=5))
    assert wanted == (Split.TRAIN, Split.VALID, Split.TEST, Split.UNBIASED_TEST, Split.UNBIASED_VALID)
    assert select == Split.VALID  # present is not chosen: the default stays the protocol's valid
    # A manifest written before the split existed has no key for it at all.
    old = dataclasses.replace(_manifest(unbiased_test=5), splits={"train": 10, "valid": 2, "test": 2, "unbiased_test": 5})
    assert present_splits(cfg, old)[0][-1] == Split.UNBIASED_TEST


def test_selecting_on_a_missing_split_is_an_error_naming_it() -> None:
    cfg = load_config(None, ["--eval.select_split=unbiased_valid", "--data.url=/data/ds"])
    assert present_splits(cfg, _manifest(unbiased_valid=3))[1] == Split.UNBIASED_VALID
    with pytest.raises(DatasetError) as err:
        present_splits(cfg, _manifest(unbiased_test=5))
    text = str(err.value)
    assert "/data/ds/manifest.json" in text and "splits.unbiased_valid" in text and "--unbiased-valid-per-user" in text


def test_main_refuses_it_before_starting_ray(tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "plain")  # a simulator dataset made without --unbiased-valid-per-user
    subprocess.run([sys.executable, "-m", "data_loaders.prepare", "--from", "synthetic", "--users", "60",
                    "--items", "40", "--num-categories", "2", "--styles-per-category", "2", "--to", url],
                   check=True, cwd=REPO, capture_output=True)
    code = main([f"--data.url={url}", f"--run.storage_path={tmp_path / 'runs'}", "--eval.select_split=unbiased_valid"])
    assert code == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "splits.unbiased_valid" in err
    assert not (tmp_path / "runs").exists()  # refused before the run directory was made


def test_select_split_takes_only_known_splits() -> None:
    with pytest.raises(Exception, match="eval.select_split"):
        load_config(None, ["--eval.select_split=unbiased_test"])  # choosing on test is not offered


def test_plateau_cuts_the_rate_at_every_patience_th_bad_evaluation() -> None:
    train = load_config(None, ["--train.learning_rate=1", "--train.lr_schedule=plateau", "--train.lr_decay_patience=2",
                               "--train.lr_decay_factor=0.5", "--train.min_learning_rate=0.2"]).train
    assert [next_learning_rate(train, 1.0, bad, 1) for bad in (0, 1, 2, 3, 4)] == [1.0, 1.0, 0.5, 1.0, 0.5]
    assert next_learning_rate(train, 0.3, 2, 1) == 0.2  # floored at min_learning_rate
    constant = load_config(None, []).train
    assert constant.lr_schedule == "constant" and next_learning_rate(constant, 1.0, 5, 1) == 1.0
    late = load_config(None, ["--train.lr_schedule=plateau", "--train.lr_decay_patience=2",
                              "--train.lr_decay_start_epoch=10"]).train
    assert [next_learning_rate(late, 1.0, 4, epoch) for epoch in (9, 10)] == [1.0, 0.5]


@pytest.mark.parametrize("override, key", [("--train.lr_decay_factor=1", "lr_decay_factor"),
                                           ("--train.lr_decay_factor=0", "lr_decay_factor"),
                                           ("--train.lr_decay_patience=0", "lr_decay_patience"),
                                           ("--train.lr_decay_start_epoch=-1", "lr_decay_start_epoch"),
                                           ("--train.min_learning_rate=0.5", "min_learning_rate"),
                                           ("--train.lr_schedule=cosine", "lr_schedule")])
def test_bad_schedule_keys_are_refused_by_name(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"train.{key}"):
        load_config(None, [override])


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_fit_follows_the_plateau_schedule_and_resumes_at_the_cut_rate(ray_session, tiny_synthetic,
                                                                        tmp_path: Path) -> None:
    from trainer.main import fit

    def cfg(epochs: int):
        return load_config(None, [f"--data.url={tiny_synthetic}", f"--run.storage_path={tmp_path}", "--run.name=lr",
                                  "--model.name=bpr", f"--train.epochs={epochs}", "--train.batch_size=64",
                                  "--train.learning_rate=0.05", "--train.lr_schedule=plateau",
                                  "--train.lr_decay_patience=1", "--train.lr_decay_factor=0.5",
                                  "--train.patience=100", "--logging.progress=false"])

    first = fit(cfg(4))
    result = fit(cfg(8))  # same name: resumes after epoch 4 at the rate its checkpoint holds
    history = result["history"]
    assert [h["epoch"] for h in history] == list(range(1, 9)) and history[:4] == first["history"]
    # Replay the schedule from the logged valid scores: each epoch trained at the rate the
    # evaluations before it left.
    rate, best, bad = 0.05, float("-inf"), 0
    for h in history:
        assert h["learning_rate"] == pytest.approx(rate), h
        if h["valid_score"] > best:
            best, bad = h["valid_score"], 0
        else:
            bad += 1
            rate *= 0.5
    assert result["learning_rate"] == pytest.approx(rate)
    assert rate < 0.05  # the run met at least one plateau (a fixed seed: this holds or fails every time)
    # Each loss term's epoch mean is logged next to the total, and BPR-MF's total is bpr + reg_weight * reg
    # on every step, so on the means too.
    reg_weight = load_config(None, ["--model.name=bpr"]).model.reg_weight
    for h in history:
        assert {"loss/bpr", "loss/reg"} <= set(h), sorted(h)
        assert h["loss"] == pytest.approx(h["loss/bpr"] + reg_weight * h["loss/reg"], rel=1e-6)


def test_evaluator_ranks_valid_and_test_with_the_popularity_offset_and_unbiased_splits_without() -> None:
    import numpy as np
    import torch

    from data_loaders.graph import CSR
    from trainer.evaluate import evaluate
    from trainer.loop import Evaluator
    from trainer.ranking import popularity_column, with_popularity_offset

    rng = np.random.default_rng(0)

    def csr(n: int) -> CSR:
        keys = np.unique(rng.integers(0, 30 * 40, size=n))
        return CSR.from_pairs(keys // 40, keys % 40, 30, 40)

    splits = {Split.TRAIN: csr(300), Split.VALID: csr(40), Split.TEST: csr(40), Split.UNBIASED_TEST: csr(40)}
    user, item = torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), torch.randn(40, 4)

    class Fixed(torch.nn.Module):
        def final_embeddings(self, uniform_exposure: bool = False):
            return user, item

    cfg = load_config(None, ["--eval.popularity_offset=-0.5", "--logging.progress=false"])
    evaluator = Evaluator(cfg, splits, 0, 1)
    u, i = with_popularity_offset(user, item, popularity_column(splits[Split.TRAIN]), -0.5)
    for split in (Split.VALID, Split.TEST):
        want = evaluate(u, i, splits[split], [splits[Split.TRAIN]], ks=tuple(cfg.eval.ks), reduce=False).metrics
        assert evaluator(Fixed(), split) == pytest.approx(want)
    plain = evaluate(user, item, splits[Split.UNBIASED_TEST], [splits[s] for s in (Split.TRAIN, Split.VALID, Split.TEST)],
                     ks=tuple(cfg.eval.ks), reduce=False).metrics
    assert evaluator(Fixed(), Split.UNBIASED_TEST) == pytest.approx(plain)
    assert evaluator(Fixed(), Split.VALID) != pytest.approx(Evaluator(load_config(None, []), splits, 0, 1)(Fixed(), Split.VALID))


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_test_curve_logs_test_at_every_evaluation_and_changes_nothing_else(ray_session, tiny_synthetic,
                                                                           tmp_path: Path) -> None:
    from trainer.main import fit
    from trainer.picked_epoch import picked_figures

    def run(name: str, *extra: str) -> dict:
        return fit(load_config(None, [f"--data.url={tiny_synthetic}", f"--run.storage_path={tmp_path}",
                                      f"--run.name={name}", "--model.name=causal", "--train.epochs=4",
                                      "--train.batch_size=256", "--train.patience=100", "--logging.progress=false",
                                      "--scaling.threads_per_worker=1", *extra]))

    plain, curved = run("plain"), run("curved", "--eval.test_curve=true")
    # The causal model's evaluation runs its diffusion and adjustments: an extra test evaluation
    # must not move any random stream or state that training reads.
    stripped = [{k: v for k, v in h.items() if not k.startswith("test_curve/") and k not in ("eval_seconds",
                 "epoch_seconds", "start_epoch_seconds") and not k.startswith("peak_rss")} for h in curved["history"]]
    assert stripped == [{k: v for k, v in h.items() if k not in ("eval_seconds", "epoch_seconds",
                         "start_epoch_seconds") and not k.startswith("peak_rss")} for h in plain["history"]]
    assert curved["best_test"] == plain["best_test"] and not any("test_curve/recall@20" in h for h in plain["history"])
    assert all("test_curve/recall@20" in h and "test_curve/ndcg@20" in h for h in curved["history"])
    # The curve's point at the best-valid epoch is the reported test figure, so trainer.picked_epoch's V
    # is the run's own; its T is the curve's maximum.
    picked = picked_figures(curved, "recall@20", "ndcg@20", "curved")  # fit returns what metrics.json holds
    assert picked.v == curved["best_test"]["recall@20"] and picked.v_epoch == curved["best_epoch"]
    assert picked.t == max(h["test_curve/recall@20"] for h in curved["history"])
