"""Search-space files: parsing, validation against Config (file + key in every error), domains."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.config import Config, ConfigError, load_config
from tune.space import DISTRIBUTIONS, RESERVED_KEYS, TuneSettings, load_space, trial_config

REPO = Path(__file__).resolve().parents[2]


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_shipped_lightgcn_space_against_the_demo_config() -> None:
    base = load_config(str(REPO / "configs/demo.yaml"))
    space = load_space(str(REPO / "tune/spaces/lightgcn.yaml"), base)
    assert set(space.params) == {"train.learning_rate", "model.reg_weight", "model.num_layers", "train.batch_size"}
    assert space.tune.scheduler == "asha" and space.tune.metric == "valid/recall@20"
    assert space.tune.max_t == base.train.epochs  # default: the base config's epochs
    domains = space.param_space()
    assert set(domains) == {"train", "model"} and set(domains["model"]) == {"reg_weight", "num_layers"}
    assert domains["train"]["learning_rate"].lower == pytest.approx(1e-4)


def test_shipped_causal_space_against_the_causal_config() -> None:
    """Nested `model.causal.*` keys: validated against Config, nested Tune domains, valid trial configs."""
    from ray.tune.search.optuna import OptunaSearch

    base = load_config(str(REPO / "configs/tiktok_causal.yaml"))
    space = load_space(str(REPO / "tune/spaces/causal.yaml"), base)
    assert {"model.causal.diffusion.steps", "model.causal.diffusion.noise_scale", "model.causal.diffusion.loss_weight",
            "model.causal.backdoor.coarse_codes", "model.causal.backdoor.fine_codes", "model.causal.backdoor.ema_decay",
            "model.causal.backdoor.loss_weight", "model.causal.frontdoor.keep_ratio",
            "model.causal.frontdoor.warmup_epochs", "model.causal.frontdoor.loss_weight", "train.learning_rate",
            "model.reg_weight"} == set(space.params)
    domains = space.param_space()
    assert set(domains["model"]["causal"]) == {"diffusion", "backdoor", "frontdoor"}
    assert "model/causal/backdoor/coarse_codes" in OptunaSearch.convert_search_space(domains)
    sample = {"model": {"causal": {part: {k: d.sample() for k, d in keys.items()}
                                   for part, keys in domains["model"]["causal"].items()},
                        "reg_weight": domains["model"]["reg_weight"].sample()},
              "train": {"learning_rate": domains["train"]["learning_rate"].sample()}}
    cfg = trial_config(base, sample)
    assert cfg.model.causal.backdoor.coarse_codes in (8, 16, 32, 64)
    assert 0.5 <= cfg.model.causal.frontdoor.keep_ratio < 0.95
    assert cfg.model.causal.frontdoor.refresh_every == base.model.causal.frontdoor.refresh_every  # not searched: kept
    readme = (REPO / "tune/spaces/README.md").read_text()
    for key in space.params:  # every searched key of the shipped space is explained
        assert f"`{key}`" in readme, key


def test_optuna_takes_every_distribution(tmp_path: Path) -> None:
    from ray.tune.search.optuna import OptunaSearch

    text = ("train.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}\nmodel.init_std: {uniform: [0.01, 0.2]}\n"
            "model.num_layers: {randint: [1, 4]}\ntrain.optimizer: {choice: [adam, adagrad]}\n")
    space = load_space(str(_space(tmp_path, text)), Config())
    distributions = OptunaSearch.convert_search_space(space.param_space())
    assert set(distributions) == {"train/learning_rate", "model/init_std", "model/num_layers", "train/optimizer"}


def test_sampled_values_become_a_valid_trial_config(tmp_path: Path) -> None:
    base = Config()
    space = load_space(str(_space(tmp_path, "model.num_layers: {randint: [1, 4]}\ntrain.learning_rate: {uniform: [0.001, 0.01]}\n")), base)
    sample = {section: {k: d.sample() for k, d in keys.items()} for section, keys in space.param_space().items()}
    # Tune's randint yields numpy integers, which the typed config would reject.
    sample["model"]["num_layers"] = np.int64(sample["model"]["num_layers"])
    cfg = trial_config(base, sample)
    assert isinstance(cfg.model.num_layers, int) and 1 <= cfg.model.num_layers < 4
    assert 0.001 <= cfg.train.learning_rate < 0.01
    assert base.model.num_layers == Config().model.num_layers  # the base is not modified


@pytest.mark.parametrize("text, message", [
    ("train.learning_rat: {loguniform: [0.001, 0.01]}", "unknown key 'train.learning_rat'"),
    ("trainer.learning_rate: {loguniform: [0.001, 0.01]}", "'trainer.learning_rate' is not a config key"),
    ("train: {loguniform: [0.001, 0.01]}", "'train' is not a config key"),
    ("model.causal.backdoor.coarse_code: {choice: [8]}", "unknown key 'model.causal.backdoor.coarse_code' (known in 'model.causal.backdoor'"),
    ("model.causal.backdoor: {choice: [8]}", "'model.causal.backdoor' is a section, not a config key"),
    ("model.causal.backdoor.ema_decay: {randint: [1, 3]}", "'model.causal.backdoor.ema_decay' is float; randint yields int"),
    ("model.causal.backdoor.prior: {choice: [counts, nope]}", "'model.causal.backdoor.prior': value 'nope' is rejected"),
    ("run.name: {choice: [a, b]}", "'run.name' is set by the sweep itself"),
    ("model.num_layers: {uniform: [1, 3]}", "'model.num_layers' is int; uniform yields float"),
    ("train.learning_rate: {randint: [1, 3]}", "'train.learning_rate' is float; randint yields int"),
    ("train.learning_rate: {loguniform: [0.0, 0.01]}", "loguniform needs low > 0"),
    ("train.learning_rate: {loguniform: [1e-4, 1e-2]}", "needs [low, high] numbers"),  # YAML reads 1e-4 as a string
    ("train.learning_rate: {uniform: [0.01, 0.001]}", "low < high"),
    ("train.learning_rate: {normal: [0, 1]}", "needs exactly one of"),
    ("train.learning_rate: 0.01", "needs exactly one of"),
    ("model.name: {choice: [lightgcn, nope]}", "'model.name': value 'nope' is rejected"),
    ("model.num_layers: {randint: [-1, 2]}", "'model.num_layers': value -1 is rejected"),
    ("train.learning_rate: {uniform: [-0.01, 0.01]}", "value -0.01 is rejected"),
    ("model.num_layers: {choice: []}", "choice needs a non-empty list"),
    ("model.num_layers: {choice: [1]}\ntune: {num_sample: 2}", "unknown key 'tune.num_sample'"),
    ("model.num_layers: {choice: [1]}\ntune: {searcher: grid}", "'tune.searcher' must be one of"),
    ("model.num_layers: {choice: [1]}\ntune: {metric: test/recall@20}", "'tune.metric' must be a validation metric"),
    ("model.num_layers: {choice: [1]}\ntune: {metric: unbiased_test/recall@20}", "'tune.metric' must be a validation metric"),
    ("model.num_layers: {choice: [1]}\ntune: {metric: valid/recall@7}", "'tune.metric' 'valid/recall@7' is not a metric"),
    ("model.num_layers: {choice: [1]}\ntune: {grace_period: 5, max_t: 2}", "'tune.max_t' must be >= grace_period"),
    ("tune: {num_samples: 2}", "no keys to search"),
    ("- a\n- b", "a space file is a mapping"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _space(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(str(path), Config())
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="nope.yaml: cannot read space file"):
        load_space("nope.yaml", Config())


def test_readme_documents_every_setting_distribution_and_reserved_key() -> None:
    readme = (REPO / "tune/spaces/README.md").read_text()
    for f in dataclasses.fields(TuneSettings):
        assert f"| `{f.name}` |" in readme, f.name
    for name in DISTRIBUTIONS:
        assert f"| `{name}` |" in readme, name
    for key in RESERVED_KEYS:
        assert f"`{key}`" in readme, key
    for space in (REPO / "tune/spaces").glob("*.yaml"):
        assert f"`{space.name}`" in readme, space.name


def test_the_cli_rejects_a_bad_space_before_ray_starts(tmp_path: Path) -> None:
    path = _space(tmp_path, "train.learning_rat: {loguniform: [1.0e-4, 1.0e-2]}\n")
    result = subprocess.run([sys.executable, "tune/main.py", "--config", "configs/demo.yaml", "--space", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{path}: unknown key 'train.learning_rat'" in result.stderr


def test_tiktok_causal_space_waits_past_the_popularity_plateau_and_fits_its_config() -> None:
    base = load_config(str(REPO / "configs/tiktok_causal.yaml"))
    space = load_space(str(REPO / "tune/spaces/causal_tiktok.yaml"), base)
    assert space.tune.grace_period == 30 and space.tune.searcher == "optuna"
    assert "model.causal.contrast.temperature" in space.params
    assert "`causal_tiktok.yaml`" in (REPO / "tune/spaces/README.md").read_text()


def test_a_relative_data_url_is_made_absolute_for_the_trials(tmp_path: Path, monkeypatch) -> None:
    from tune.main import absolute_data_url

    monkeypatch.chdir(tmp_path)
    cfg = absolute_data_url(load_config(str(REPO / "configs/tiktok_causal.yaml")))
    assert cfg.data.url == str(tmp_path / "data/tiktok")
    s3 = absolute_data_url(load_config(str(REPO / "configs/tiktok_causal.yaml"), ["--data.url=s3://bucket/tiktok"]))
    assert s3.data.url == "s3://bucket/tiktok"


def test_simulator_causal_space_fits_its_config_and_ranks_on_valid() -> None:
    base = load_config(str(REPO / "configs/synthetic_causal.yaml"), ["--train.batch_size=4096"])
    space = load_space(str(REPO / "tune/spaces/causal_simulator.yaml"), base)
    # The causal check reads unbiased_test: the sweep must never rank by it.
    assert space.tune.metric == "valid/recall@20"
    assert "model.causal.frontdoor.keep_ratio" in space.params
    assert "model.causal.exposure.gamma" not in space.params  # shared with the ablated side
    assert "`causal_simulator.yaml`" in (REPO / "tune/spaces/README.md").read_text()


def test_simulator_unbiased_space_ranks_and_selects_on_unbiased_valid() -> None:
    from tune.trial import trial_run_config

    base = load_config(str(REPO / "configs/synthetic_causal.yaml"), ["--train.batch_size=4096"])
    space = load_space(str(REPO / "tune/spaces/causal_simulator_unbiased.yaml"), base)
    assert space.tune.metric == "unbiased_valid/recall@20"
    assert (space.tune.select_split, space.tune.select_metric) == ("unbiased_valid", "recall@20")
    # The same keys and ranges as the valid-ranked space: only what ranks them differs.
    same = load_space(str(REPO / "tune/spaces/causal_simulator.yaml"), base)
    assert space.params == same.params
    # Each trial selects its best epoch (and so its kept checkpoint and test figures) on it too.
    cfg = trial_run_config(base.to_dict(), {}, "t0", "/tmp/trials", space.tune)
    assert (cfg.eval.select_split, cfg.eval.select_metric) == ("unbiased_valid", "recall@20")
    assert (same.tune.select_split, same.tune.select_metric) == ("valid", "recall@20")
