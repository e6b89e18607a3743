"""trainer/weight_average.py: the average's arithmetic, the swap, its checkpoint and what a run reports with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from data_loaders.format import Split
from trainer.config import ConfigError, load_config
from trainer.evaluate import evaluate
from trainer.restore import load_checkpoint_state, restore_run
from trainer.weight_average import WeightAverage


def test_the_average_follows_the_decay_with_a_warm_up() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for t in range(30):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        average.update()
        d = min(0.9, (1 + t) / (10 + t))  # 0.1, 0.18, ... (0.9 from t = 80 on, checked below)
        expected = d * expected + (1 - d) * model.weight.detach()
    torch.testing.assert_close(average.shadow["weight"], expected)
    assert average.updates == 30 and average.current_decay() == pytest.approx(31 / 40)
    for _ in range(100):
        average.update()
    assert average.current_decay() == 0.9


def test_applied_swaps_the_average_in_and_the_live_weights_back_even_on_error() -> None:
    model = nn.Linear(2, 1)
    average = WeightAverage(model, decay=0.5)
    live = model.weight.detach().clone()
    with torch.no_grad():
        average.shadow["weight"].fill_(7.0)
    with average.applied():
        assert torch.all(model.weight == 7.0)
    assert torch.equal(model.weight.detach(), live)
    with pytest.raises(RuntimeError, match="boom"):
        with average.applied():
            raise RuntimeError("boom")
    assert torch.equal(model.weight.detach(), live)


def test_code_tables_are_running_statistics_and_are_left_out() -> None:
    class WithCodes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ebc = nn.ModuleDict({"embedding_bags": nn.ModuleDict({
                "codes_coarse": nn.Embedding(4, 2), "user": nn.Embedding(3, 2)})})

    average = WeightAverage(WithCodes(), decay=0.5)
    assert sorted(average.shadow) == ["ebc.embedding_bags.user.weight"]


def test_state_round_trips_and_a_mismatch_names_the_parameter() -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    first = WeightAverage(a, decay=0.8)
    first.update()
    second = WeightAverage(b, decay=0.8)
    second.load_state_dict(first.state_dict())
    assert second.updates == 1 and all(torch.equal(first.shadow[k], second.shadow[k]) for k in first.shadow)
    bad = first.state_dict()
    bad["shadow"]["weight"] = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="'weight' shape"):
        second.load_state_dict(bad)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(a, decay=1.0)


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_config_refuses_a_decay_outside_zero_one(value: str) -> None:
    with pytest.raises(ConfigError, match="train.weight_average_decay"):
        load_config(None, [f"--train.weight_average_decay={value}"])


CAUSAL = ["--model.name=causal", "--model.embedding_dim=16", "--model.causal.backdoor.coarse_codes=4",
          "--model.causal.backdoor.fine_codes=8", "--model.causal.frontdoor.warmup_epochs=0",
          "--model.causal.frontdoor.refresh_every=1", "--model.causal.diffusion.hidden=32",
          "--train.batch_size=256", "--train.patience=100", "--logging.progress=false",
          "--train.weight_average_decay=0.8"]


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_a_run_selects_with_the_average_resumes_it_exactly_and_restores_it(ray_session, tiny_synthetic,
                                                                           tmp_path: Path) -> None:
    from trainer.main import fit
    from trainer.results import write_results

    def cfg(name: str, epochs: int):
        return load_config(None, [f"--data.url={tiny_synthetic}", f"--run.storage_path={tmp_path}",
                                  f"--run.name={name}", f"--train.epochs={epochs}", *CAUSAL])

    fit(cfg("resumed", 2))
    resumed = fit(cfg("resumed", 4))  # goes on from the epoch-2 checkpoint, average included
    straight = cfg("straight", 4)
    whole = fit(straight)
    write_results(whole, straight)
    keys = ("valid/recall@20", "valid/ndcg@20", "valid_live/recall@20", "loss")
    assert [h[k] for h in resumed["history"] for k in keys] == \
        pytest.approx([h[k] for h in whole["history"] for k in keys], abs=1e-6)
    # The average is not the live weights: some evaluation tells them apart.
    assert any(h["valid/ndcg@20"] != h["valid_live/ndcg@20"] for h in whole["history"])

    run = restore_run(str(tmp_path / "straight"))  # the averaged weights, as the run evaluated
    user, item = run.model.final_embeddings()
    test = evaluate(user, item, run.splits[Split.TEST], [run.splits[Split.TRAIN]], ks=(20,)).metrics
    assert test["recall@20"] == pytest.approx(run.metrics["best_test"]["recall@20"], abs=1e-9)
    live, _ = load_checkpoint_state(run.checkpoint, run.model.state_dict(), live_weights=True)
    averaged, _ = load_checkpoint_state(run.checkpoint, run.model.state_dict())
    differ = [k for k in averaged if not torch.equal(averaged[k], live[k])]
    assert differ and set(differ) <= set(dict(run.model.named_parameters())), differ  # weights only, no buffers
    assert json.loads((tmp_path / "straight" / "metrics.json").read_text())["config"]["train"]["weight_average_decay"] == 0.8
