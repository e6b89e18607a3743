"""The one typed configuration of a cimrec run.

A run is described by nested dataclasses loaded from YAML, then `--section.key=value`
overrides from the command line. Unknown keys and ill-typed values are rejected with the
file (or "command line"), the dotted key and the value. Every key carries its documentation
in `field(metadata={"doc": ...})`; `python -m trainer.config` prints docs/CONFIG.md from it,
and a test keeps that file current, so each key is documented exactly once.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from models.causal import CausalConfig
from models.freedom import FreedomConfig
from models.lightgcn import LightGCNConfig
from models.vbpr import VBPRConfig


class ConfigError(ValueError):
    """A config file or override that cannot be turned into a `Config`."""


def doc(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field with its documentation attached (the single place a key is described)."""
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"doc": text}, **kwargs)
    return field(default=default, metadata={"doc": text}, **kwargs)


@dataclass
class RunSection:
    name: str = doc("Run name: the run directory is `<storage_path>/<name>`; starting a run with an existing name resumes it from its newest complete checkpoint (docs/DISTRIBUTED.md).", "demo")
    storage_path: str = doc("Where run directories go: a local path (relative to the working directory) or an fsspec URL such as `s3://bucket/runs`.", "runs")
    seed: int = doc("Seed for initialisation, negative sampling and shuffling (each worker derives its own stream from it).", 0)
    max_failures: int = doc("How many worker-group failures (a worker process dying or raising) Ray Train recovers from, by restarting the workers from the newest complete checkpoint, before the run fails.", 0)
    fail_at_step: int = doc("Testing aid: the last worker exits abruptly (`os._exit`) once, at this global training step (counted over epochs from 0), to exercise recovery with `max_failures`; a marker file `.fail_at_step-N` in the run directory keeps the restarted workers from failing again. -1: off.", -1)


@dataclass
class DataSection:
    url: str = doc("Canonical dataset URL (made by `python -m data_loaders.prepare`): local path, `s3://...` or `memory://...`.", "data/synthetic-demo")
    storage_options: dict = doc("fsspec storage options for `url` and `run.storage_path`, e.g. `{endpoint_url: http://127.0.0.1:9000}` for an S3-compatible server.", {})


@dataclass
class ModelSection:
    name: Literal["bpr", "lightgcn", "vbpr", "freedom", "causal"] = doc("Model: `bpr` (BPR-MF, Rendle et al. 2009), `lightgcn` (He et al. 2020), `vbpr` (He & McAuley 2016), `freedom` (Zhou et al. 2023) or `causal` (this project's causal-inspired model, docs/MODEL.md); a model with options reads them from the section of its name below.", "lightgcn")
    embedding_dim: int = doc("Size d of every ID embedding.", 64)
    num_layers: int = doc("User-item propagation layers of lightgcn and freedom (ignored by bpr and vbpr).", 2)
    reg_weight: float = doc("L2 weight on the batch's layer-0 embeddings (vbpr: on its scored user and item vectors), divided by the batch size (MMRec's convention).", 1e-4)
    loss: Literal["bpr", "softmax"] = doc("Ranking term of every model's loss: `bpr` (-log sigmoid(s_pos - s_neg), one sampled negative per positive; MMRec's) or `softmax` (sampled softmax: cross-entropy of each positive among the batch's distinct items, i.e. the other triples' positives and every sampled negative, over dot products / `softmax_temperature`; Wu et al. 2023). The causal model's exposure term and user content in the score need `bpr`.", "bpr")
    softmax_temperature: float = doc("Temperature of the `softmax` ranking term's logits (> 0; smaller = sharper).", 1.0)
    init: Literal["xavier", "normal"] = doc("ID table initialisation: `xavier` uniform (MMRec) or `normal` with std `init_std`.", "xavier")
    init_std: float = doc("Standard deviation of `normal` initialisation.", 0.1)
    lightgcn: LightGCNConfig = field(default_factory=LightGCNConfig)
    vbpr: VBPRConfig = field(default_factory=VBPRConfig)
    freedom: FreedomConfig = field(default_factory=FreedomConfig)
    causal: CausalConfig = field(default_factory=CausalConfig)


