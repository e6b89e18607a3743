"""Search-space files: `tune/spaces/*.yaml` -> Ray Tune domains and sweep settings.

A space file maps dotted config keys (`train.learning_rate`) to one distribution each, plus a
`tune:` block of sweep settings (tune/spaces/README.md documents every key). Everything is
checked against `trainer.config.Config` before Ray starts: an unknown key, a distribution that
cannot produce a value of the key's type, or a value the trainer would reject fails here, with
the file and the key, rather than as a crashed trial minutes into a sweep.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from trainer.config import Config, ConfigError, apply_mapping, validate

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
# Set per trial by the sweep itself (tune/main.py), so sampling them would be overwritten or
# would break the sweep's layout.
RESERVED_KEYS = {"run.name", "run.storage_path", "scaling.address", "scaling.cpus_per_worker", "eval.select_metric",
                 "eval.select_split"}


@dataclass
class TuneSettings:
    """The `tune:` block of a space file (defaults apply to omitted keys)."""

    num_samples: int = 8
    metric: str = "valid/recall@20"
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = 1
    max_t: int = 0
    reduction_factor: int = 2
    searcher: Literal["random", "optuna"] = "random"
    seed: int = 0
    max_concurrent_trials: int = 2
    cpus_per_worker: float = 0.25

    @property
    def select_metric(self) -> str:
        """The trainer's `eval.select_metric` that matches `metric` (`valid/recall@20` -> `recall@20`)."""
        return self.metric.partition("/")[2]

    @property
    def select_split(self) -> str:
        """The trainer's `eval.select_split` that matches `metric` (`unbiased_valid/recall@20` -> `unbiased_valid`)."""
        return self.metric.partition("/")[0]


@dataclass
class Space:
    """A validated search space: `params` holds (distribution, arguments) per dotted key."""

    params: dict[str, tuple[str, list]] = field(default_factory=dict)
    tune: TuneSettings = field(default_factory=TuneSettings)

    def param_space(self) -> dict[str, Any]:
        """Nested Ray Tune domains, e.g. {"train": {"learning_rate": tune.loguniform(...)}}."""
        from ray import tune

        make = {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint,
                "choice": lambda *values: tune.choice(list(values))}
        nested: dict[str, Any] = {}
        for key, (kind, args) in self.params.items():
            *path, name = key.split(".")
            _subtree(nested, path)[name] = make[kind](*args)
        return nested


