"""`eval.sample_users`: evaluation on a seeded random sample of users, labelled as such."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_loaders.format import Split
from data_loaders.graph import CSR
from trainer.config import ConfigError, load_config
from trainer.evaluate import evaluate, sample_eval_users
from trainer.results import render, users_label


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    users, items = 300, 120
    def split(n):  # noqa: E306 - distinct (user, item) pairs per split
        keys = rng.choice(users * items, size=n, replace=False)
        return CSR.from_pairs(keys // items, keys % items, users, items)
    train, valid, test = split(3000), split(250), split(250)
    g = torch.Generator().manual_seed(0)
    return {Split.TRAIN: train, Split.VALID: valid, Split.TEST: test}, \
        torch.randn(users, 16, generator=g), torch.randn(items, 16, generator=g)


def test_sample_is_seeded_sorted_and_eligible(problem) -> None:
    splits, _, _ = problem
    valid = splits[Split.VALID]
    eligible = np.flatnonzero(np.diff(valid.indptr) > 0)
    a, n_a = sample_eval_users(valid, 50, seed=3)
    b, _ = sample_eval_users(valid, 50, seed=3)
    c, _ = sample_eval_users(valid, 50, seed=4)
    assert n_a == len(eligible)
    assert len(a) == 50 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0) and np.isin(a, eligible).all()
    # 0, or a sample that covers every eligible user, means the full protocol (no ids).
    assert sample_eval_users(valid, 0, seed=3)[0] is None
    assert sample_eval_users(valid, len(eligible), seed=3)[0] is None
    assert sample_eval_users(valid, 10**9, seed=3)[0] is None


def _evaluator(problem, sample_users: int):
    from trainer.loop import Evaluator

    splits, user_emb, item_emb = problem
    cfg = load_config(None, [f"--eval.sample_users={sample_users}", "--run.seed=7", "--eval.user_chunk=32"])

    class Model:
        def final_embeddings(self, uniform_exposure: bool = False):
            return user_emb, item_emb

    return Evaluator(cfg, splits, rank=0, world_size=1), Model()


def test_sample_covering_every_user_is_the_full_evaluation(problem) -> None:
    splits, user_emb, item_emb = problem
    evaluator, model = _evaluator(problem, 10**6)
    full = evaluate(user_emb, item_emb, splits[Split.VALID], [splits[Split.TRAIN]], user_chunk=32).metrics
    got = evaluator(model, Split.VALID)
    assert got == full and "sampled_users" not in got


def test_sampled_evaluation_is_labelled_and_deterministic(problem) -> None:
    splits, user_emb, item_emb = problem
    evaluator, model = _evaluator(problem, 40)
    got = evaluator(model, Split.TEST)
    again = _evaluator(problem, 40)[0](model, Split.TEST)
    users, eligible = sample_eval_users(splits[Split.TEST], 40, seed=7)
    expected = evaluate(user_emb, item_emb, splits[Split.TEST], [splits[Split.TRAIN]], users=users,
                        user_chunk=32).metrics
    assert got == again
    assert got["sampled_users"] == got["num_users"] == 40 and got["sampled_from"] == eligible > 40
    assert {k: v for k, v in got.items() if not k.startswith("sampled_")} == expected
    assert users_label(got) == f"sampled 40 of {eligible} users"


def test_results_md_says_sampled(problem) -> None:
    evaluator, model = _evaluator(problem, 40)
    cfg = load_config(None, ["--eval.sample_users=40", "--run.seed=7"])
    test, valid = evaluator(model, Split.TEST), evaluator(model, Split.VALID)
    summary = {"best_score": valid["recall@20"], "best_epoch": 1, "epoch": 1, "best_test": test,
               "best_test_valid_masked": test, "best_valid": valid}
    text = render(summary, cfg)
    assert f"## Test (sampled 40 of {test['sampled_from']} users;" in text
    assert f"## Valid (sampled 40 of {valid['sampled_from']} users)" in text
    assert "random sample of users" in text
    full = {k: v for k, v in test.items() if not k.startswith("sampled_")}
    plain = render({**summary, "best_test": full, "best_valid": full, "best_test_valid_masked": full}, cfg)
    assert "sampled" not in plain and "## Test (40 users;" in plain
    assert "popularity_offset" not in plain
    offset = render(summary, load_config(None, ["--eval.popularity_offset=-0.2"]))
    assert "Valid and test ranked by score - 0.2 * log(1 + n_i)" in offset
    assert "score + 0.5 * log" in render(summary, load_config(None, ["--eval.popularity_offset=0.5"]))


def test_negative_sample_is_refused() -> None:
    with pytest.raises(ConfigError, match="eval.sample_users"):
        load_config(None, ["--eval.sample_users=-1"])
    with pytest.raises(ConfigError, match="train.max_steps_per_epoch"):
        load_config(None, ["--train.max_steps_per_epoch=-1"])