@dataclass
class TrainSection:
    epochs: int = doc("Maximum number of epochs (early stopping usually ends the run first).", 1000)
    batch_size: int = doc("Global batch of training positives (user, item) per step, split evenly over workers; "
                          "each enters the step with `negatives` sampled negative items.", 2048)
    negatives: int = doc("Negatives per training positive (RecBole's `neg_sampling: {uniform: k}`): each positive "
                         "enters its batch this many times, each with its own uniform negative, so the ranking "
                         "term is the mean over k negatives and a step holds batch_size x k triples. Why more "
                         "than one: on sparse data a single negative gives the BPR term a weak, noisy gradient.", 1)
    negative_candidates: int = doc("Dynamic negative sampling (Zhang et al. 2013): each triple's negative is the one "
                                   "the model currently scores highest among this many uniform draws (1: the uniform "
                                   "draw itself). Why: once most uniform pairs are ranked right, BPR's gradient "
                                   "vanishes; the hardest of M keeps it informative. lightgcn, freedom and causal, "
                                   "graph_mode full only.", 1)
    negative_candidate_epochs: int = doc("With negative_candidates > 1: draw the candidate pools in the first this "
                                         "many epochs only and uniform negatives after (0: in every epoch). Why: "
                                         "hard negatives lift the model off the popularity plateau within a few "
                                         "epochs but then over-fit (docs/RESULTS.md \"TikTok: dynamic negative "
                                         "sampling\"); a warm start keeps the first and drops the second.", 0)
    negative_candidates_after: int = doc("With negative_candidate_epochs = N > 0: candidates per triple after the first "
                                         "N epochs (1: one uniform negative). Why more than 1: with uniform negatives the "
                                         "model can tell most pairs apart by popularity alone; a small pool keeps some "
                                         "pressure on popular items without the fast over-fit of a large one.", 1)
    negative_popularity_power: float = doc("Distribution of every negative draw (single negatives and candidate pools): "
                                           "0 uniform over the user's non-training items (MMRec's); a > 0 proportional "
                                           "to (1 + n_i)^a over them, n_i the item's training interactions (RecBole's "
                                           "`distribution: popularity` is a = 1). Why: with uniform negatives popularity "
                                           "alone tells most pairs apart; popular negatives take part of that shortcut "
                                           "away, as a training-time counterpart of `eval.popularity_offset`.", 0.0)
    negative_popularity_from_epoch: int = doc("With negative_popularity_power > 0: draw by popularity from this epoch "
                                              "(0-based) on, uniformly before (0: from the first). Why: with the warm "
                                              "start (negative_candidate_epochs = N), N keeps its uniform pools and "
                                              "changes only the draws after it, where the valid curve falls.", 0)
    learning_rate: float = doc("Learning rate of the embedding optimizer.", 1e-3)
    dense_learning_rate: float = doc("Learning rate of the dense (non-table) parameters: projection, denoiser and "
                                     "front-door MLPs, the score gates; 0: `learning_rate`. A plateau schedule "
                                     "(`lr_schedule`) cuts both rates by the same factor; the logged "
                                     "`learning_rate` is the tables'. Why: on TikTok the causal model's valid and "
                                     "test figures move together by ~0.0026 from one epoch to the next, 3.7 times "
                                     "LightGCN's (docs/RESULTS.md \"TikTok: the valid-selected and the test-picked "
                                     "figure\"), and the dense parameters are what LightGCN lacks. There a third or three "
                                     "times the tables' rate lowered best valid R@20 on every seed (forty-fifth round "
                                     "of \"TikTok: dynamic negative sampling\"): the lower rate halves the jumps and "
                                     "climbs slower.", 0.0)
    optimizer: Literal["adam", "adamw", "adagrad", "rowwise_adagrad", "sgd"] = doc("Embedding optimizer. With `embedding_kernel: fused` only sgd, adagrad and rowwise_adagrad run on CPU.", "adam")
    weight_decay: float = doc("Optimizer weight decay (in addition to `model.reg_weight`).", 0.0)
    dense_weight_decay: float = doc("Weight decay added to `weight_decay` for the dense (non-table) parameters only: "
                                    "projection, denoiser and front-door MLPs, the score gates. Why: `model.reg_weight` "
                                    "regularises the batch's ID rows and nothing else, and on TikTok the late fall "
                                    "of the valid curve comes with the front-door's gate and spread growing "
                                    "(docs/RESULTS.md \"TikTok: dynamic negative sampling\", thirteenth round).", 0.0)
    embedding_kernel: Literal["dense", "fused"] = doc("TorchRec compute kernel for ID tables: `dense` (a torch optimizer steps the tables) or `fused` (FBGEMM applies the update inside backward). At catalog scale use `fused`: `dense` makes a table-sized gradient and steps every row at every step, so a step costs O(rows of the tables) (docs/BENCHMARKS.md, cost curve).", "dense")
    sharding: Literal["auto", "table_wise", "column_wise", "row_wise", "data_parallel"] = doc("How ID tables are sharded across workers; `auto` lets TorchRec's planner choose (table-wise on CPU with 2+ workers).", "auto")
    max_steps_per_epoch: int = doc("End each epoch after this many steps (0: a full pass over the training edges). For timing and smoke runs at catalog scale (benchmarks/scale.py): an epoch then sees only part of the data.", 0)
    eval_every: int = doc("Evaluate on valid every this many epochs.", 1)
    patience: int = doc("Stop after this many evaluations without a better valid `eval.select_metric`.", 20)
    min_epochs: int = doc("Never stop early before this many epochs. For models whose valid metric sits at the "
                          "popularity level for a while before it climbs (the causal model at batch 4096 on TikTok: "
                          "about 20 epochs), where `patience` alone could stop a run inside that plateau.", 0)
    checkpoint_every: int = doc("Also write a checkpoint every this many epochs even without improvement (0: only on improvement).", 10)
    dense_engine: Literal["torch", "deepspeed"] = doc("What reduces and steps the model's dense (non-table) parameters (projections, diffusion denoiser, adjustment and edge-scoring networks): `torch` (DDP inside TorchRec's DistributedModelParallel, a torch optimizer) or `deepspeed` (a DeepSpeed engine with ZeRO stage `zero_stage` and a client torch optimizer per `optimizer`). The ID tables stay TorchRec's either way (docs/DISTRIBUTED.md).", "torch")
    zero_stage: Literal[0, 1, 2] = doc("DeepSpeed ZeRO stage of the dense parameters with `dense_engine: deepspeed`: 0 (all-reduce, replicated optimizer state), 1 (optimizer state partitioned over workers), 2 (optimizer state and gradients partitioned). Stage 3 is not offered: evaluation, per-epoch refreshes and checkpoints read the dense parameters outside the engine's forward.", 1)
    lr_schedule: Literal["constant", "plateau"] = doc("Learning-rate schedule of every optimizer (ID tables and dense parameters alike): `constant`, or `plateau` (as torch's ReduceLROnPlateau, on the selecting valid metric): after every `lr_decay_patience` consecutive evaluations without a better score the rate is multiplied by `lr_decay_factor`, never below `min_learning_rate`; it never rises again. The current rate is in each epoch's metrics (`learning_rate`) and in checkpoints.", "constant")
    lr_decay_factor: float = doc("Factor in (0, 1) applied to the learning rate at each plateau with `lr_schedule: plateau`.", 0.5)
    lr_decay_patience: int = doc("Evaluations without improvement that make a plateau with `lr_schedule: plateau`; smaller than `patience`, or early stopping ends the run first once `min_epochs` is past.", 5)
    lr_decay_start_epoch: int = doc("With `lr_schedule: plateau`, no cut before this many epochs have run (evaluations before it still count towards a plateau). For models whose valid metric sits at the popularity level for a while before it climbs (see `min_epochs`), where a cut would slow the climb itself.", 0)
    min_learning_rate: float = doc("Floor of the decayed learning rate with `lr_schedule: plateau`.", 0.0)
    weight_average_decay: float = doc("Evaluate (select the epoch, report test, checkpoint for `trainer.explain`/`trainer.compare`) with an exponential moving average of the trained weights, ID table shards and dense parameters, updated after every step with this decay; 0: off, the live weights. Training itself is unchanged. With it on, each evaluation also logs the live weights' valid metrics as `valid_live/...`. Why: averaging over the last ~1/(1 - decay) steps smooths the step-to-step noise of the selected epoch (trainer/weight_average.py; buffers such as the codebook are not averaged).", 0.0)
    gradient_clipping: float = doc("Clip the global L2 norm of the dense (non-table) parameters' gradient to this value before each step, with either `dense_engine` (0: off). The ID tables are never clipped.", 0.0)