def _subtree(tree: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The dict at `path` in a nested mapping, created on the way (model.causal.backdoor -> {...})."""
    for part in path:
        tree = tree.setdefault(part, {})
    return tree


def plain(value: Any) -> Any:
    """Sampled values as plain Python (Tune's randint yields numpy ints, which YAML and the config reject)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def trial_config(base: Config, sampled: dict[str, Any], source: str = "trial") -> Config:
    """The base config with a trial's sampled values (nested mapping) applied and checked."""
    cfg = Config.from_dict(base.to_dict(), source)
    apply_mapping(cfg, plain(sampled), source)
    validate(cfg)
    return cfg


def _field_type(key: str, source: str) -> Any:
    """The type of a leaf config key, `section.key` or nested like `model.causal.backdoor.coarse_codes`."""
    parts = key.split(".")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if len(parts) < 2 or parts[0] not in sections:
        raise ConfigError(f"{source}: key '{key}' is not a config key of the form section.key "
                          f"(sections: {', '.join(sorted(sections))})")
    node: Any = Config()
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(type(node))
        if part not in hints:
            raise ConfigError(f"{source}: unknown key '{key}' (known in '{'.'.join(parts[:depth])}': "
                              f"{', '.join(sorted(hints))})")
        node = getattr(node, part)
    if dataclasses.is_dataclass(node):
        raise ConfigError(f"{source}: key '{key}' is a section, not a config key (its keys: "
                          f"{', '.join(f.name for f in dataclasses.fields(node))})")
    if key in RESERVED_KEYS:
        raise ConfigError(f"{source}: key '{key}' is set by the sweep itself and cannot be searched")
    return hints[parts[-1]]


def _check_value(base: Config, key: str, value: Any, source: str) -> None:
    *path, name = key.split(".")
    sampled: dict[str, Any] = {}
    _subtree(sampled, path)[name] = value
    try:
        trial_config(base, sampled, source)
    except ConfigError as err:
        raise ConfigError(f"{source}: key '{key}': value {value!r} is rejected: {err}") from err


def _parse_param(base: Config, key: str, spec: Any, source: str) -> tuple[str, list]:
    annotation = _field_type(key, source)
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
        raise ConfigError(f"{source}: key '{key}' needs exactly one of {{{', '.join(DISTRIBUTIONS)}}}: [...], got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{source}: key '{key}': choice needs a non-empty list, got {args!r}")
    else:
        wanted = int if kind == "randint" else float
        if annotation is not wanted:
            name = getattr(annotation, "__name__", str(annotation))
            raise ConfigError(f"{source}: key '{key}' is {name}; {kind} yields {wanted.__name__} (use "
                              + ("randint or choice" if annotation is int else "choice") + ")")
        numeric = (int,) if kind == "randint" else (int, float)
        if (not isinstance(args, list) or len(args) != 2 or any(isinstance(a, bool) or not isinstance(a, numeric) for a in args)
                or not args[0] < args[1]):
            raise ConfigError(f"{source}: key '{key}': {kind} needs [low, high] numbers with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise ConfigError(f"{source}: key '{key}': loguniform needs low > 0, got {args!r}")
        if kind != "randint":
            args = [float(a) for a in args]
    # Every value the distribution can produce must be one the trainer accepts (randint's high is exclusive).
    values = args if kind == "choice" else [args[0], args[1] - 1] if kind == "randint" else args
    for value in values:
        _check_value(base, key, value, source)
    return kind, args


def _parse_settings(raw: Any, base: Config, source: str) -> TuneSettings:
    settings = TuneSettings(max_t=base.train.epochs)
    # The same checks (unknown keys, types, literals) as a config section, with the same messages.
    apply_mapping(settings, raw or {}, source, prefix="tune.")
    checks = [
        (settings.num_samples >= 1, "num_samples", "must be >= 1"),
        (settings.grace_period >= 1, "grace_period", "must be >= 1"),
        (settings.max_t >= settings.grace_period, "max_t", "must be >= grace_period"),
        (settings.reduction_factor >= 2, "reduction_factor", "must be >= 2"),
        (settings.max_concurrent_trials >= 1, "max_concurrent_trials", "must be >= 1"),
        (settings.cpus_per_worker > 0, "cpus_per_worker", "must be positive"),
        (settings.select_split in ("valid", "unbiased_valid"), "metric",
         "must be a validation metric, valid/<recall|ndcg|precision|hit>@K or (simulator data) unbiased_valid/<...>@K"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"{source}: key 'tune.{key}' {why}, got {getattr(settings, key)!r}")
    # The trainer selects its best epoch (early stopping, kept checkpoint, test figures) by the
    # same metric the sweep ranks trials by; check it names a metric the trainer computes.
    probe = Config.from_dict(base.to_dict())
    probe.eval.select_metric = settings.select_metric
    probe.eval.select_split = settings.select_split
    try:
        validate(probe)
    except ConfigError as err:
        raise ConfigError(f"{source}: key 'tune.metric' {settings.metric!r} is not a metric the trainer reports ({err})") from err
    return settings


def load_space(path: str, base: Config) -> Space:
    """Read and validate a space file against the base config of the sweep."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read space file ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a space file is a mapping of config keys, got {raw!r}")
    settings = _parse_settings(raw.pop("tune", None), base, path)
    if not raw:
        raise ConfigError(f"{path}: no keys to search")
    params = {str(key): _parse_param(base, str(key), spec, path) for key, spec in raw.items()}
    return Space(params=params, tune=settings)
