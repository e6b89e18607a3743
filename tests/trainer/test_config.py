"""The typed config: YAML + overrides, unknown keys rejected, every key documented once."""

from pathlib import Path

import pytest

from trainer.config import Config, ConfigError, load_config, markdown_reference

REPO = Path(__file__).resolve().parents[2]


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: bpr\ntrain:\n  learning_rate: 0.01\n")
    cfg = load_config(str(path), ["--train.learning_rate=0.5", "--scaling.num_workers=2", "--eval.ks=[5, 20]"])
    assert cfg.model.name == "bpr"
    assert cfg.train.learning_rate == 0.5
    assert cfg.scaling.num_workers == 2
    assert cfg.eval.ks == [5, 20]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rte: 0.01\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'train\.learning_rte'"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"unknown key 'nosuch'"):
        load_config(None, ["--nosuch=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("--train.batch_size=abc", r"'train\.batch_size' expects int, got 'abc'"),
        ("--model.name=gpt", r"'model\.name' must be one of"),
        ("--scaling.use_gpu=3", r"'scaling\.use_gpu' expects bool"),
        ("--train.learning_rate=-1", r"'train\.learning_rate' must be positive"),
        ("--eval.select_metric=recall@7", r"eval\.select_metric"),
        ("--model.causal.backdoor.restart_epochs=-1", r"'model\.causal\.backdoor\.restart_epochs' must be >= 0"),
        ("--model.causal.backdoor.center_decay=1.0", r"'model\.causal\.backdoor\.center_decay' must be in \[0, 1\)"),
        ("--model.causal.backdoor.center_decay=-0.1", r"'model\.causal\.backdoor\.center_decay' must be in \[0, 1\)"),
        ("--model.causal.backbone.edge_keep=0", r"'model\.causal\.backbone\.edge_keep' must be in \(0, 1\]"),
        ("--model.causal.backbone.graph_mode=sampled --model.causal.backbone.edge_keep=0.5",
         r"'model\.causal\.backbone\.edge_keep' .*needs model\.causal\.backbone\.graph_mode: full"),
        ("--train.negatives=0", r"'train\.negatives' must be >= 1"),
        ("--train.negative_candidates=0", r"'train\.negative_candidates' must be >= 1"),
        ("--train.negative_candidate_epochs=-1", r"'train\.negative_candidate_epochs' must be >= 0"),
        ("--train.negative_candidates_after=0", r"'train\.negative_candidates_after' must be >= 1"),
        ("--eval.popularity_offset=nan", r"'eval\.popularity_offset' must be a finite number"),
        ("--train.dense_weight_decay=-1", r"'train\.dense_weight_decay' must be a finite number >= 0"),
        ("--train.dense_learning_rate=-1e-3", r"'train\.dense_learning_rate' must be a finite number >= 0"),
        ("--train.negative_popularity_power=-0.5", r"'train\.negative_popularity_power' must be a finite number >= 0"),
        ("--train.negative_popularity_from_epoch=-1", r"'train\.negative_popularity_from_epoch' must be >= 0"),
        ("--model.causal.backbone.norm_power=1.5", r"'model\.causal\.backbone\.norm_power' must be in \[0, 1\]"),
        ("--model.name=lightgcn --model.lightgcn.graph_mode=sampled --model.lightgcn.norm_power=0.6",
         r"'model\.lightgcn\.norm_power' .*needs model\.lightgcn\.graph_mode: full"),
        ("--train.weight_decay=inf", r"'train\.weight_decay' must be a finite number >= 0"),
        ("--model.name=lightgcn --train.negative_candidates_after=2",
         r"'train\.negative_candidates_after' .*needs train\.negative_candidates > 1 and train\.negative_candidate_epochs > 0"),
        ("--model.name=vbpr --train.negative_candidates=4",
         r"'train\.negative_candidates' .*needs model\.name lightgcn, freedom or causal"),
        ("--model.name=causal --model.causal.backbone.graph_mode=sampled --train.negative_candidates=4",
         r"'train\.negative_candidates' .*graph_mode full"),
        ("--model.causal.backdoor.refit_every=-1", r"'model\.causal\.backdoor\.refit_every' must be >= 0"),
        ("--model.causal.backdoor.refit_iters=0", r"'model\.causal\.backdoor\.refit_iters' must be >= 1"),
        ("train.batch_size", r"not of the form"),
    ],
)
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, override.split())


def test_round_trip_through_dict() -> None:
    cfg = load_config(None, ["--model.num_layers=3"])
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_every_key_documented_and_reference_current() -> None:
    text = markdown_reference()
    assert "| `train.learning_rate` |" in text
    assert (REPO / "docs" / "CONFIG.md").read_text() == text, "regenerate: python -m trainer.config > docs/CONFIG.md"


def test_every_shipped_config_loads() -> None:
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs, "configs/ should hold the experiment files"
    for path in configs:
        load_config(str(path))


def test_float_overrides_in_any_numeric_spelling() -> None:
    # YAML reads "1e-4" as a string (no dot); a float key still takes it, a non-number is named.
    cfg = load_config(None, ["--train.learning_rate=1e-4", "--model.reg_weight=2E-3"])
    assert cfg.train.learning_rate == pytest.approx(1e-4) and cfg.model.reg_weight == pytest.approx(2e-3)
    with pytest.raises(ConfigError, match="train.learning_rate"):
        load_config(None, ["--train.learning_rate=fast"])