@dataclass
class EvalSection:
    ks: list = doc("Cut-offs K of Recall/NDCG/Precision/HitRate@K.", [10, 20, 50])
    select_metric: str = doc("Valid metric that selects the epoch (early stopping, best checkpoint).", "recall@20")
    select_split: Literal["valid", "unbiased_valid"] = doc("Split whose `select_metric` selects the epoch (the metrics' `valid_score`, which ranks checkpoints): `valid` (the protocol of real data), or `unbiased_valid`, the simulator's uniform-exposure validation split (data made with `--unbiased-valid-per-user N`; docs/SIMULATOR.md), which judges the model under do(uniform exposure) like `unbiased_test`. Whichever it is, every present split is evaluated and logged.", "valid")
    popularity_offset: float = doc("beta: valid and test rank by score + beta * log(1 + n_i), n_i = item i's training interactions (every model; trainer/ranking.py). 0 = the model's own score; below 0 popular items rank lower. A ranking-time choice, made on valid (`python -m trainer.popularity_offset` sweeps it at finished runs); the simulator's uniform-exposure splits are ranked without it (under do(uniform exposure), as the exposure term).", 0.0)
    test_curve: bool = doc("Also evaluate test at every evaluation and log it as `test_curve/<metric>` in the history. A diagnostic, never used to select the epoch, stop early or rank checkpoints (the reported test figures stay those of the best-valid epoch). Why: several published TikTok figures pick the epoch on test (protocol T, docs/RESULTS.md); `python -m trainer.picked_epoch` reads a run's figure under that protocol beside its valid-selected one, for a like-for-like reading. Costs one test evaluation per epoch.", False)
    user_chunk: int = doc("Users scored at once in full-ranking evaluation (memory ~ user_chunk x item_chunk floats; small blocks stay in CPU cache).", 256)
    item_chunk: int = doc("Items scored at once in full-ranking evaluation (raise both on a GPU).", 65536)
    sample_users: int = doc("Quick checks at catalog scale: evaluate only this many users per split, drawn uniformly without replacement (seeded by `run.seed`, the same users at every evaluation) from the users with a held-out item; every item is still ranked. The metrics then carry `sampled_users` / `sampled_from` and results.md labels them (sampled N of M users): they estimate, with sampling error, the full-evaluation figures and are not comparable to published ones. 0 = all users (the protocol).", 0)


@dataclass
class ScalingSection:
    num_workers: int = doc("Ray Train workers (one process each; 1 worker = world size 1 of the same code path).", 1)
    use_gpu: bool = doc("One GPU per worker and the nccl backend; otherwise CPU and gloo.", False)
    cpus_per_worker: float = doc("CPUs Ray reserves per worker (fractional values leave room for Ray Data tasks).", 1.0)
    threads_per_worker: int = doc("torch/OMP threads per worker; 0 = CPU cores divided by the number of workers.", 0)
    address: str = doc("Ray cluster address: empty for a local Ray started by this process, `auto` for the cluster this job was submitted to.", "")


@dataclass
class LoggingSection:
    wandb: bool = doc("Log config, losses and metrics to Weights & Biases.", False)
    wandb_mode: Literal["offline", "online"] = doc("wandb mode: `offline` needs no network or key (sync later with `wandb sync`).", "offline")
    wandb_project: str = doc("wandb project name.", "cimrec")
    progress: bool = doc("Show progress bars on rank 0: the training steps of each epoch and the user blocks of "
                         "each full-ranking evaluation.", True)


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "Config":
        cfg = cls()
        apply_mapping(cfg, raw, source)
        return cfg


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check `value` against a field's type, converting only where it is lossless."""
    origin = get_origin(annotation)
    bad = ConfigError(f"{source}: key '{key}' expects {getattr(annotation, '__name__', annotation)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(annotation):
            raise ConfigError(f"{source}: key '{key}' must be one of {list(get_args(annotation))}, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept any numeric spelling of a float.
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if annotation is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise bad
        return value
    if annotation is list:
        if not isinstance(value, list):
            raise bad
        return value
    if annotation is dict:
        if not isinstance(value, dict):
            raise bad
        return value
    raise ConfigError(f"{source}: key '{key}' has an unsupported type {annotation!r}")


def apply_mapping(obj: Any, raw: dict[str, Any], source: str, prefix: str = "") -> None:
    """Write a nested mapping into a dataclass tree, rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '<top level>'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{dotted}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            apply_mapping(current, value, source, dotted + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted, source))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`--train.learning_rate=0.01` -> (["train", "learning_rate"], 0.01); values are YAML scalars."""
    body = text[2:] if text.startswith("--") else text
    if "=" not in body:
        raise ConfigError(f"command line: override {text!r} is not of the form --section.key=value")
    key, raw_value = body.split("=", 1)
    return key.split("."), yaml.safe_load(raw_value) if raw_value != "" else ""


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at `path`, then each override in order."""
    cfg = Config()
    if path:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from err
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        apply_mapping(cfg, raw, path)
    for text in overrides:
        parts, value = parse_override(text)
        nested: Any = value
        for part in reversed(parts):
            nested = {part: nested}
        apply_mapping(cfg, nested, f"command line ({text})")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that a type cannot express."""
    checks = [
        (cfg.model.embedding_dim > 0, "model.embedding_dim", cfg.model.embedding_dim, "must be positive"),
        (cfg.model.num_layers >= 0, "model.num_layers", cfg.model.num_layers, "must be >= 0"),
        (cfg.model.name != "lightgcn" or cfg.model.lightgcn.graph_mode != "sampled" or (len(cfg.model.lightgcn.fanouts) == cfg.model.num_layers and all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in cfg.model.lightgcn.fanouts)), "model.lightgcn.fanouts", cfg.model.lightgcn.fanouts, "must hold one positive integer per model.num_layers with graph_mode: sampled"),
        (cfg.model.lightgcn.eval_chunk_edges > 0, "model.lightgcn.eval_chunk_edges", cfg.model.lightgcn.eval_chunk_edges, "must be positive"),
        (cfg.train.negatives >= 1, "train.negatives", cfg.train.negatives, "must be >= 1"),
        (cfg.train.negative_candidates >= 1, "train.negative_candidates", cfg.train.negative_candidates, "must be >= 1"),
        (cfg.train.negative_candidate_epochs >= 0, "train.negative_candidate_epochs", cfg.train.negative_candidate_epochs, "must be >= 0 (0 = every epoch)"),
        (math.isfinite(cfg.train.negative_popularity_power) and cfg.train.negative_popularity_power >= 0, "train.negative_popularity_power", cfg.train.negative_popularity_power, "must be a finite number >= 0 (0 = uniform)"),
        (cfg.train.negative_popularity_from_epoch >= 0, "train.negative_popularity_from_epoch", cfg.train.negative_popularity_from_epoch, "must be >= 0 (0 = from the first epoch)"),
        (cfg.train.negative_candidates_after >= 1, "train.negative_candidates_after", cfg.train.negative_candidates_after, "must be >= 1 (1 = uniform)"),
        (cfg.train.negative_candidates_after == 1 or (cfg.train.negative_candidates > 1 and cfg.train.negative_candidate_epochs > 0), "train.negative_candidates_after", cfg.train.negative_candidates_after, "> 1 needs train.negative_candidates > 1 and train.negative_candidate_epochs > 0 (it is the pool after the warm start)"),
        (cfg.train.negative_candidates == 1 or cfg.model.name == "freedom" or (cfg.model.name == "lightgcn" and cfg.model.lightgcn.graph_mode == "full") or (cfg.model.name == "causal" and cfg.model.causal.backbone.graph_mode == "full"), "train.negative_candidates", cfg.train.negative_candidates, "> 1 needs model.name lightgcn, freedom or causal with graph_mode full"),
        (cfg.train.batch_size >= cfg.scaling.num_workers, "train.batch_size", cfg.train.batch_size, "must be at least scaling.num_workers"),
        (cfg.train.epochs > 0, "train.epochs", cfg.train.epochs, "must be positive"),
        (cfg.train.max_steps_per_epoch >= 0, "train.max_steps_per_epoch", cfg.train.max_steps_per_epoch, "must be >= 0 (0 = full epochs)"),
        (cfg.train.eval_every > 0, "train.eval_every", cfg.train.eval_every, "must be positive"),
        (cfg.train.learning_rate > 0, "train.learning_rate", cfg.train.learning_rate, "must be positive"),
        (0 < cfg.train.lr_decay_factor < 1, "train.lr_decay_factor", cfg.train.lr_decay_factor, "must be in (0, 1)"),
        (cfg.train.lr_decay_patience >= 1, "train.lr_decay_patience", cfg.train.lr_decay_patience, "must be >= 1"),
        (cfg.train.lr_decay_start_epoch >= 0, "train.lr_decay_start_epoch", cfg.train.lr_decay_start_epoch, "must be >= 0"),
        (0 <= cfg.train.min_learning_rate <= cfg.train.learning_rate, "train.min_learning_rate", cfg.train.min_learning_rate, "must be in [0, train.learning_rate]"),
        (0 < cfg.model.lightgcn.edge_keep <= 1, "model.lightgcn.edge_keep", cfg.model.lightgcn.edge_keep, "must be in (0, 1] (1 = no edge dropout)"),
        (cfg.model.lightgcn.edge_keep == 1 or cfg.model.lightgcn.graph_mode == "full", "model.lightgcn.edge_keep", cfg.model.lightgcn.edge_keep, "needs model.lightgcn.graph_mode: full (1 = off)"),
        (0 <= cfg.model.lightgcn.norm_power <= 1, "model.lightgcn.norm_power", cfg.model.lightgcn.norm_power, "must be in [0, 1] (0.5 = symmetric)"),
        (cfg.model.lightgcn.norm_power == 0.5 or cfg.model.lightgcn.graph_mode == "full", "model.lightgcn.norm_power", cfg.model.lightgcn.norm_power, "needs model.lightgcn.graph_mode: full (0.5 = symmetric)"),
        (0 <= cfg.model.causal.backbone.norm_power <= 1, "model.causal.backbone.norm_power", cfg.model.causal.backbone.norm_power, "must be in [0, 1] (0.5 = symmetric)"),
        (cfg.model.causal.backbone.norm_power == 0.5 or cfg.model.causal.backbone.graph_mode == "full", "model.causal.backbone.norm_power", cfg.model.causal.backbone.norm_power, "needs model.causal.backbone.graph_mode: full (0.5 = symmetric)"),
        (cfg.model.causal.backbone.edge_keep == 1 or cfg.model.causal.backbone.graph_mode == "full", "model.causal.backbone.edge_keep", cfg.model.causal.backbone.edge_keep, "needs model.causal.backbone.graph_mode: full (1 = off)"),
        (0 < cfg.model.causal.backbone.edge_keep <= 1, "model.causal.backbone.edge_keep", cfg.model.causal.backbone.edge_keep, "must be in (0, 1] (1 = no edge dropout)"),
        (cfg.model.causal.backdoor.refit_every >= 0, "model.causal.backdoor.refit_every", cfg.model.causal.backdoor.refit_every, "must be >= 0 (0 = no k-means re-fit)"),
        (cfg.model.causal.backdoor.refit_start >= 0, "model.causal.backdoor.refit_start", cfg.model.causal.backdoor.refit_start, "must be >= 0"),
        (cfg.model.causal.backdoor.refit_iters >= 1, "model.causal.backdoor.refit_iters", cfg.model.causal.backdoor.refit_iters, "must be >= 1"),
        (0 <= cfg.model.causal.backdoor.center_decay < 1, "model.causal.backdoor.center_decay", cfg.model.causal.backdoor.center_decay, "must be in [0, 1) (0 = the current step's mean)"),
        (cfg.model.causal.backdoor.restart_epochs >= 0, "model.causal.backdoor.restart_epochs", cfg.model.causal.backdoor.restart_epochs, "must be >= 0 (0 = restarts in every epoch)"),
        (cfg.train.gradient_clipping >= 0, "train.gradient_clipping", cfg.train.gradient_clipping, "must be >= 0"),
        (0 <= cfg.train.weight_average_decay < 1, "train.weight_average_decay", cfg.train.weight_average_decay, "must be in [0, 1) (0 = off)"),
        (cfg.train.weight_decay >= 0 and math.isfinite(cfg.train.weight_decay), "train.weight_decay", cfg.train.weight_decay, "must be a finite number >= 0"),
        (cfg.train.dense_weight_decay >= 0 and math.isfinite(cfg.train.dense_weight_decay), "train.dense_weight_decay", cfg.train.dense_weight_decay, "must be a finite number >= 0"),
        (cfg.train.dense_learning_rate >= 0 and math.isfinite(cfg.train.dense_learning_rate), "train.dense_learning_rate", cfg.train.dense_learning_rate, "must be a finite number >= 0 (0 = train.learning_rate)"),
        (cfg.scaling.num_workers >= 1, "scaling.num_workers", cfg.scaling.num_workers, "must be >= 1"),
        (cfg.eval.sample_users >= 0, "eval.sample_users", cfg.eval.sample_users, "must be >= 0 (0 = all users)"),
        (math.isfinite(cfg.eval.popularity_offset), "eval.popularity_offset", cfg.eval.popularity_offset, "must be a finite number"),
        (bool(cfg.eval.ks) and all(isinstance(k, int) and k > 0 for k in cfg.eval.ks), "eval.ks", cfg.eval.ks, "must be a non-empty list of positive integers"),
    ]
    for ok, key, value, why in checks:
        if not ok:
            raise ConfigError(f"config: key '{key}' {why}, got {value!r}")
    family, _, k = cfg.eval.select_metric.partition("@")
    if family not in {"recall", "ndcg", "precision", "hit"} or not k.isdigit() or int(k) not in cfg.eval.ks:
        raise ConfigError(f"config: key 'eval.select_metric' must be recall|ndcg|precision|hit@K with K in eval.ks, got {cfg.eval.select_metric!r}")


def _markdown_tables(obj: Any, prefix: str) -> list[str]:
    """One table for the dataclass `obj` (keys `prefix.key`), then one per nested dataclass section."""
    lines = [f"## `{prefix}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    hints = typing.get_type_hints(type(obj))
    nested = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((value, f"{prefix}.{f.name}"))
            continue
        annotation = hints[f.name]
        if get_origin(annotation) is Literal:
            type_name = " \\| ".join(f"`{a}`" for a in get_args(annotation))
        else:
            type_name = annotation.__name__
        lines.append(f"| `{prefix}.{f.name}` | {type_name} | `{value!r}` | {f.metadata['doc']} |")
    lines.append("")
    for value, name in nested:
        lines += _markdown_tables(value, name)
    return lines


def markdown_reference() -> str:
    """docs/CONFIG.md: every key with its type, default and meaning (nested sections as `model.freedom.knn_k`)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `python -m trainer.config > docs/CONFIG.md` from the dataclasses in",
        "`trainer/config.py` (a test keeps it current). Set keys in a YAML file passed with",
        "`--config`, or override any of them with `--section.key=value` (values are YAML scalars).",
        "Unknown keys are rejected.",
        "",
    ]
    root = Config()
    for section in dataclasses.fields(root):
        lines += _markdown_tables(getattr(root, section.name), section.name)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_reference())
